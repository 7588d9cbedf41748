"""Beamtime processing written in Python: each run's reduction is a Python function that runs as a
Slurm job on Maxwell (``@task.maxwell``, mapped over the runs); the values the jobs return reach a
downstream task as ordinary XComs.

The reduction is the one `beamtime_processing` does in a shell script, so its answer can be checked
by hand: run N has N x `frames_per_run` simulated frames, frame k counted k photons, so n frames hold
n(n+1)/2 photons, a mean of (n+1)/2 per frame. With the defaults the summary prints, for runs 1, 2
and 3: 1000, 2000 and 3000 frames, 500500, 2001000 and 4501500 photons, means 500.5, 1000.5 and
1500.5, and the Slurm job and node that reduced each run.

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
    params={
        "beamtime": Param("11019876", type="string"),
        "runs": Param([1, 2, 3], type="array"),
        "frames_per_run": Param(1000, type="integer", minimum=1, description="frames per run number"),
    },
    tags=["maxwell", "example"],
):

    @task
    def list_runs(params: dict | None = None) -> list[dict[str, int]]:
        params = params or {}
        return [{"run": int(run), "frames": int(run) * params["frames_per_run"]} for run in params["runs"]]

    # On Maxwell: python="/software/anaconda3/bin/python3" or setup=["module load anaconda3"].
    @task.maxwell(
        maxwell_conn_id="maxwell_default",
        time_limit=10,
        current_working_directory=WORKDIR,
        deferrable=True,
        poll_interval=5,
        python="python3",
    )
    def reduce_run(run: int, frames: int) -> dict:
        """Runs on a Maxwell node: only the standard library and what it imports are needed there."""
        import os
        import statistics

        photons = range(1, frames + 1)  # the simulated run: frame k counted k photons
        return {
            "run": run,
            "frames": frames,
            "photons": sum(photons),
            "mean": statistics.fmean(photons),
            "node": os.environ["SLURMD_NODENAME"],
            "job": os.environ["SLURM_JOB_ID"],
        }

    @task
    def summarize(reductions: list[dict]) -> list[int]:
        """The photons of each run, in run order."""
        # reductions[:] reads every mapped value in one request; iterating asks one at a time, and
        # Airflow logs an error for the read one past the last.
        in_order = sorted(reductions[:], key=lambda r: r["run"])
        for r in in_order:
            print(
                f"run {r['run']}: {r['frames']} frames, {r['photons']} photons, mean {r['mean']} per frame "
                f"(Slurm job {r['job']} on {r['node']})"
            )
        return [r["photons"] for r in in_order]

    summarize(reduce_run.expand_kwargs(list_runs()))
