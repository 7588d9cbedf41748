"""Each Slurm operation's exact requests and the errors it raises, in full: what slurmrestd is asked (method,
URL, query, body) and the message, status and URL an Airflow user reads when Slurm says no (issue 18: each
test pins behaviour mutation testing found unasserted)."""

from __future__ import annotations

import re

import pytest

from airflow_provider_maxwell.effects import GetToken, HttpResult
from airflow_provider_maxwell.exceptions import SlurmAccountingUnavailable, SlurmApiError, SlurmJobNotFound
from airflow_provider_maxwell.slurm.dialects import DIALECTS, SUPPORTED_VERSIONS
from tests.unit.client.test_protocol_steps import (
    ACCOUNTING_JOB,
    HOST,
    JOB,
    META,
    Script,
    job_doc,
    jobs,
    ok,
    ops_for,
    record,
    slurm_error,
    state_with,
)

SUBMIT = "/slurm/v0.0.45/job/submit"
LISTING = "/slurmdb/v0.0.45/jobs"
ALL_JOBS = "/slurm/v0.0.45/jobs"


def failure_of(script: Script, protocol: object, kind: type[Exception] = SlurmApiError) -> Exception:
    with pytest.raises(kind) as failure:
        script.run(protocol)  # type: ignore[arg-type]
    return failure.value


# ---------------------------------------------------------------- submit


def test_a_submission_posts_the_body_once_with_the_users_home_as_working_directory():
    script = Script({SUBMIT: [ok({**META, "job_id": 42})]})
    assert script.run(ops_for(state_with()).submit("#!/bin/bash\ntrue\n", {"partition": "allcpu"})) == 42
    (call,) = script.sent
    assert (call.method, call.url, call.params) == ("POST", HOST + SUBMIT, None)
    mark = call.json["job"]["comment"]  # identifies this submission's job should its answer be lost
    assert re.fullmatch(r"maxwell-submission:[0-9a-f]{16}", mark)
    assert call.json == {
        "job": {
            "partition": "allcpu",
            "comment": mark,
            "current_working_directory": "/home/alice",
            "environment": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "script": "#!/bin/bash\ntrue\n",
        }
    }


def test_a_refused_submission_reads_in_full():
    script = Script({SUBMIT: [slurm_error(500, 2051)]})
    error = failure_of(script, ops_for(state_with()).submit("#!/bin/bash\n", {}))
    assert str(error) == f"Slurm refused the job: HTTP 500 from {HOST}{SUBMIT}: error 2051 error 2051"
    assert error.has_code(2051)  # type: ignore[attr-defined]


@pytest.mark.parametrize("job_id", [None, 0, True, "42", 2**32])
def test_a_submission_answered_without_a_job_id_reads_in_full(job_id):
    script = Script({SUBMIT: [ok({**META, "job_id": job_id})]})
    error = failure_of(script, ops_for(state_with()).submit("#!/bin/bash\n", {}))
    assert str(error) == (
        f"Slurm answered the submission without a job id ({job_id!r}); the job may exist: look for it by name "
        f"before submitting again: HTTP 200 from {HOST}{SUBMIT}"
    )


def test_the_largest_job_id_is_one():
    script = Script({SUBMIT: [ok({**META, "job_id": 2**32 - 1})]})
    assert script.run(ops_for(state_with()).submit("#!/bin/bash\n", {})) == 2**32 - 1


# ---------------------------------------------------------------- reading jobs


def test_reading_a_job_gets_slurmctlds_records_and_skips_what_is_no_record():
    script = Script({JOB: [ok({**META, "jobs": [job_doc(7, "RUNNING"), "junk", 3]})]})
    (job,) = script.run(ops_for(state_with()).controller_jobs(7))
    assert job.job_id == 7 and job.source == "slurmctld"
    assert [(c.method, c.url, c.params) for c in script.sent] == [("GET", HOST + JOB, None)]
    assert Script({JOB: [ok({**META, "jobs": {"7": {}}})]}).run(ops_for(state_with()).controller_jobs(7)) == []


