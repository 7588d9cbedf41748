"""DAGs the tests run with `airflow dags test`: outcomes, crash recovery, sensors, kills."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from airflow_provider_maxwell.sensors.job import MaxwellJobSensor

WORKDIR = os.environ.get("AIRFLOW_VAR_MAXWELL_WORKDIR", "/tmp")
CONN = os.environ.get("MAXWELL_TEST_CONN", "maxwell_default")
START = datetime(2026, 1, 1)


class CrashingSubmitOperator(MaxwellSubmitJobOperator):
    """On its first try, dies right after submitting: before the job id is saved, or after."""

    template_fields = (*MaxwellSubmitJobOperator.template_fields, "crash")

    def __init__(self, *, crash: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crash = crash

    def execute(self, context: Any) -> int:
        first_try = context["ti"].try_number == 1
        if first_try and self.crash == "before_save":
            real_store = context["task_state_store"]

            class DiesOnSave:
                def get(self, key: str) -> Any:
                    return real_store.get(key)

                def set(self, key: str, value: Any, **kw: Any) -> None:
                    raise RuntimeError(f"simulated worker crash after submitting job {value}, before saving it")

            context["task_state_store"] = DiesOnSave()
        return super().execute(context)

    def _spec(self, context: Any, hook: Any, job_id: int, known: Any) -> Any:
        if context["ti"].try_number == 1 and self.crash == "after_save":
            raise RuntimeError(f"simulated worker crash after submitting and saving job {job_id}")
        return super()._spec(context, hook, job_id, known)


with DAG(
    "maxwell_outcome",
    schedule=None,
    start_date=START,
    catchup=False,
    params={
        "script": Param("#!/bin/bash\ntrue\n", type="string"),
        "array": Param(None, type=["null", "string"]),
        "time_limit": Param(5, type="integer"),
        "deferrable": Param(True, type="boolean"),
    },
):
    MaxwellSubmitJobOperator(
        task_id="job",
        maxwell_conn_id=CONN,
        script="{{ params.script }}",
        array="{{ params.array or '' }}",
        time_limit=5,
        current_working_directory=WORKDIR,
        deferrable=True,
        poll_interval=2,
    )

with DAG(
    "maxwell_outcome_sync",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"script": Param("#!/bin/bash\ntrue\n", type="string")},
):
    MaxwellSubmitJobOperator(
        task_id="job",
        maxwell_conn_id=CONN,
        script="{{ params.script }}",
        time_limit=1,
        current_working_directory=WORKDIR,
        deferrable=False,
        poll_interval=2,
    )

for mode in ("before_save", "after_save"):
    with DAG(f"maxwell_crash_{mode}", schedule=None, start_date=START, catchup=False):
        CrashingSubmitOperator(
            task_id="job",
            maxwell_conn_id=CONN,
            crash=mode,
            # Long enough that the retry (2 s later, a few more on a loaded machine) finds it running.
            script="#!/bin/bash\nsleep 30\necho done\n",
            time_limit=5,
            current_working_directory=WORKDIR,
            deferrable=False,
            poll_interval=2,
            retries=1,
            retry_delay=timedelta(seconds=2),
        )

# The sensor on its own: poking, deferred, and poking with soft_fail.
for dag_id, deferrable, soft_fail in (
    ("maxwell_sensor", False, False),
    ("maxwell_sensor_deferred", True, False),
    ("maxwell_sensor_soft_fail", False, True),
):
    with DAG(dag_id, schedule=None, start_date=START, catchup=False, params={"job_id": Param(1, type="integer")}):
        MaxwellJobSensor(
            task_id="wait",
            maxwell_conn_id=CONN,
            job_id="{{ params.job_id }}",
            poke_interval=2,
            deferrable=deferrable,
            timeout=300,
            soft_fail=soft_fail,
        )

with DAG("maxwell_overall_timeout", schedule=None, start_date=START, catchup=False):
    MaxwellSubmitJobOperator(
        task_id="job",
        maxwell_conn_id=CONN,
        script="#!/bin/bash\nsleep 120\n",
        time_limit=5,
        current_working_directory=WORKDIR,
        deferrable=False,
        poll_interval=2,
        timeout=8,
    )

# An array whose tasks 1 and 3 fail on their first run only: the retry must submit just those two.
with DAG("maxwell_array_retry", schedule=None, start_date=START, catchup=False):
    MaxwellSubmitJobOperator(
        task_id="job",
        maxwell_conn_id=CONN,
        script=(
            "#!/bin/bash\n"
            "marker=array-retry-{{ run_id | replace(':', '_') | replace('+', '_') }}-$SLURM_ARRAY_TASK_ID\n"
            'if [ "$SLURM_ARRAY_TASK_ID" = 1 -o "$SLURM_ARRAY_TASK_ID" = 3 ] && [ ! -e "$marker" ]; then\n'
            '  touch "$marker"; echo "task $SLURM_ARRAY_TASK_ID fails this time"; exit 5\n'
            "fi\n"
            'echo "task $SLURM_ARRAY_TASK_ID done"\n'
        ),
        array="0-4",
        time_limit=5,
        current_working_directory=WORKDIR,
        deferrable=True,
        poll_interval=2,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )
