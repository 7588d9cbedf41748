"""Analysis that runs only when the nightly reduction job COMPLETED: scheduled on the reduction's
asset, and gated by a sensor on the reduction's Slurm job (the id travels in the asset event;
pass ``{"job_id": N}`` as run conf to gate on any other job).

The analysis is a Slurm job too: it reads the reduction job's output file (its path comes from the
sensor's job summary) and prints its last line, e.g. "reduced 24 hours of data, up to ...", which
the task log shows. If the file is gone or not readable from the analysis job, it says so.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, Param

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from airflow_provider_maxwell.sensors.job import MaxwellJobSensor

with DAG(
    dag_id="gated_analysis",
    schedule=[Asset("maxwell_nightly_reduction")],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    params={"job_id": Param(None, type=["null", "integer"], description="Slurm job to gate on")},
    tags=["maxwell", "example"],
):
    reduction_done = MaxwellJobSensor(
        task_id="reduction_completed",
        # The job that produced the asset event, unless a job id was given as run conf.
        job_id=(
            "{% set events = triggering_asset_events.values() | list %}"
            "{{ params.job_id or (events[0][-1].extra.get('slurm_job_id', '') if events else '') }}"
        ),
        deferrable=True,
        poke_interval=5,
        timeout=3600,
    )
    analysis = MaxwellSubmitJobOperator(
        task_id="analysis",
        script=(
            "#!/bin/bash\n"
            "{% set reduction = ti.xcom_pull(task_ids='reduction_completed', key='slurm_job') %}"
            'output="{{ reduction.output or "" }}"\n'
            'echo "analysing the output of job {{ reduction.job_id }}: ${output:-(no output file)}"\n'
            'if [ -r "$output" ]; then echo "its last line: $(tail -n 1 "$output")"\n'
            'else echo "its output file is gone or not readable from here"; fi\n'
        ),
        time_limit=30,
        current_working_directory="{{ var.value.get('maxwell_workdir', '') }}",
        deferrable=True,
        poll_interval=5,
    )
    reduction_done >> analysis