def test_a_failed_read_reads_in_full():
    error = failure_of(Script({JOB: [slurm_error(500, 2002)]}), ops_for(state_with()).controller_jobs(7))
    assert str(error) == f"Could not read Slurm job 7: HTTP 500 from {HOST}{JOB}: error 2002 error 2002"
    listing = failure_of(Script({ALL_JOBS: [slurm_error(500, 2002)]}), ops_for(state_with()).controller_listing())
    assert str(listing) == f"Could not list Slurm jobs: HTTP 500 from {HOST}{ALL_JOBS}: error 2002 error 2002"


def test_slurmctld_forgetting_a_job_is_no_error():
    assert Script({JOB: [slurm_error(404, 2017)]}).run(ops_for(state_with()).controller_jobs(7)) is None


def test_accounting_down_reads_in_full_and_a_slurm_404_is_no_record_yet():
    down = failure_of(
        Script({ACCOUNTING_JOB: [slurm_error(200, 7000)]}),
        ops_for(state_with()).accounting_jobs(7),
        SlurmAccountingUnavailable,
    )
    assert str(down) == (
        f"Slurm accounting (slurmdbd) is unavailable: HTTP 200 from {HOST}{ACCOUNTING_JOB}: error 7000 error 7000"
    )
    assert Script({ACCOUNTING_JOB: [ok({**META}, 404)]}).run(ops_for(state_with()).accounting_jobs(7)) == []
    proxy = failure_of(
        Script({ACCOUNTING_JOB: [HttpResult(404, b"<html/>", {})]}), ops_for(state_with()).accounting_jobs(7)
    )
    assert str(proxy) == f"Could not read accounting for Slurm job 7: HTTP 404 from {HOST}{ACCOUNTING_JOB}"


def test_22_05s_accounting_exit_code_is_not_trusted():
    failed = record(7, "FAILED", code=0)
    old = Script({"/slurmdb/v0.0.38/job/7": [jobs(failed)]}).run(ops_for(state_with("v0.0.38")).accounting_jobs(7))
    new = Script({ACCOUNTING_JOB: [jobs(failed)]}).run(ops_for(state_with()).accounting_jobs(7))
    assert (old[0].exit_code, new[0].exit_code) == (None, 0)


def test_the_pollers_accounting_asks_for_the_waited_ids_of_the_user_with_no_time_window():
    script = Script({LISTING: [jobs(record(7, "COMPLETED"), record(8, "RUNNING"))]})
    found = script.run(ops_for(state_with()).accounting_by_id([8, 7, 8]))
    assert [j.job_id for j in found] == [7, 8]
    (call,) = script.sent
    assert call.params == {"step": ["7", "8"], "skip_steps": "true", "users": "alice"}
    error = failure_of(Script({LISTING: [slurm_error(500, 2)]}), ops_for(state_with()).accounting_by_id([7]))
    assert str(error).startswith(f"Could not read accounting records of 1 jobs: HTTP 500 from {HOST}{LISTING}")


def test_job_statuses_ask_jobs_state_per_id_and_read_text_ids_of_jobs_and_array_tasks():
    route = "/slurm/v0.0.45/jobs/state"
    answer = {"jobs": [{"job_id": "7", "state": ["RUNNING"]}, {"job_id": "9_1", "state": ["COMPLETED"]}, {}]}
    script = Script({route: [ok({**META, **answer})]})
    found = script.run(ops_for(state_with()).job_statuses([7, 8]))
    assert [(s.job_id, s.array_task_id, s.state.value, s.is_terminal) for s in found] == [
        (7, None, "RUNNING", False),
        (9, 1, "COMPLETED", True),
    ]
    assert script.sent[0].params == {"job_id": ["7", "8"]}
    assert Script({}).run(ops_for(state_with("v0.0.41")).job_statuses([7])) is None  # no jobs/state before 42
    for status in (403, 404, 405):  # a proxy in front blocks the path: the caller falls back to accounting
        blocked = Script({route: [HttpResult(status, b"<html>blocked</html>", {})]})
        assert blocked.run(ops_for(state_with()).job_statuses([7])) is None
    unknown = Script({route: [slurm_error(404, 2017)]})  # Slurm's own "no such job": none of them held
    assert unknown.run(ops_for(state_with()).job_statuses([7])) == []


