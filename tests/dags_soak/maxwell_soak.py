"""The soak's DAG (tests/cluster/test_soak.py): MAXWELL_SOAK_JOBS deferred waits, each job's outcome
known from its index, so the soak can check that every task ended with its job's true outcome."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator

JOBS = int(os.environ.get("MAXWELL_SOAK_JOBS", "6"))
CONN = os.environ.get("MAXWELL_SOAK_CONN", "maxwell_s26")
HOLD = int(os.environ.get("MAXWELL_SOAK_HOLD", "0"))  # the last job sleeps at least this long


def script(index: int) -> str:
    """Sleeps 5-24 s (the last job at least HOLD s); every fifth job fails with exit code 3."""
    code = 3 if index % 5 == 4 else 0
    seconds = 5 + (index * 7) % 20
    if index == JOBS - 1:
        seconds = max(seconds, HOLD)
    return f"#!/bin/bash\nsleep {seconds}\necho soak job {index}\nexit {code}\n"


with DAG("maxwell_soak", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=64):
    MaxwellSubmitJobOperator.partial(
        task_id="job",
        maxwell_conn_id=CONN,
        time_limit=5,
        current_working_directory=os.environ.get("AIRFLOW_VAR_MAXWELL_WORKDIR", "/tmp"),
        deferrable=True,
        poll_interval=3,
        retries=0,
    ).expand(script=[script(i) for i in range(JOBS)])
