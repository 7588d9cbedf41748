"""What the Slurm layer makes of job fields and of Slurm's answers, field by field: a submit body's values and
the refusals' exact words, every field a job record carries into Airflow's messages (reason, nodes, paths,
array ids), how an answer's errors are read, and each version's routes and query parameters (issue 18: each
test here pins behaviour mutation testing found unasserted)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_maxwell.exceptions import MaxwellConfigError, SlurmError
from airflow_provider_maxwell.slurm.answers import (
    controller_down,
    is_error,
    is_unknown_job,
    parse_errors,
    read_answer,
    signal_failures,
)
from airflow_provider_maxwell.slurm.dialects import (
    DIALECTS,
    Route,
    Service,
    negotiate,
    openapi_route,
    served_versions,
    version_key,
)
from airflow_provider_maxwell.slurm.job import (
    UnreadableJobRecord,
    exit_status,
    number,
    parse_accounting_job,
    parse_controller_job,
    parse_job_id,
    timestamp,
)
from airflow_provider_maxwell.slurm.states import JobState
from airflow_provider_maxwell.slurm.submit import (
    MAX_TIME_LIMIT_MINUTES,
    build_submit_body,
    memory_mib,
    minutes,
)

SCRIPT = "#!/bin/bash\necho hi\n"
NEW = DIALECTS["v0.0.45"]
OLD = DIALECTS["v0.0.38"]


def job_of(fields: dict[str, Any], dialect: Any = NEW) -> dict[str, Any]:
    return build_submit_body(dialect, SCRIPT, fields, default_cwd="/home/a")["job"]


def refusal(fields: dict[str, Any], script: Any = SCRIPT) -> str:
    with pytest.raises(MaxwellConfigError) as failure:
        build_submit_body(NEW, script, fields, default_cwd="/home/a")
    return str(failure.value)


# ---------------------------------------------------------------- submit: values sent


def test_time_limits_from_a_minute_to_a_year_are_sent_and_zero_is_not():
    assert minutes("time_limit", MAX_TIME_LIMIT_MINUTES) == MAX_TIME_LIMIT_MINUTES == 366 * 24 * 60
    assert minutes("time_limit", 0.001) == 1
    assert refusal({"time_limit": 0}) == (
        "time_limit=0 minutes is out of range: give a positive limit of at most 527040 minutes (a year), "
        "e.g. time_limit=timedelta(hours=2)"
    )
    assert refusal({"time_limit": MAX_TIME_LIMIT_MINUTES + 0.5}).startswith("time_limit=527040.5 minutes is out")
    assert refusal({"time_limit": True}) == ("time_limit must be minutes (a number) or a datetime.timedelta, not True")
    assert refusal({"time_limit": float("inf")}).startswith("time_limit must be minutes")


@pytest.mark.parametrize(
    ("given", "mib"),
    [
        (4096, 4096),
        (1, 1),
        ("512", 512),
        ("512M", 512),
        ("512mb", 512),
        (" 4G ", 4096),
        ("2T", 2 * 1024 * 1024),
        ("2048K", 2),
        ("1536K", 2),
        ("1K", 1),
    ],
)
def test_memory_is_sent_in_mib_rounded_up(given, mib):
    assert memory_mib("memory_per_node", given) == mib
    assert job_of({"memory_per_node": given})["memory_per_node"] == {"set": True, "infinite": False, "number": mib}
    assert job_of({"memory_per_node": given}, OLD)["memory_per_node"] == mib


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (0, "memory_per_node must be positive and at most 4611686018427387904 MiB, not 0"),
        ("0G", "memory_per_node must be positive and at most 4611686018427387904 MiB, not '0G'"),
        ("4X", "memory_per_node must be MiB as an integer or a string like '4G' or '512M', not '4X'"),
        (True, "memory_per_node must be MiB as an integer or a string like '4G' or '512M', not True"),
        (4.5, "memory_per_node must be MiB as an integer or a string like '4G' or '512M', not 4.5"),
    ],
)
def test_memory_that_is_no_size_is_refused_in_full(given, message):
    assert refusal({"memory_per_node": given}) == message


@pytest.mark.parametrize("name", ["ntasks", "cpus_per_task"])
def test_task_and_cpu_counts_are_positive_integers(name):
    sent = "tasks" if name == "ntasks" else name
    assert job_of({name: 1})[sent] == 1 and job_of({name: 4})[sent] == 4
    for wrong in (0, -1, True, "4", 2.0):
        assert refusal({name: wrong}) == f"{name} must be a positive integer of at most 2147483647, not {wrong!r}"


@pytest.mark.parametrize(
    ("nodes", "new", "old"),
    [(3, "3", [3, 3]), ("3", "3", [3, 3]), (" 2 - 2 ", "2", [2, 2]), ("1-2", "1-2", [1, 2])],
)
def test_node_counts_and_ranges(nodes, new, old):
    assert job_of({"nodes": nodes})["nodes"] == new
    assert job_of({"nodes": nodes}, OLD)["nodes"] == old


@pytest.mark.parametrize("nodes", ["0-2", "3-2", "0", "two", True, 0, 2.0])
def test_node_ranges_that_are_no_counts_are_refused_in_full(nodes):
    expected = (
        f"nodes must be a positive integer of at most 2147483647, not {nodes!r}"
        if nodes == 0 and not isinstance(nodes, bool)
        else f"nodes must be a positive count or a range like '2-4', not {nodes!r}"
    )
    assert refusal({"nodes": nodes}) == expected


def test_the_environment_always_has_path_and_the_users_values_on_top():
    assert job_of({"environment": {"PATH": "/opt/bin", "RUN": "42"}}, OLD)["environment"] == {
        "PATH": "/opt/bin",
        "RUN": "42",
    }
    assert job_of({"environment": None})["environment"] == ["PATH=/usr/local/bin:/usr/bin:/bin"]


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (["A=b"], "environment must be a dict of names to strings, not list"),
        ({"": "x"}, "environment has an invalid variable name '': use a non-empty name without '=' or NUL"),
        ({"A=B": "x"}, "environment has an invalid variable name 'A=B': use a non-empty name without '=' or NUL"),
        ({"A\0": "x"}, "environment has an invalid variable name 'A\\x00': use a non-empty name without '=' or NUL"),
        ({3: "x"}, "environment has an invalid variable name 3: use a non-empty name without '=' or NUL"),
        ({"RUN": "4\0"}, "environment['RUN'] contains a NUL byte, which no process can receive"),
        ({"RUN": 42}, "environment['RUN'] must be a string, not int (42): write it as a string, e.g. RUN='42'"),
    ],
)
def test_an_environment_no_process_can_receive_is_refused_in_full(environment, message):
    assert refusal({"environment": environment}) == message


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (None, "script must be text (str), not NoneType: decode it first (e.g. data.decode())"),
        (b"#!/bin/bash\n", "script must be text (str), not bytes: decode it first (e.g. data.decode())"),
        (" \n", "script is empty: give the batch script's text (starting with #!/bin/bash) or a path to a .sh file"),
        ("#!/bin/bash\n\0", "script contains a NUL byte: sbatch cannot run it; check how the script was read"),
        (
            "echo this line is longer than thirty characters\n",
            "script must start with an interpreter line such as '#!/bin/bash', as sbatch requires; it starts "
            "with 'echo this line is longer than '",
        ),
    ],
)
def test_scripts_sbatch_cannot_run_are_refused_in_full(script, message):
    assert refusal({}, script=script) == message


def test_string_fields_are_refused_in_full_and_the_working_directory_must_be_absolute():
    assert refusal({"partition": " "}) == "partition must be a non-empty string without NUL bytes, not ' '"
    assert refusal({"name": 3}) == "name must be a non-empty string without NUL bytes, not 3"
    assert refusal({"current_working_directory": "run42"}) == (
        "current_working_directory must be an absolute path on Maxwell, not 'run42': slurmctld has no directory "
        "to resolve it against (e.g. /beegfs/desy/user/me/run42)"
    )
    assert refusal({"script": "x"}) == (
        "job field 'script' is not allowed: the batch script is the script argument (operator: script=...)"
    )


def test_other_slurm_fields_pass_through_as_given():
    job = job_of({"standard_input": "/dev/null", "exclusive": ["user"], "current_working_directory": "/b/r"})
    assert job["standard_input"] == "/dev/null" and job["exclusive"] == ["user"]
    assert job["current_working_directory"] == "/b/r"


# ---------------------------------------------------------------- job records


def test_job_ids_are_positive_32_bit_whole_numbers():
    assert parse_job_id("1") == 1 and parse_job_id(" 42 ") == 42 and parse_job_id(2**32 - 1) == 2**32 - 1
    for wrong in ("0", "-1", "abc", "12a", 0, 2**32, True, "", "²"):
        with pytest.raises(MaxwellConfigError) as failure:
            parse_job_id(wrong)
        assert str(failure.value) == (
            f"job_id must be a Slurm job id (a positive whole number), not {wrong!r}: check the value or template "
            "that gives it (e.g. the submitting task's XCom)"
        )


LIVE_TASK = {
    "job_id": 103,
    "array_job_id": {"set": True, "number": 100},
    "array_task_id": {"set": True, "number": 3},
    "name": "reduce",
    "user_name": "alice",
    "partition": "allcpu",
    "job_state": ["PENDING"],
    "state_reason": "Priority",
    "nodes": "max-wn01,max-wn02",
    "comment": "airflow:dag=x",
    "current_working_directory": "/beegfs/run42",
    "standard_output": "out/%A_%a.%5j.%u.%x.%N.%%.%3x",
    "standard_error": "/logs/%j.err",
    "exit_code": {"return_code": {"set": True, "number": 0}},
}


def test_a_live_array_task_record_carries_every_field():
    job = parse_controller_job(LIVE_TASK)
    assert (job.job_id, job.array_job_id, job.array_task_id) == (103, 100, 3)
    assert (job.name, job.user, job.partition, job.state, job.reason) == (
        "reduce",
        "alice",
        "allcpu",
        JobState.PENDING,
        "Priority",
    )
    assert (job.nodes, job.comment, job.working_directory) == ("max-wn01,max-wn02", "airflow:dag=x", "/beegfs/run42")
    assert (job.standard_output, job.standard_error) == (LIVE_TASK["standard_output"], "/logs/%j.err")
    assert job.exit_code is None and job.end_time is None  # not ended: its exit code means nothing yet
    assert job.output_path() == "/beegfs/run42/out/100_3.00103.alice.reduce.max-wn01.%.reduce"
    assert job.error_path() == "/logs/103.err"


def test_slurmctlds_default_output_files_in_the_working_directory():
    single = parse_controller_job({"job_id": 42, "job_state": "RUNNING", "current_working_directory": "/b/run"})
    assert single.output_path() == single.error_path() == "/b/run/slurm-42.out"
    task = parse_controller_job({**LIVE_TASK, "standard_output": "", "standard_error": None})
    assert task.output_path() == task.error_path() == "/beegfs/run42/slurm-100_3.out"
    outside_arrays = parse_controller_job({"job_id": 7, "job_state": "RUNNING", "standard_output": "%A-%a.out"})
    assert outside_arrays.output_path() == "7-4294967294.out"  # no working directory known: left relative


def test_zero_padding_takes_every_digit_of_the_width():
    job = parse_controller_job(
        {"job_id": 42, "name": "ab", "job_state": "RUNNING", "standard_output": "/o/%10j-%5x-%q-%2"}
    )
    assert job.output_path() == "/o/0000000042-ab-%q-%2"  # names are not padded; unknown or cut patterns stay


def test_a_record_without_name_reason_or_nodes_says_so():
    job = parse_controller_job({"job_id": 5, "job_state": "PENDING", "state_reason": "None", "nodes": ""})
    assert (job.name, job.user, job.partition, job.reason, job.nodes) == ("", "", "", None, None)
    assert parse_controller_job({"job_id": 5, "job_state": "PENDING", "state_reason": ""}).reason is None
    with pytest.raises(UnreadableJobRecord, match="job_id is not a Slurm job id"):
        parse_controller_job({"job_state": "PENDING"})
    assert parse_controller_job({"job_id": 5, "array_task_id": 3, "job_state": "PENDING"}).array_task_id is None


ACCOUNTING_TASK = {
    "job_id": 103,
    "array": {"job_id": 100, "task_id": {"set": True, "number": 3}},
    "name": "reduce",
    "user": "alice",
    "partition": "allcpu",
    "state": {"current": ["FAILED"], "reason": "NonZeroExitCode"},
    "exit_code": {"return_code": {"set": True, "number": 3}, "signal": {"id": {"set": True, "number": 0}}},
    "time": {"submission": 1_800_000_000, "start": 1_800_000_010, "end": 1_800_000_070},
    "nodes": "max-wn03",
    "comment": {"job": "airflow:dag=x", "administrator": "", "system": ""},
    "working_directory": "/beegfs/run42",
    "stdout_expanded": "/beegfs/run42/slurm-100_3.out",
    "stdout": "/beegfs/run42/slurm-%A_%a.out",
    "stderr": "/beegfs/run42/err-%a.txt",
}


def test_an_accounting_array_task_record_carries_every_field():
    job = parse_accounting_job(ACCOUNTING_TASK)
    assert (job.job_id, job.array_job_id, job.array_task_id, job.source) == (103, 100, 3, "slurmdb")
    assert (job.name, job.user, job.partition, job.state, job.reason) == (
        "reduce",
        "alice",
        "allcpu",
        JobState.FAILED,
        "NonZeroExitCode",
    )
    assert (job.exit_code, job.signal, job.nodes, job.comment) == (3, None, "max-wn03", "airflow:dag=x")
    assert job.working_directory == "/beegfs/run42"
    assert (job.standard_output, job.standard_error) == ("/beegfs/run42/slurm-100_3.out", "/beegfs/run42/err-%a.txt")
    assert job.output_path() == "/beegfs/run42/slurm-100_3.out" and job.error_path() == "/beegfs/run42/err-3.txt"
    start = datetime.fromtimestamp(1_800_000_010, timezone.utc)
    assert (job.start_time, job.end_time, job.elapsed) == (start, start + timedelta(seconds=60), timedelta(seconds=60))


def test_accountings_older_shapes_plain_comment_stdout_and_no_nodes():
    job = parse_accounting_job(
        {
            "job_id": 9,
            "state": {"current": "COMPLETED", "reason": "None"},
            "nodes": "None assigned",
            "comment": "tag",
            "stdout": "/o/%j.out",
            "stderr_expanded": "/o/9.err",
            "stderr": "/o/%j.err",
        }
    )
    assert (job.reason, job.nodes, job.comment, job.array_job_id, job.array_task_id) == (None, None, "tag", None, None)
    assert (job.standard_output, job.standard_error, job.output_path()) == ("/o/%j.out", "/o/9.err", "/o/9.out")
    assert parse_accounting_job({"job_id": 9, "state": {"current": "PENDING"}, "nodes": 3}).nodes is None
    assert (
        parse_accounting_job({"job_id": 9, "state": {"current": "PENDING"}}).output_path() is None
    )  # no default guessed


def test_22_05s_accounting_exit_code_0_is_unknown_unless_the_job_completed():
    failed = {"job_id": 9, "state": {"current": "FAILED"}, "exit_code": {"return_code": 0}}
    assert parse_accounting_job(failed, exit_code_reliable=False).exit_code is None
    assert parse_accounting_job(failed).exit_code == 0
    completed = {"job_id": 9, "state": {"current": "COMPLETED"}, "exit_code": {"return_code": 0}}
    assert parse_accounting_job(completed, exit_code_reliable=False).exit_code == 0


def test_number_shapes():
    assert number({"set": False, "number": 5}) is None
    assert number({"set": True, "infinite": True, "number": 5}) is None
    assert number({"number": 5}) == 5 and number("7") == 7 and number(True) is None and number("x") is None


def test_exit_status_shapes():
    assert exit_status({"return_code": 0, "signal": {"id": 9}}) == (0, 9)
    assert exit_status({"return_code": {"set": True, "number": 2}, "signal": {"id": {"number": 0}}}) == (2, None)
    assert exit_status(768) == (3, None) and exit_status(9) == (None, 9) and exit_status(None) == (None, None)


def test_timestamps_are_utc_and_zero_means_unset():
    assert timestamp(1_800_000_000) == datetime.fromtimestamp(1_800_000_000, timezone.utc)
    assert timestamp(0) is None and timestamp(-5) is None and timestamp({"set": False}) is None


# ---------------------------------------------------------------- answers


def test_an_answers_excerpt_is_its_first_200_characters_on_one_line():
    html = b"<html>\n  <head>\n<title>502 Bad Gateway</title>" + b" word" * 100 + b"\xff"
    answer = read_answer(502, html)
    assert answer.document is None
    assert answer.body_excerpt == ("<html> <head> <title>502 Bad Gateway</title>" + " word" * 100)[:200]
    assert read_answer(500, b"\xff\xfe oops").body_excerpt == "\ufffd\ufffd oops"
    assert read_answer(200, "text body").body_excerpt == "text body"


@pytest.mark.parametrize("body", [b"", b"  \n", b"[1, 2]", b"{broken", b'"meta"'])
def test_bodies_that_are_no_json_object_have_no_document(body):
    answer = read_answer(200, body)
    assert answer.document is None and answer.errors == () and not answer.is_slurm


def test_slurms_errors_are_read_in_every_dialect():
    errors = parse_errors(
        {
            "errors": [
                {"error_number": 2017, "error": "Invalid job id", "description": "unknown", "source": "slurmctld"},
                {"error_code": 1007, "description": "Protocol authentication error"},
                {"errno": "-1", "error": "generic"},
                {"error_number": "abc", "error": "no number"},
                {},
                "not an entry",
            ]
        }
    )
    assert errors == [
        SlurmError(code=2017, message="Invalid job id", description="unknown", source="slurmctld"),
        SlurmError(code=1007, message="Protocol authentication error", description="Protocol authentication error"),
        SlurmError(code=-1, message="generic"),
        SlurmError(code=None, message="no number"),
        SlurmError(code=None, message=""),
    ]
    assert str(errors[0]) == "error 2017 Invalid job id (unknown) in slurmctld"
    assert parse_errors({"errors": {"error": "x"}}) == [] and parse_errors(None) == []


def test_an_unknown_job_is_error_2017_or_slurms_own_404():
    slurm_404 = read_answer(404, b'{"meta": {}, "errors": []}')
    assert is_unknown_job(slurm_404)
    assert not is_unknown_job(read_answer(404, b"<html>nginx</html>"))
    assert not is_unknown_job(read_answer(405, b'{"meta": {}}'))
    assert is_unknown_job(read_answer(500, b'{"errors": [{"error_number": 2017}]}'))


def test_any_http_error_is_an_error_and_nothing_found_is_none():
    assert is_error(read_answer(400, b"")) and is_error(read_answer(413, b"<html/>"))
    assert not is_error(read_answer(399, b""))
    assert not is_error(read_answer(200, b'{"errors": [{"error_number": 9003}, {"error": "no code"}]}'))
    assert is_error(read_answer(200, b'{"errors": [{"error_number": 2002}]}'))


def test_each_releases_ping_fields_say_up():
    def down(pings: Any, status: int = 200) -> bool:
        return controller_down(read_answer(status, b"{}") if pings is None else _answer(status, {"pings": pings}))

    assert not down([{"responding": True}]) and not down([{"pinged": "UP"}]) and not down([{"ping": "UP"}])
    assert down([{"pinged": "DOWN", "responding": False}]) and down(["junk"])
    assert not down([]) and not down(None)
    assert controller_down(_answer(500, {"pings": [], "errors": [{"error_number": -1}]}))
    assert not controller_down(_answer(499, {"errors": [{"error_number": -1}]}))
    assert not controller_down(read_answer(500, b"<html/>"))


def _answer(status: int, document: dict[str, Any]) -> Any:
    import json

    return read_answer(status, json.dumps(document).encode())


def test_a_cancel_reports_each_jobs_failure_but_not_an_ended_job():
    answer = _answer(
        200,
        {
            "status": [
                {"error": {"code": 2002, "message": "Access denied", "string": "Access/permission denied"}},
                {"error": {"code": 2017, "string": "Invalid job id specified"}},
                {"error": {"code": 2021, "message": "already done"}},
                {"error": {"code": 0}},
                {"error": {"code": True}},
                {"no error": 1},
            ]
        },
    )
    assert signal_failures(answer) == [
        SlurmError(code=2002, message="Access denied", description="Access/permission denied"),
        SlurmError(code=2017, message="Invalid job id specified", description="Invalid job id specified"),
    ]


# ---------------------------------------------------------------- dialects


def test_routes_name_their_service_and_version():
    v41 = DIALECTS["v0.0.41"]
    assert v41.accounting_jobs == Route(Service.SLURMDB, "/slurmdb/v0.0.41/jobs", "v0.0.41")
    assert v41.accounting_job(7) == Route(Service.SLURMDB, "/slurmdb/v0.0.41/job/7", "v0.0.41")
    assert v41.diag == Route(Service.SLURM, "/slurm/v0.0.41/diag", "v0.0.41")
    assert v41.job(7).ping() == Route(Service.SLURM, "/slurm/v0.0.41/ping", "v0.0.41")
    assert v41.accounting_jobs.ping() is None
    assert openapi_route("/openapi/v3") == Route(Service.OPENAPI, "/openapi/v3") and openapi_route("/x").ping() is None


def test_the_name_search_adds_the_user_where_the_version_can():
    assert OLD.accounting_search("nightly", "alice") == {"job_name": "nightly"}
    assert DIALECTS["v0.0.41"].accounting_search("nightly", "alice") == {"job_name": "nightly", "users": "alice"}


def test_versions_sort_as_numbers():
    assert version_key("v0.0.42") == (0, 0, 42) and version_key("0.0.9") == (0, 0, 9)


def test_a_server_offers_only_versions_both_its_slurm_and_slurmdb_serve():
    assert served_versions({}) == set() and served_versions({"paths": ["x"]}) == set()
    document = {"paths": {"/slurm/v0.0.41/jobs": {}, "/slurm/v0.0.40/jobs": {}, "/slurmdb/v0.0.40/jobs": {}}}
    assert served_versions(document) == {"v0.0.40"}
    split = {"paths": {"/slurm/v0.0.41/jobs": {}, "/slurmdb/v0.0.40/jobs": {}}}
    assert served_versions(split) == set()
    assert served_versions({"paths": {"/slurm/v0.0.41/jobs": {}, 3: {}}}) == {"v0.0.41"}  # no slurmdb paths at all


def test_negotiation_failures_read_in_full():
    with pytest.raises(MaxwellConfigError) as failure:
        negotiate({"v0.0.41"}, "v9")
    assert str(failure.value) == (
        "api_version 'v9' is not one this provider speaks; use 'auto' or one of v0.0.38, v0.0.40, v0.0.41, "
        "v0.0.42, v0.0.43, v0.0.44, v0.0.45"
    )
    with pytest.raises(MaxwellConfigError) as failure:
        negotiate({"v0.0.9", "v0.0.37"})
    assert str(failure.value) == (
        "the server offers Slurm REST API versions ['v0.0.9', 'v0.0.37'] and this provider speaks v0.0.38, "
        "v0.0.40, v0.0.41, v0.0.42, v0.0.43, v0.0.44, v0.0.45: no common version. Upgrade airflow-provider-maxwell "
        "or set api_version in the connection's extra"
    )
    with pytest.raises(MaxwellConfigError, match=r"versions none and this provider"):
        negotiate(set())


def test_the_operator_refuses_a_script_among_its_job_fields_when_the_dag_is_parsed():
    from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator

    with pytest.raises(MaxwellConfigError) as refused:
        MaxwellSubmitJobOperator(task_id="t", script="#!/bin/bash\ntrue\n", job_fields={"script": "#!/bin/bash\n"})
    assert str(refused.value) == (
        "job field 'script' is not allowed: the batch script is the script argument (operator: script=...)"
    )


def test_the_operator_refuses_a_script_its_job_fields_got_at_run_time_before_sending_anything(fake):
    from types import SimpleNamespace

    from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator

    task = MaxwellSubmitJobOperator(task_id="t", script="#!/bin/bash\ntrue\n", maxwell_conn_id=fake.conn_id)
    task.job_fields = {"script": "#!/bin/bash\n"}  # as a rendered template may hold it
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)
    with pytest.raises(MaxwellConfigError, match="job field 'script' is not allowed"):
        task.execute({"ti": ti})  # type: ignore[arg-type]
    assert not [hit for hit in fake.hits if hit[0] == "POST"]
