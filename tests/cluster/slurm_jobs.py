"""What Slurm itself holds, asked with its own commands (as root, past the code under test): jobs counted
by name in slurmctld's queue and in accounting, jobs cancelled by name, rate limiting switched per stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
CLUSTER_PY = PROJECT / "devcluster" / "cluster.py"


def slurm_command(stack: dict[str, Any], *args: str) -> list[str]:
    """A Slurm client command run with the stack's binaries (inside its Debian root where it has one)."""
    return ["chroot", stack["root"], *args] if stack.get("root") else list(args)


def run_slurm(stack: dict[str, Any], *args: str) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_CONF": stack["slurm_conf"]}
    done = subprocess.run(slurm_command(stack, *args), env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def queued_job_ids(stack: dict[str, Any], name: str) -> set[int]:
    """Ids of the jobs named `name` that slurmctld holds now (any user, any state it still lists)."""
    out = run_slurm(stack, "squeue", "-h", "-a", "-n", name, "-o", "%A")
    return {int(line) for line in out.split() if line.isdigit()}


def accounted_job_ids(stack: dict[str, Any], name: str) -> set[int]:
    """Ids of the jobs named `name` that accounting holds (submitted within the last day)."""
    out = run_slurm(stack, "sacct", "-a", "-X", "-n", "-P", "--name", name, "-o", "jobidraw", "-S", "now-1days")
    return {int(line) for line in out.split() if line.isdigit()}


def job_ids_named(stack: dict[str, Any], name: str) -> set[int]:
    """Every job Slurm knows by this name: the queue's (accounting may lag) and accounting's (the queue forgets)."""
    return queued_job_ids(stack, name) | accounted_job_ids(stack, name)


def cancel_named(stack: dict[str, Any], name: str) -> None:
    """Cancel every job of this name still queued or running (a test's jobs, however it ended)."""
    if queued_job_ids(stack, name):
        run_slurm(stack, "scancel", "-n", name)


def set_rate_limit(stack_name: str, on: bool) -> None:
    """slurmctld's RPC rate limiting on or off for one stack (devcluster/cluster.py restarts slurmctld)."""
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    command = [sys.executable, str(CLUSTER_PY), "rate-limit", stack_name, "on" if on else "off"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")


def rate_limit_refusals(stack: dict[str, Any], since_offset: int) -> int:
    """How often slurmctld told a client to back off since `since_offset` bytes into its log."""
    log = Path(stack["slurm_conf"]).parents[1] / "log" / "slurmctld.log"
    with log.open("rb") as file:
        file.seek(since_offset)
        text = file.read().decode(errors="replace")
    return text.count("RPC rate limit exceeded")


def slurmctld_log_size(stack: dict[str, Any]) -> int:
    return (Path(stack["slurm_conf"]).parents[1] / "log" / "slurmctld.log").stat().st_size
