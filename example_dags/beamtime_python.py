"""Beamtime processing written in Python: each run's reduction is a Python function that runs as a
Slurm job on Maxwell (``@task.maxwell``, mapped over the runs); the values the jobs return reach a
downstream task as ordinary XComs.

Set the Airflow Variable ``maxwell_workdir`` to a directory on Maxwell's shared filesystem: the jobs
run there and leave their return values there for the workers to read (unset: your home directory).
Only you should be able to write it: the workers check who wrote a return value before loading it,
and a folder others may write lets them delete or block it (SECURITY.md).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

WORKDIR = "{{ var.value.get('maxwell_workdir', '') }}"

with DAG(
    dag_id="beamtime_python",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    params={"beamtime": Param("11019876", type="string"), "runs": Param([1, 2, 3], type="array")},
    tags=["maxwell", "example"],
):

    @task
    def list_runs(params: dict | None = None) -> list[int]:
        return [int(run) for run in (params or {})["runs"]]

    # On Maxwell: python="/software/anaconda3/bin/python3" or setup=["module load anaconda3"].
    @task.maxwell(
        maxwell_conn_id="maxwell_default",
        time_limit=10,
        current_working_directory=WORKDIR,
        deferrable=True,
        poll_interval=5,
        python="python3",
    )
    def reduce_run(run: int) -> dict:
        """Runs on a Maxwell node: only the standard library and what it imports are needed there."""
        import os
        import socket
        import statistics

        frames = [((run * 7919 + i * 104729) % 1000) / 10 for i in range(10_000)]
        return {
            "run": run,
            "mean": round(statistics.fmean(frames), 3),
            "host": socket.gethostname(),
            "job": os.environ["SLURM_JOB_ID"],
        }

    @task
    def summarize(reductions: list[dict]) -> list[float]:
        by_run = {r["run"]: r["mean"] for r in reductions}
        print(f"reduced {len(by_run)} runs on Maxwell: {by_run}")
        return [by_run[run] for run in sorted(by_run)]

    summarize(reduce_run.expand(run=list_runs()))
