"""Every night at 02:00 (Hamburg time), reduce the 24 hours before on Maxwell; on success, update the
asset that `gated_analysis` is scheduled on. The run's data interval is rendered into the job script,
and the job's log says which interval it reduced and how many hours that is.

- A scheduled run reduces the day up to its 02:00: the run of 2 March reduces 1 March 02:00 to
  2 March 02:00.
- A run triggered by hand reduces the 24 hours up to its logical date (the trigger form's "Logical
  date", now unless changed; with none, the time it was triggered): give it a night's 02:00 to
  reduce that night again.
- Unpausing (also the trigger form's "Unpause on trigger") starts no run of its own: the first
  scheduled run is the next 02:00. There is no start_date to catch up from, and
  `run_immediately=False` keeps the 02:00 that has already passed from being run late.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator

REDUCED = Asset("maxwell_nightly_reduction")

with DAG(
    dag_id="nightly_reduction",
    schedule=CronTriggerTimetable(
        "0 2 * * *", timezone="Europe/Berlin", interval=timedelta(days=1), run_immediately=False
    ),
    catchup=False,
    doc_md=__doc__,
    tags=["maxwell", "example"],
):
    MaxwellSubmitJobOperator(
        task_id="reduce",
        script=(
            "#!/bin/bash\n"
            "set -euo pipefail\n"
            # A run triggered with no logical date (the REST API allows it) has no data interval: its day
            # is the 24 hours before it was triggered.
            "{% set end = data_interval_end or dag_run.run_after %}"
            "{% set start = data_interval_start or end - macros.timedelta(days=1) %}"
            'echo "run {{ run_id }}: reducing the data from {{ start }} to {{ end }}"\n'
            "seconds=$(( {{ end.timestamp() | int }} - {{ start.timestamp() | int }} ))\n"
            'echo "reduced $((seconds / 3600)) hours of data, up to {{ end }}"\n'
        ),
        name="nightly.reduce",
        time_limit=30,
        current_working_directory="{{ var.value.get('maxwell_workdir', '') }}",
        deferrable=True,
        poll_interval=5,
        outlets=[REDUCED],
    )
