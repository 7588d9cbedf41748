"""Faults survived, nothing lost: daemons of the local Maxwell stopped (by PID) while a task waits,
then brought back by `cluster.py up` (which starts only what is missing)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from ..conftest import PROJECT, STATE
from .airflow_cli import start_until_running
from .conftest import stop_pid

CLUSTER = [sys.executable, str(PROJECT / "devcluster" / "cluster.py")]


def stop_daemon(name: str) -> None:
    pid, _, _ = (STATE / "pids" / f"{name}.pid").read_text().partition(" ")
    if not stop_pid(int(pid), timeout=30):
        raise AssertionError(f"{name} (pid {pid}) did not stop")


def bring_back() -> None:
    subprocess.run([*CLUSTER, "up"], check=True, capture_output=True, timeout=600)


@pytest.mark.parametrize("daemon", ["slurmrestd", "slurmctld"])
@pytest.mark.parametrize("dag_id", ["maxwell_outcome", "maxwell_outcome_sync"], ids=["deferred", "sync"])
def test_wait_survives_a_daemon_restart(airflow_env, dag_id, daemon, spawned):
    proc, seen, _ = start_until_running(airflow_env, dag_id, spawned, "#!/bin/bash\nsleep 20\necho survived\n")
    try:
        # slurmrestd down: the front door answers 502 for /sapi. slurmctld down: slurmrestd answers
        # 500 "error -1" to job queries, which 22.05 also says for a refused token.
        stop_daemon(f"s26-{daemon}")
        time.sleep(8)
    finally:
        bring_back()
    out = seen + (proc.stdout.read() if proc.stdout else "")
    assert proc.wait(timeout=300) == 0, out[-4000:]
    assert "ended COMPLETED" in out and "survived" in out
    assert "refused" not in out and "freshly minted" not in out  # never taken for a token problem
    if daemon == "slurmrestd":
        # The outage was seen and ridden out (by the hook's retries, or the watcher's when it lasted longer).
        assert re.search(r"Slurm REST API (answered HTTP 50[234]|unreachable)", out), out[-4000:]


def test_wait_survives_accounting_down_when_the_job_ends(airflow_env, spawned):
    proc, seen, _ = start_until_running(
        airflow_env, "maxwell_outcome", spawned, "#!/bin/bash\nsleep 8\necho accounted\n"
    )
    try:
        stop_daemon("s26-slurmdbd")
        time.sleep(15)  # the job ends meanwhile; its record waits in slurmctld's queue for slurmdbd
    finally:
        bring_back()
    out = seen + (proc.stdout.read() if proc.stdout else "")
    assert proc.wait(timeout=300) == 0, out[-4000:]
    assert "accounting unavailable, waiting" in out
    assert "accounting is back" in out and "ended COMPLETED" in out


@pytest.mark.parametrize("release", ["s22", "s24"])
def test_a_stopped_slurmctld_is_not_taken_for_a_refused_token(release, cluster, users, make_connection, emulator):
    # 22.05 and 24.11 answer a job query at once with HTTP 500 "error -1" while slurmctld is down, as
    # 22.05 does for a refused token; 26.05 holds the request ~20 s first (measured). Ping tells.
    from airflow_provider_maxwell.exceptions import SlurmTransientError
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    user = users[0]
    conn_id = make_connection(
        cluster["stacks"][release]["rest_url"],
        user["name"],
        portal_token := emulator.portal_token(user),
        auth_method="portal",
        portal_url=cluster["portal_url"],
    )
    hook = MaxwellHook(conn_id, retry_limit=2, retry_delay=0.1)
    job_id = hook.submit_job("#!/bin/bash\nsleep 30\n", name="ctld-down", current_working_directory=cluster["jobs_dir"])
    mints = emulator.mints_for(portal_token)
    stop_daemon(f"{release}-slurmctld")
    try:
        with pytest.raises(SlurmTransientError, match="slurmctld is not responding"):
            hook.get_job(job_id)
        assert emulator.mints_for(portal_token) == mints  # the token was not doubted
    finally:
        bring_back()
    assert hook.get_job(job_id).job_id == job_id  # and all is well once it is back
