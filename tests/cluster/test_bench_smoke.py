"""`make bench` in miniature: the waiting benchmark runs end to end on the local 26.05,
12 jobs cancelled in waves and waited on by triggers in one event loop, so the figures in docs/benchmarks.md
come from code that still runs. Figures are checked for what the design promises, not for time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow_provider_maxwell.poll_round import REASON_LOOKS

ROOT = Path(__file__).resolve().parents[2]
N = 12
INTERVAL = 3


def test_the_waiting_benchmark_runs_end_to_end_and_asks_only_what_the_waits_need(cluster: dict[str, Any]) -> None:
    command = [sys.executable, "benchmarks/waiting_at_scale.py", "--sizes", str(N), "--modes", "shared"]
    command += ["--end", "cancel", "--interval", str(INTERVAL), "--budget", "240"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.strip().startswith('{"mode"')]
    result = json.loads(line)
    assert (result["events"], result["statuses"]) == (N, {"failed": N}), result  # every cancel seen, once
    # A job's own slurmctld record is read when its state changes, for the pending reason and the node
    # in its progress line (jobs/state names neither): a few reads per job in all, bounded apart.
    progress_reads = result["by_endpoint"].get("slurm/job/{id}", {"requests": 0})["requests"]
    assert progress_reads <= N * (2 + REASON_LOOKS), result
    assert (result["requests"] - progress_reads) / (result["waited_s"] / INTERVAL) <= 3, result
    # Never the whole queue. Each job that ran has its own accounting record read once at its end: the
    # window of ends is asked without steps (skip_steps answers `steps: []`), and usage needs them.
    endpoints = {"slurm/jobs/state", "slurm/job/{id}", "slurmdb/jobs", "slurmdb/job/{id}"}
    assert set(result["by_endpoint"]) <= endpoints, result
    assert result["by_endpoint"].get("slurmdb/job/{id}", {"requests": 0})["requests"] <= N, result
    assert f"| {N:>5} | shared" in done.stdout  # the table row docs/benchmarks.md quotes
