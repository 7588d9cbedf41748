"""DAGs the site tests run (devcluster/site.py: Celery workers and triggerers, each a host of its own)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator

WORKDIR = os.environ.get("AIRFLOW_VAR_MAXWELL_WORKDIR", "/tmp")


class PausingSubmitOperator(MaxwellSubmitJobOperator):
    """On its first try, stops for a while right after submitting, before the job id is saved: the
    moment in which a test kills the worker's host."""

    def execute(self, context: Any) -> Any:
        if context["ti"].try_number == 1:
            real_store = context["task_state_store"]

            class PausesOnSave:
                def get(self, key: str) -> Any:
                    return real_store.get(key)

                def set(self, key: str, value: Any, **kw: Any) -> None:
                    self.log_pause(value)
                    time.sleep(300)
                    real_store.set(key, value, **kw)

                def log_pause(self, value: Any) -> None:
                    print(f"paused after submitting job {value}, before saving it", flush=True)

            context["task_state_store"] = PausesOnSave()
        return super().execute(context)


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

# Killed between submit and the saving of the job id: the retry must find the job by its tag.
with DAG("maxwell_site_kill_before_save", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    PausingSubmitOperator(
        task_id="job",
        maxwell_conn_id="maxwell_default",
        script="#!/bin/bash\nsleep 30\necho done\n",
        time_limit=5,
        current_working_directory=WORKDIR,
        deferrable=True,
        poll_interval=2,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )
