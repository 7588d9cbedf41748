"""One task per bad input a user can give (tests/cluster/test_bad_input.py runs it): each must fail
with an error naming the field and the fix, and submit nothing. Job names are 'bad-input-<task>'."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from airflow_provider_maxwell.sensors.job import MaxwellJobSensor

CONN = os.environ.get("MAXWELL_TEST_CONN", "maxwell_default")
WORKDIR = os.environ.get("AIRFLOW_VAR_MAXWELL_WORKDIR", "/tmp")
OK_SCRIPT = "#!/bin/bash\ntrue\n"

# task id -> (connection, operator arguments)
SUBMITS: dict[str, tuple[str, dict]] = {
    "unknown_partition": (CONN, {"partition": "no-such-partition"}),
    "negative_time_limit": (CONN, {"time_limit": -5}),
    "absurd_time_limit": (CONN, {"time_limit": 10**9}),
    "non_string_environment": (CONN, {"environment": {"RUN": 42}}),
    "empty_script": (CONN, {"script": "   \n"}),
    "missing_script_file": (CONN, {"script": "no_such_script.sh"}),
    "unknown_auth_method": ("maxwell_bad_auth_method", {}),
    "lifespan_above_86400": ("maxwell_bad_lifespan", {}),
    "missing_password": ("maxwell_bad_no_password", {}),
    "malformed_host": ("maxwell_bad_host", {}),
}

with DAG("maxwell_bad_input", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    for task_id, (conn_id, arguments) in SUBMITS.items():
        MaxwellSubmitJobOperator(
            task_id=task_id,
            maxwell_conn_id=conn_id,
            name=f"bad-input-{task_id}",
            current_working_directory=WORKDIR,
            deferrable=False,
            poll_interval=2,
            **{"script": OK_SCRIPT, **arguments},
        )
    MaxwellJobSensor(task_id="job_id_not_a_number", maxwell_conn_id=CONN, job_id="12ab", poke_interval=2, timeout=60)
    MaxwellJobSensor(
        task_id="job_of_another_user",
        maxwell_conn_id=CONN,
        job_id=os.environ.get("MAXWELL_OTHER_USERS_JOB", "1"),
        poke_interval=2,
        timeout=60,
    )
