"""Faults survived, nothing lost: daemons of the local Maxwell stopped (by PID) while a task waits,
then brought back by `cluster.py up` (which starts only what is missing)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import PROJECT, STATE
from .airflow_cli import start_until_running

CLUSTER = [sys.executable, str(PROJECT / "devcluster" / "cluster.py")]


def stop_daemon(name: str) -> None:
    pid, _, _ = (STATE / "pids" / f"{name}.pid").read_text().partition(" ")
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.2)
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
    elif dag_id == "maxwell_outcome_sync":
        # Polled every 2 s, the worker asks slurmctld during the outage. (Deferred waits read the
        # accounting listing, which slurmctld being down does not touch.)
        assert "slurmctld is not responding" in out, out[-4000:]


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
