"""Every night, reduce the previous day's data on Maxwell; on success, update the asset that
downstream analysis is scheduled on. The data interval is rendered into the job script."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator

REDUCED = Asset("maxwell_nightly_reduction")

with DAG(
    dag_id="nightly_reduction",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["maxwell", "example"],
):
    MaxwellSubmitJobOperator(
        task_id="reduce",
        script=(
            "#!/bin/bash\n"
            "set -euo pipefail\n"
            'echo "reducing data from {{ data_interval_start }} to {{ data_interval_end }}"\n'
            "sleep 3\n"
            'echo "reduced {{ ds }}"\n'
        ),
        name="nightly.reduce",
        time_limit=30,
        current_working_directory="{{ var.value.get('maxwell_workdir', '') }}",
        deferrable=True,
        poll_interval=5,
        outlets=[REDUCED],
    )
