"""What a submission asks of Slurm and how a lost one is looked for, and which record stands for a job
when slurmctld or accounting hold several under one id (issue 18: each test pins behaviour a user
relies on that mutation testing found unasserted)."""

from __future__ import annotations

import pytest

from airflow_provider_maxwell.client import lost_answers
from airflow_provider_maxwell.effects import HttpResult
from airflow_provider_maxwell.exceptions import SlurmApiError, SlurmTransientError
from airflow_provider_maxwell.slurm.dialects import DIALECTS
from tests.unit.client.test_protocol_steps import (
    ACCOUNTING_JOB,
    HOST,
    JOB,
    LOST,
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
SCRIPT = "#!/bin/bash\ntrue\n"


@pytest.mark.parametrize(
    ("connection_timeout", "extra", "answer_wait"),
    [(30, {}, 120.0), (150, {}, 150.0), (300, {}, 180.0), (30, {"submit_timeout": 60}, 60.0)],
)
def test_a_submission_waits_at_least_two_minutes_for_its_answer_within_its_bound(
    connection_timeout, extra, answer_wait
):
    # slurmrestd holds a submission while slurmctld asks it to back off: a short connection timeout would
    # give up on an answer that is coming, and then look for the job the long way.
    script = Script({SUBMIT: [ok({**META, "job_id": 42})]})
    assert script.run(ops_for(state_with(timeout=connection_timeout, **extra)).submit(SCRIPT, {})) == 42
    (call,) = script.sent
    # ...but no longer than what is left of the submission's bound (extra.submit_timeout, 180 s by default)
    assert call.timeout == pytest.approx(answer_wait, abs=1.0) and call.timeout <= answer_wait


def test_the_search_for_a_lost_submission_asks_for_the_users_jobs_of_its_name_without_steps():
    nothing = ok({**META, "jobs": []})
    script = Script({SUBMIT: [LOST], LISTING: [nothing]})
    with pytest.raises(SlurmTransientError):
        script.run(ops_for(state_with(), limit=1).submit(SCRIPT, {"name": "reduce"}))
    searches = [c for c in script.sent if c.url == HOST + LISTING]
    assert len(searches) == len(lost_answers.LOST_ANSWER_LOOKS)
    params = dict(searches[0].params)
    assert params.pop("start_time").isdigit()
    assert params == {"job_name": "reduce", "users": "alice", "skip_steps": "true"}


def test_the_search_for_a_lost_unnamed_submission_asks_by_time_only():
    nothing = ok({**META, "jobs": []})
    script = Script({SUBMIT: [LOST], LISTING: [nothing]})
    with pytest.raises(SlurmTransientError):
        script.run(ops_for(state_with(), limit=1).submit(SCRIPT, {}))
    search = next(c for c in script.sent if c.url == HOST + LISTING)
    assert sorted(search.params) == ["skip_steps", "start_time"]


def test_a_failed_search_for_a_lost_submission_names_the_submission():
    script = Script({SUBMIT: [LOST], LISTING: [slurm_error(500, 2)]})
    with pytest.raises(SlurmApiError) as failure:
        script.run(ops_for(state_with(), limit=1).submit(SCRIPT, {"name": "reduce"}))
    mark = next(w for w in script.sent[0].json["job"]["comment"].split() if w.startswith("maxwell-submission:"))
    assert str(failure.value) == (
        f"Could not look for the job of submission {mark}: HTTP 500 from {HOST}{LISTING}: error 2 error 2"
    )


def test_a_submission_too_large_for_the_server_says_how_to_make_it_fit():
    too_large = HttpResult(413, b"<html>Request Entity Too Large</html>", {})
    with pytest.raises(SlurmApiError) as failure:
        Script({SUBMIT: [too_large]}).run(ops_for(state_with()).submit(SCRIPT, {}))
    assert str(failure.value) == (
        "Slurm refused the job (the request is larger than the server or a proxy in front of it accepts: make "
        "the script smaller, e.g. pass large data through files on the shared file system): "
        f"HTTP 413 from {HOST}{SUBMIT}"
    )
    with pytest.raises(SlurmApiError) as other:
        Script({SUBMIT: [HttpResult(414, b"<html>URI Too Long</html>", {})]}).run(
            ops_for(state_with()).submit(SCRIPT, {})
        )
    assert str(other.value) == f"Slurm refused the job: HTTP 414 from {HOST}{SUBMIT}"


def test_an_array_jobs_own_record_stands_for_it_beside_newer_task_records():
    own = job_doc(7, "RUNNING", submit=100)
    task = job_doc(8, "PENDING", array_job_id=7, submit=200)  # a task requeued after the array's submission
    script = Script({JOB: [jobs(own, task)]})
    job = script.run(ops_for(state_with()).job(7))
    assert (job.job_id, job.state.value) == (7, "RUNNING")
    accounting = Script({ACCOUNTING_JOB: [jobs(record(7, "COMPLETED", submit=100), record(8, "FAILED", submit=200))]})
    final = accounting.run(ops_for(state_with()).accounting_job(7))
    assert (final.job_id, final.state.value) == (7, "COMPLETED")


def test_the_name_search_reads_each_live_job_of_the_user_whatever_comes_before_it():
    found_in_accounting = [
        {**record(14, "RUNNING", submit=100), "name": "other"},  # another name first: skipped, not the end
        record(13, "RUNNING", user="bob", submit=110),  # another user's: skipped
        record(12, "RUNNING", submit=300),
    ]
    live = [job_doc(12, "RUNNING", submit=300), job_doc(15, "PENDING", array_job_id=12, submit=400)]
    script = Script({LISTING: [jobs(*found_in_accounting)], "/slurm/v0.0.45/job/12": [jobs(*live)]})
    found = script.run(ops_for(state_with()).find_jobs_by_name("reduce"))
    assert [(j.job_id, j.state.value, j.source) for j in found] == [(12, "RUNNING", "slurmctld")]


# ---------------------------------------------------------------- slurmctld's states of many jobs

STATES = "/slurm/v0.0.45/jobs/state"
MANY = list(range(1, 2001))  # more ids than one URL holds: asked in several requests
REQUESTS = len(DIALECTS["v0.0.45"].job_state_queries(MANY))


def states_of(*job_ids: int) -> HttpResult:
    return ok({**META, "jobs": [{"job_id": str(i), "state": ["RUNNING"]} for i in job_ids]})


def test_the_states_of_many_jobs_are_gathered_from_every_request():
    script = Script({STATES: [states_of(1, 2), states_of(), states_of(1500), states_of(2000)]})
    found = script.run(ops_for(state_with()).job_statuses(MANY))
    assert REQUESTS == 4 and script.count(STATES) == REQUESTS
    assert [s.job_id for s in found] == [1, 2, 1500, 2000]


def test_a_request_whose_jobs_slurmctld_forgot_does_not_end_the_gathering():
    script = Script({STATES: [slurm_error(404, 2017), states_of(1500)]})
    found = script.run(ops_for(state_with()).job_statuses(MANY))
    assert [s.job_id for s in found] == [1500] * (REQUESTS - 1)


def test_jobs_state_failing_as_unavailable_is_raised_but_not_implemented_means_ask_accounting():
    unavailable = Script({STATES: [HttpResult(503, b"<html>busy</html>", {})]})
    with pytest.raises(SlurmTransientError) as failure:
        unavailable.run(ops_for(state_with(), limit=1).job_statuses([7]))
    assert failure.value.status == 503
    not_implemented = Script({STATES: [HttpResult(501, b"<html>Not Implemented</html>", {})]})
    assert not_implemented.run(ops_for(state_with(), limit=1).job_statuses([7])) is None
