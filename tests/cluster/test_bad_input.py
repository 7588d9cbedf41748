"""Every bad input a user can give, through a real DAG run against the local Maxwell: each task
fails with an error naming the field (and the fix), and no Slurm job is created for any of them.
The same checks at unit level: tests/unit/slurm/test_submit.py."""

from __future__ import annotations

import json
import re

from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

from .airflow_cli import TEST_DAGS, dags_test, task_sections

# task id -> what its error must say (the field, and the words of the fix or Slurm's own message)
EXPECTED = {
    "unknown_partition": r"Slurm refused the job: HTTP 4\d\d from \S+/job/submit: error 2000 Invalid partition",
    "negative_time_limit": r"time_limit=-5 minutes is out of range: give a positive limit",
    "absurd_time_limit": r"time_limit=1000000000 minutes is out of range",
    "non_string_environment": r"environment\['RUN'\] must be a string, not int \(42\): write it as a string",
    "empty_script": r"script is empty: give the batch script's text",
    "missing_script_file": r"script: the file 'no_such_script.sh' does not exist \(looked in .*\)\. Give a path",
    "unknown_auth_method": r"Maxwell connection 'maxwell_bad_auth_method': extra.auth_method .*kerberos",
    "lifespan_above_86400": r"Maxwell connection 'maxwell_bad_lifespan': extra.jwt_lifespan is 90000 s",
    "missing_password": r"Maxwell connection 'maxwell_bad_no_password': password ",
    "malformed_host": r"Maxwell connection 'maxwell_bad_host': host ",
    "job_id_not_a_number": r"job_id must be a Slurm job id \(a positive whole number\), not '12ab': check",
    "job_of_another_user": r"job_id \d+ belongs to user 'mxuser2', not to 'mxuser1'",
}


def bad_connections(cluster) -> dict[str, str]:
    base = {"conn_type": "maxwell", "host": cluster["front_door"] + "/sapi", "login": "mxuser1", "password": "x"}
    variants = {
        "maxwell_bad_auth_method": {"extra": {"auth_method": "kerberos"}},
        "maxwell_bad_lifespan": {"extra": {"auth_method": "portal", "jwt_lifespan": 90000}},
        "maxwell_bad_no_password": {"password": None, "extra": {"auth_method": "portal"}},
        "maxwell_bad_host": {"host": "max-slurm-rest.desy.de/sapi", "extra": {"auth_method": "portal"}},
    }
    env = {}
    for conn_id, change in variants.items():
        conn = {**base, **change}
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps({k: v for k, v in conn.items() if v is not None})
    return env


def test_every_bad_input_is_refused_naming_the_field_and_nothing_is_submitted(
    airflow_env, cluster, users, make_connection, signing_key_b64, monkeypatch
):
    other = make_connection(
        cluster["stacks"]["s26"]["rest_url"],
        users[1]["name"],
        auth_method="signing_key",
        signing_secret=signing_key_b64,
    )
    others_job = MaxwellHook(other).submit_job(
        "#!/bin/bash\nsleep 1\n",
        name="someone-elses",
        partition="maxcpu",
        current_working_directory=cluster["jobs_dir"],
    )
    env = {**airflow_env, **bad_connections(cluster), "MAXWELL_OTHER_USERS_JOB": str(others_job)}
    code, out = dags_test(env, TEST_DAGS, "maxwell_bad_input", timeout=500)
    assert code != 0, out[-3000:]
    sections = task_sections(out)
    refused = []
    for task_id, pattern in EXPECTED.items():
        # Each task's own output: a message printed by another task must not count for this one.
        if re.search(pattern, sections.get(task_id, "")):
            refused.append(task_id)
    missing = sorted(set(EXPECTED) - set(refused))
    assert not missing, f"not refused with a clear message: {missing}\n{out[-6000:]}"
    # No task created a job: none of their names exists in slurmctld or accounting.
    monkeypatch.setenv("AIRFLOW_CONN_MAXWELL_DEFAULT", env["AIRFLOW_CONN_MAXWELL_DEFAULT"])
    mine = MaxwellHook("maxwell_default")
    for task_id in EXPECTED:
        assert mine.find_jobs_by_name(f"bad-input-{task_id}") == [], task_id
