"""DAGs the site tests run (devcluster/site.py: Celery workers and triggerers, each a host of its own)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator

WORKDIR = os.environ.get("AIRFLOW_VAR_MAXWELL_WORKDIR", "/tmp")


@task
def indices(**context) -> list[dict[str, str]]:
    return [{"INDEX": str(i)} for i in range(context["params"]["tasks"])]


# Waits deferred onto the triggerers: each mapped task submits one job that sleeps, then hands its wait
# to a triggerer; the job prints its index, so its output tells the tasks apart.
with DAG(
    "maxwell_site_waits",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"tasks": Param(6, type="integer"), "seconds": Param(15, type="integer")},
):
    MaxwellSubmitJobOperator.partial(
        task_id="job",
        maxwell_conn_id="maxwell_default",
        script='#!/bin/bash\nsleep {{ params.seconds }}\necho "task $INDEX on $(hostname)"\n',
        time_limit=5,
        current_working_directory=WORKDIR,
        deferrable=True,
        poll_interval=2,
    ).expand(environment=indices())

# Waits held in the worker (deferrable=False), one retry: a worker killed mid-wait leaves its tasks to
# the scheduler's heartbeat timeout, and their retries, on the other worker, re-attach to the jobs.
with DAG(
    "maxwell_site_worker_waits",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"tasks": Param(20, type="integer"), "seconds": Param(60, type="integer")},
):
    MaxwellSubmitJobOperator.partial(
        task_id="job",
        maxwell_conn_id="maxwell_default",
        script='#!/bin/bash\nsleep {{ params.seconds }}\necho "task $INDEX on $(hostname)"\n',
        time_limit=5,
        current_working_directory=WORKDIR,
        deferrable=False,
        poll_interval=2,
        retries=1,
        retry_delay=timedelta(seconds=2),
    ).expand(environment=indices())
