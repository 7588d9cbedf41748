"""Analysis of every beamtime job that ends COMPLETED, wherever it was submitted: by Airflow, with
``sbatch`` at a display node, or by the beamline's own scripts. An asset watches Maxwell's accounting
for ended jobs named ``beamtime.*``; each one becomes an asset event carrying the job's summary (its
id, name, user, state, exit code, nodes, start, end, elapsed time and output file), and the DAG runs
on those events: it reads them from ``triggering_asset_events`` and submits one analysis job for each.

Airflow may gather several events in one run (jobs ending close together): the DAG handles a list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from airflow_provider_maxwell.triggers.events import MaxwellJobEventTrigger

beamtime_jobs_ended = Asset(
    "maxwell_beamtime_jobs_ended",
    watchers=[
        AssetWatcher(
            name="beamtime_jobs_completed",
            trigger=MaxwellJobEventTrigger(
                maxwell_conn_id="maxwell_default",
                name="beamtime.*",  # a glob on the job name
                states=["COMPLETED"],  # leave out for every end state
                poll_interval=30,  # one accounting request per interval for all watchers of the connection
            ),
        )
    ],
)

with DAG(
    dag_id="beamtime_job_ended",
    schedule=[beamtime_jobs_ended],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["maxwell", "example"],
):

    @task
    def ended_jobs(triggering_asset_events: Any = None) -> list[str]:
        """One analysis script per job whose end started this run, with the job's id and output file."""
        jobs = [event.extra["payload"] for events in triggering_asset_events.values() for event in events]
        scripts = []
        for job in jobs:
            print(f"Slurm job {job['job_id']} ({job['name']}) ended {job['state']} after {job['elapsed']}")
            scripts.append(
                "#!/bin/bash\n"
                f'echo "analysing job {job["job_id"]} of {job["user"]}: {job["output"] or "no output file"}"\n'
            )
        return scripts

    MaxwellSubmitJobOperator.partial(
        task_id="analysis",
        name="beamtime-analysis",  # not beamtime.*: the analysis does not start the watcher again
        time_limit=30,
        current_working_directory="{{ var.value.get('maxwell_workdir', '') }}",
        deferrable=True,
        poll_interval=5,
    ).expand(script=ended_jobs())
