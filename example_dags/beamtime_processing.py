"""Process every run of a beamtime on Maxwell: one Slurm job per run (dynamic task mapping), waited
on in the triggerer, then a summary that reads each job's output.

Each job sums the photons of its run's frames (scripts/process_run.sh). The frames are simulated so
that the answer can be checked by hand: run N has N x `frames_per_run` frames, frame k counted k
photons, so n frames hold n(n+1)/2 photons. With the defaults (runs 1, 2 and 3; 1000 frames per run
number, so 1000, 2000 and 3000 frames) the summary prints 500500, 2001000 and 4501500 photons.

Set the Airflow Variable ``maxwell_workdir`` to a directory on Maxwell's shared filesystem (e.g. your
GPFS/BeeGFS space; unset: your home directory): jobs run there and the summary reads their output.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param, task

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator

WORKDIR = "{{ var.value.get('maxwell_workdir', '') }}"

with DAG(
    dag_id="beamtime_processing",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    template_searchpath=[str(Path(__file__).parent / "scripts")],
    params={
        "beamtime": Param("11019876", type="string", description="beamtime id"),
        "runs": Param([1, 2, 3], type="array", description="run numbers to process"),
        "frames_per_run": Param(1000, type="integer", minimum=1, description="frames per run number"),
    },
    tags=["maxwell", "example"],
):

    @task
    def list_runs(params: dict | None = None) -> list[dict[str, str]]:
        return [{"RUN": str(run)} for run in (params or {})["runs"]]

    process = MaxwellSubmitJobOperator.partial(
        task_id="process_run",
        script="process_run.sh",
        partition="maxcpu",
        time_limit=10,
        current_working_directory=WORKDIR,
        deferrable=True,
        poll_interval=5,
    ).expand(environment=list_runs())

    @task
    def summarize(ti=None) -> dict[str, object]:
        jobs = ti.xcom_pull(task_ids="process_run", key="slurm_job") or []
        if isinstance(jobs, dict):  # a beamtime of one run: Airflow returns that run's summary itself
            jobs = [jobs]
        for job in jobs:
            result = "(no output)"
            if job.get("output"):
                try:  # the job's last line: "run N: <frames> frames, <photons> photons"
                    result = Path(job["output"]).read_text().strip().splitlines()[-1]
                except OSError:
                    result = "(output not readable from this worker)"
            print(f"job {job['job_id']}: {job['state']} in {job['elapsed']} on {job['nodes']}: {result}")
        return {"jobs": len(jobs), "completed": sum(1 for j in jobs if j["state"] == "COMPLETED")}

    process >> summarize()