def test_the_newest_record_of_the_job_itself_is_the_jobs_record():
    script = Script({JOB: [jobs(job_doc(7, "RUNNING"))]})
    job = script.run(ops_for(state_with()).job(7))
    assert job.source == "slurmctld" and script.count(ACCOUNTING_JOB) == 0
    tasks = jobs(job_doc(8, "RUNNING", array_job_id=7, submit=1), job_doc(9, "PENDING", array_job_id=7, submit=2))
    assert Script({JOB: [tasks]}).run(ops_for(state_with()).job(7)).job_id == 9  # no record of 7 itself: newest


def test_a_job_nobody_knows_names_slurmctlds_url():
    script = Script({JOB: [slurm_error(404, 2017)], ACCOUNTING_JOB: [ok({**META, "jobs": []})]})
    error = failure_of(script, ops_for(state_with()).job(7), SlurmJobNotFound)
    assert str(error) == f"Slurm job 7 not found: no HTTP answer from {HOST}{JOB}"


# ---------------------------------------------------------------- searching by name


def test_the_name_search_asks_accounting_and_reads_only_its_live_jobs_from_slurmctld():
    final = [
        record(12, "RUNNING", submit=300),  # live: accounting has no comment for it yet, slurmctld has
        record(11, "COMPLETED", submit=200),
        record(12, "FAILED", submit=100),  # an older job under a reused id: kept
        record(13, "RUNNING", user="bob", submit=310),  # not the user's: not read
        {**record(14, "RUNNING", submit=320), "name": "other"},  # another name: not read
    ]
    live = job_doc(12, "RUNNING", submit=300, comment="airflow:d/t/r/-1 maxwell-submission:ab")
    script = Script({LISTING: [jobs(*final)], "/slurm/v0.0.45/job/12": [jobs(live)]})
    found = script.run(ops_for(state_with()).find_jobs_by_name("reduce", since=50))
    assert [(j.job_id, j.submitted, j.source) for j in found] == [
        (12, 100.0, "slurmdb"),
        (11, 200.0, "slurmdb"),
        (12, 300.0, "slurmctld"),
    ]
    assert found[-1].comment == "airflow:d/t/r/-1 maxwell-submission:ab"
    assert script.count(ALL_JOBS) == 0  # never the cluster's whole queue
    assert script.sent[0].params == {"job_name": "reduce", "users": "alice", "start_time": "50"}
    assert [c.url.removeprefix(HOST) for c in script.sent[1:]] == ["/slurm/v0.0.45/job/12"]
    error = failure_of(Script({LISTING: [slurm_error(500, 2)]}), ops_for(state_with()).find_jobs_by_name("x"))
    assert str(error).startswith(f"Could not search accounting for jobs named 'x': HTTP 500 from {HOST}{LISTING}")


def test_the_name_search_falls_back_to_slurmctlds_listing_only_while_accounting_is_down():
    listed = [job_doc(12, "RUNNING", submit=300), job_doc(13, "RUNNING", user="bob"), job_doc(9, "PENDING", submit=5)]
    script = Script({LISTING: [slurm_error(500, 7000)], ALL_JOBS: [jobs(*listed)]})
    found = script.run(ops_for(state_with()).find_jobs_by_name("reduce"))
    assert [(j.job_id, j.source) for j in found] == [(9, "slurmctld"), (12, "slurmctld")]
    assert any("searching slurmctld's listing" in note for note in script.notes)


def test_a_held_submission_on_22_05_is_a_submitted_job_not_a_refusal():
    held = ok({**META, "errors": [{"error_code": 2042, "error": "Job is in held state"}], "job_id": 2200002})
    script = Script({"/slurm/v0.0.38/job/submit": [held]})
    assert script.run(ops_for(state_with("v0.0.38")).submit("#!/bin/bash\ntrue\n", {"hold": True})) == 2200002
    refused = ok(
        {**META, "errors": [{"error_code": 2042, "error": "held"}, {"error_code": 2, "error": "no"}], "job_id": 5}
    )
    error = failure_of(
        Script({"/slurm/v0.0.38/job/submit": [refused]}),
        ops_for(state_with("v0.0.38")).submit("#!/bin/bash\ntrue\n", {}),
    )
    assert str(error).startswith("Slurm refused the job: HTTP 200")


