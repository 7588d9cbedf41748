"""A DAG of healthy Maxwell tasks whose logs tests/cluster/test_task_logs.py reads: the operator, the
sensor and @task.maxwell, each waiting in the worker and deferred to the triggerer. The operators' and
@task.maxwell's jobs wait for the first job to end (a Slurm dependency), so that their progress shows
a pending reason before they run; the sensors watch a job of their own."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from airflow_provider_maxwell.sensors.job import MaxwellJobSensor

WORKDIR = os.environ.get("AIRFLOW_VAR_MAXWELL_WORKDIR", "/tmp")
CONN = os.environ.get("MAXWELL_LOG_CONN", "maxwell_default")
FIRST = "{{ ti.xcom_pull(task_ids='first') }}"
WATCHED = "{{ ti.xcom_pull(task_ids='watched') }}"
AFTER_FIRST = {"dependency": f"afterany:{FIRST}"}
ON_MAXWELL = {"maxwell_conn_id": CONN, "time_limit": 2, "current_working_directory": WORKDIR, "poll_interval": 2}

with DAG("maxwell_task_logs", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    first = MaxwellSubmitJobOperator(
        task_id="first", script="#!/bin/bash\nsleep 12\necho first\n", wait_for_completion=False, **ON_MAXWELL
    )
    # The sensors' job: running still when a deferred sensor's trigger first asks about it.
    watched = MaxwellSubmitJobOperator(
        task_id="watched", script="#!/bin/bash\nsleep 25\necho watched\n", wait_for_completion=False, **ON_MAXWELL
    )
    for deferrable in (False, True):
        where = "deferred" if deferrable else "worker"
        job = MaxwellSubmitJobOperator(
            task_id=f"operator_{where}",
            script="#!/bin/bash\nsleep 8\necho reduced\n",
            deferrable=deferrable,
            job_fields=AFTER_FIRST,
            **ON_MAXWELL,
        )
        waiting = MaxwellJobSensor(
            task_id=f"sensor_{where}",
            maxwell_conn_id=CONN,
            job_id=WATCHED,
            poke_interval=2,
            deferrable=deferrable,
            timeout=120,
        )

        @task.maxwell(task_id=f"python_{where}", deferrable=deferrable, job_fields=AFTER_FIRST, **ON_MAXWELL)
        def square(x: int) -> int:
            import time

            time.sleep(8)  # long enough for the trigger to see it run
            return x * x

        first >> [job, square(7)]
        watched >> waiting
