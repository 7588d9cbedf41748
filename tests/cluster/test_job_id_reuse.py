"""Job ids handed out again after a Slurm state reset: an admin clears slurmctld's state, ids start over,
and accounting keeps every old record. A record under the reused id that is another user's, or an
older one of the same user, must never pass for the job waited on.

Against the real daemons: `cluster.py reset-jobs` empties slurmctld's saved state and restarts it,
its ids starting at a range of this module's own (far above what other tests reach), so the old
records here are this module's; when the module is done, ids continue past all ever handed out. A
reset ends every queued or running job of that release."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from airflow_provider_maxwell.slurm.job import SlurmJob

from ..conftest import PROJECT
from .airflow_cli import TEST_DAGS, dags_test

CLUSTER = [sys.executable, str(PROJECT / "devcluster" / "cluster.py")]
REUSED_ID = {"s22": 2290000, "s24": 2490000, "s26": 2690000}
RESET: set[str] = set()


def reset(release: str) -> int:
    """Clear slurmctld's state; the next job of `release` gets the id returned."""
    subprocess.run([*CLUSTER, "reset-jobs", release, str(REUSED_ID[release])], check=True, capture_output=True)
    RESET.add(release)
    return REUSED_ID[release]


@pytest.fixture(scope="module", autouse=True)
def ids_never_reused_after_this_module() -> Iterator[None]:
    """Once done, each release hands out ids past all it ever gave: later tests and runs of a dev
    cluster meet no reused id (nor another user's slurm-<id>.out in the jobs directory)."""
    yield
    for release in sorted(RESET):
        subprocess.run([*CLUSTER, "reset-jobs", release, "next"], check=True, capture_output=True)


def submit(hook: MaxwellHook, script: str, name: str, cluster: dict[str, Any]) -> int:
    # Output files of their own: after a reset, the default slurm-<id>.out of another user's old job
    # blocks a new job under that id from writing its own (it then fails at launch, measured on 22.05).
    output = f"{cluster['jobs_dir']}/reuse-%u-%j.out"
    return hook.submit_job(
        script, name=name, time_limit=5, current_working_directory=cluster["jobs_dir"], standard_output=output
    )


def wait_for_record(hook: MaxwellHook, job_id: int, user: str, since: float) -> SlurmJob:
    """The ended accounting record of `user`'s job under `job_id` submitted after `since`."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for record in hook.get_accounting_jobs(job_id):
            if record.user == user and record.is_terminal and record.submitted >= since - 2:
                return record
        time.sleep(1)
    raise AssertionError(f"no ended accounting record of {user}'s job {job_id} within 120 s")


def leave_old_records(release: str, cluster: dict[str, Any], mine: MaxwellHook, theirs: MaxwellHook) -> int:
    """Two resets, two ended jobs under one id: my FAILED one (exit 3), then another user's COMPLETED
    one. Returns the id, which the next reset hands out once more."""
    for hook, script in ((mine, "#!/bin/bash\nexit 3\n"), (theirs, "#!/bin/bash\ntrue\n")):
        expected = reset(release)
        since = time.time()
        job_id = submit(hook, script, "before-the-reset", cluster)
        assert job_id == expected, f"the reset should have handed out {expected} again, not {job_id}"
        wait_for_record(hook, job_id, hook.config.login, since)
    return expected


def hooks(rest_url: str, users, make_connection, signing_key_b64) -> tuple[MaxwellHook, MaxwellHook]:
    """Hooks of user 1 (who owns the default connections the test DAGs use) and user 2 on one release."""
    return tuple(  # type: ignore[return-value]
        MaxwellHook(make_connection(rest_url, u["name"], auth_method="signing_key", signing_secret=signing_key_b64))
        for u in users[:2]
    )


def test_the_operator_after_a_reset_waits_for_its_own_job(
    stack, cluster, users, make_connection, signing_key_b64, airflow_env
):
    release = stack["name"]
    mine, theirs = hooks(stack["rest_url"], users, make_connection, signing_key_b64)
    job_id = leave_old_records(release, cluster, mine, theirs)
    # Before the id is handed out again, accounting's newest record under it is the other user's.
    assert mine.get_job(job_id).user == theirs.config.login
    env = {**airflow_env, "MAXWELL_TEST_CONN": f"maxwell_{release}"}

    # Deferred: the trigger reads accounting, which holds the FAILED record of the same user from
    # seconds ago and the other user's COMPLETED one under this id; a fooled wait ends with either.
    for dag_id, exit_code in (("maxwell_outcome", 5), ("maxwell_outcome_sync", 6)):
        reset(release)
        script = f"#!/bin/bash\nsleep 6\nexit {exit_code}\n"
        rc, out = dags_test(env, TEST_DAGS, dag_id, {"script": script})
        assert f"Submitted Slurm job {job_id} " in out, out[-3000:]
        assert rc != 0 and f"ended FAILED with exit code {exit_code}" in out, out[-3000:]
        assert "exit code 3" not in out and "ended COMPLETED" not in out
        if dag_id == "maxwell_outcome":
            assert "Pausing task as DEFERRED" in out


def test_the_sensor_on_a_reused_id(airflow_env, cluster, users, make_connection, signing_key_b64):
    # The sensor DAGs use the default connection: user 1 on 26.05, through the front door.
    mine, theirs = hooks(cluster["stacks"]["s26"]["rest_url"], users, make_connection, signing_key_b64)
    job_id = leave_old_records("s26", cluster, mine, theirs)

    # Given the id while its newest record is another user's job: refused, naming the user, not a success.
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_sensor", {"job_id": job_id})
    assert rc != 0, out[-3000:]
    assert f"job_id {job_id} belongs to user {theirs.config.login!r}" in out
    assert "ended COMPLETED" not in out

    reset("s26")
    # Long enough to be running when `dags test` (10-20 s to start on a loaded machine) first looks.
    assert submit(mine, "#!/bin/bash\nsleep 40\n", "sensed-after-the-reset", cluster) == job_id
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_sensor_deferred", {"job_id": job_id})
    assert rc == 0, out[-3000:]
    assert "Pausing task as DEFERRED" in out
    assert f"Slurm job {job_id} (sensed-after-the-reset) ended COMPLETED" in out
    # Poking after slurmctld forgot the job: accounting's record of this job, not the FAILED one.
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_sensor", {"job_id": job_id})
    assert rc == 0, out[-3000:]
    assert f"Slurm job {job_id} (sensed-after-the-reset) ended COMPLETED" in out and "exit code 3" not in out