# ---------------------------------------------------------------- cancel, diag, token


def test_a_cancel_deletes_the_job_with_the_signal_asked():
    script = Script({JOB: [ok({**META})]})
    assert script.run(ops_for(state_with()).cancel(7, signal=10)) is None
    assert [(c.method, c.url, c.params) for c in script.sent] == [("DELETE", HOST + JOB, {"signal": "10"})]
    script = Script({JOB: [ok({**META})]})
    script.run(ops_for(state_with()).cancel(7))
    assert script.sent[0].params is None and len(script.sent) == 1  # v0.0.45 reports failures: no check


def test_a_refused_cancel_reads_in_full():
    error = failure_of(Script({JOB: [slurm_error(500, 2002)]}), ops_for(state_with()).cancel(7))
    assert str(error) == f"Slurm did not cancel job 7: HTTP 500 from {HOST}{JOB}: error 2002 error 2002"
    unknown = failure_of(Script({JOB: [slurm_error(500, 2017)]}), ops_for(state_with()).cancel(7), SlurmJobNotFound)
    assert str(unknown) == f"Slurm job 7 not found: HTTP 500 from {HOST}{JOB}: error 2017 error 2017"


def test_a_silent_cancel_of_a_job_still_running_reads_in_full():
    job40 = "/slurm/v0.0.40/job/7"
    script = Script({job40: [ok({**META}), jobs(job_doc(7, "PENDING"))]})
    error = failure_of(script, ops_for(state_with("v0.0.40")).cancel(7))
    assert str(error) == f"Slurm did not cancel job 7: it is still PENDING: no HTTP answer from {HOST}{job40}"
    gone = Script({job40: [ok({**META}), slurm_error(404, 2017)]})
    assert str(failure_of(gone, ops_for(state_with("v0.0.40")).cancel(7), SlurmJobNotFound)) == (
        f"Slurm job 7 not found: no HTTP answer from {HOST}{job40}"
    )
    ended = Script({job40: [ok({**META}), jobs(job_doc(7, "CANCELLED"))]})
    assert ended.run(ops_for(state_with("v0.0.40")).cancel(7)) is None
    empty = Script({job40: [ok({**META}), jobs()]})
    assert empty.run(ops_for(state_with("v0.0.40")).cancel(7)) is None


def test_diag_checks_the_token_with_slurmctlds_statistics():
    diag = "/slurm/v0.0.45/diag"
    script = Script({diag: [ok({**META, "statistics": {}})]})
    assert script.run(ops_for(state_with()).diag()) is DIALECTS["v0.0.45"]
    assert [(c.method, c.url) for c in script.sent] == [("GET", HOST + diag)]
    error = failure_of(Script({diag: [slurm_error(400, 2002)]}), ops_for(state_with()).diag())
    assert str(error) == f"Slurm refused the diagnostic call: HTTP 400 from {HOST}{diag}: error 2002 error 2002"


def test_the_token_operation_asks_the_driver_for_the_current_token():
    script = Script({})
    token = script.run(ops_for(state_with()).token())
    assert token.value == "token-1" and script.tokens == [GetToken()]


def test_accounting_times_are_sent_as_each_version_parses_them():
    # Measured on the local Maxwell: Slurm 22.05 (v0.0.38) answers start_time=<seconds> with HTTP 500
    # "Unable to parse time format" and takes uts<seconds>; 24.11 and 26.05 take plain seconds.
    assert DIALECTS["v0.0.38"].accounting_time(1796170179.7) == "uts1796170179"
    for version in SUPPORTED_VERSIONS[1:]:
        assert DIALECTS[version].accounting_time(1796170179.7) == "1796170179"
