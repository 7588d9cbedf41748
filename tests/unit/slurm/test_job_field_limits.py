"""Each job field's largest accepted value and the first refused one, and the environment's refusals word for
word: what a submission sends or the typed error that names the field and the fix (issue 18)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.slurm.dialects import DIALECTS
from airflow_provider_maxwell.slurm.submit import build_submit_body

NEW = DIALECTS["v0.0.45"]
OLD = DIALECTS["v0.0.38"]


def job_of(fields: dict[str, Any], dialect: Any = NEW) -> dict[str, Any]:
    return build_submit_body(dialect, "#!/bin/bash\n", fields, default_cwd="/home/a")["job"]


def refusal(fields: dict[str, Any]) -> str:
    with pytest.raises(MaxwellConfigError) as failure:
        build_submit_body(NEW, "#!/bin/bash\n", fields, default_cwd="/home/a")
    return str(failure.value)


def test_kibibytes_round_up_to_whole_mib():
    assert job_of({"memory_per_node": "1025K"}, OLD)["memory_per_node"] == 2
    assert job_of({"memory_per_node": "1024K"}, OLD)["memory_per_node"] == 1
    assert job_of({"memory_per_node": "3073k"}, OLD)["memory_per_node"] == 4


def test_memory_up_to_slurms_largest_value_is_sent_and_more_refused():
    assert job_of({"memory_per_node": 2**62}, OLD)["memory_per_node"] == 2**62
    assert refusal({"memory_per_node": 2**62 + 1}) == (
        "memory_per_node must be positive and at most 4611686018427387904 MiB, not 4611686018427387905"
    )


@pytest.mark.parametrize(("name", "sent"), [("ntasks", "tasks"), ("cpus_per_task", "cpus_per_task")])
def test_counts_up_to_slurms_32_bit_limit_are_sent_and_more_refused(name, sent):
    assert job_of({name: 2**31 - 1})[sent] == 2**31 - 1
    assert refusal({name: 2**31}) == f"{name} must be a positive integer of at most 2147483647, not 2147483648"


def test_node_counts_and_ranges_up_to_the_32_bit_limit_are_sent_and_more_refused():
    assert job_of({"nodes": "1-2147483647"}, OLD)["nodes"] == [1, 2**31 - 1]
    assert job_of({"nodes": 2**31 - 1}, OLD)["nodes"] == [2**31 - 1, 2**31 - 1]
    assert refusal({"nodes": "1-2147483648"}) == (
        "nodes must be a positive count or a range like '2-4', not '1-2147483648'"
    )
    assert refusal({"nodes": 2**31}) == "nodes must be a positive integer of at most 2147483647, not 2147483648"


def test_a_time_limit_of_exactly_a_year_is_sent_and_a_second_more_refused():
    assert job_of({"time_limit": timedelta(days=366)}, OLD)["time_limit"] == 366 * 24 * 60
    assert refusal({"time_limit": timedelta(days=366, seconds=1)}) == (
        "time_limit=527040.0166666667 minutes is out of range: give a positive limit of at most 527040 minutes "
        "(a year), e.g. time_limit=timedelta(hours=2)"
    )


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ([("A", "1")], "environment must be a dict of names to strings, not list"),
        ({"": "x"}, "environment has an invalid variable name '': use a non-empty name without '=' or NUL"),
        ({"A=B": "x"}, "environment has an invalid variable name 'A=B': use a non-empty name without '=' or NUL"),
        ({"A\0": "x"}, "environment has an invalid variable name 'A\\x00': use a non-empty name without '=' or NUL"),
        ({1: "x"}, "environment has an invalid variable name 1: use a non-empty name without '=' or NUL"),
        ({"A": "a\0"}, "environment['A'] contains a NUL byte, which no process can receive"),
        (
            {"RUN": 42},
            "environment['RUN'] must be a string, not int (42): write it as a string, e.g. RUN='42'",
        ),
        (
            {"RUN": 1.5},
            "environment['RUN'] must be a string, not float (1.5): write it as a string, e.g. RUN='1.5'",
        ),
        (
            {"RUN": 10**40},
            f"environment['RUN'] must be a string, not int ({10**40}): write it as a string",
        ),
        ({"RUN": None}, "environment['RUN'] must be a string, not NoneType (None): write it as a string"),
    ],
)
def test_an_environment_no_job_can_receive_is_refused_in_full(environment, message):
    assert refusal({"environment": environment}) == message


def test_the_users_environment_goes_on_top_of_path():
    assert job_of({"environment": {"A": "1", "PATH": "/opt/bin"}}, OLD)["environment"] == {"A": "1", "PATH": "/opt/bin"}
    assert job_of({"environment": {"A": "1"}})["environment"] == ["PATH=/usr/local/bin:/usr/bin:/bin", "A=1"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"current_working_directory": "run42"},
            "current_working_directory must be an absolute path on Maxwell, not 'run42': slurmctld has no directory "
            "to resolve it against (e.g. /beegfs/desy/user/me/run42)",
        ),
        (
            {"script": "#!/bin/bash\n"},
            "job field 'script' is not allowed: the batch script is the script argument (operator: script=...)",
        ),
        (
            {"licenses": float("nan")},
            "job field 'licenses' is a float that no JSON request can carry (or holds one): give Slurm's own JSON "
            "value for it (text, a number, true/false, a list or a dict)",
        ),
        (
            {"licenses": object()},
            "job field 'licenses' is an object that no JSON request can carry (or holds one): give Slurm's own JSON "
            "value for it (text, a number, true/false, a list or a dict)",
        ),
        ({"comment": "  "}, "comment must be a non-empty string without NUL bytes, not '  '"),
        ({"name": 5}, "name must be a non-empty string without NUL bytes, not 5"),
    ],
)
def test_other_job_fields_are_refused_in_full(fields, message):
    assert refusal(fields) == message
