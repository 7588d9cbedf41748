"""A job id handed out again after a Slurm state reset, where accounting lags behind slurmctld: the
sensor's poke must not judge the older job still shown as the newest record under the id. (The real
daemons, reset by `cluster.py reset-jobs`, are in tests/cluster/test_job_id_reuse.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_maxwell.sensors.job import MaxwellJobSensor
from tests.fake_slurm import META

T = 1_790_000_000  # our job's submit time; the old one under the same id was submitted 20 s before


def controller_doc(state: str, exit_code: int) -> dict[str, Any]:
    return {
        "job_id": 7,
        "name": "reduce",
        "user_name": "alice",
        "partition": "p",
        "job_state": [state],
        "submit_time": {"set": True, "number": T},
        "exit_code": {"status": ["FAILED"], "return_code": {"set": True, "number": exit_code}},
    }


def accounting_doc(state: str, exit_code: int, submitted: int, name: str) -> dict[str, Any]:
    return {
        "job_id": 7,
        "name": name,
        "user": "alice",
        "partition": "p",
        "state": {"current": [state], "reason": "None"},
        "exit_code": {"status": ["SUCCESS" if exit_code == 0 else "FAILED"], "return_code": exit_code},
        "time": {"submission": submitted, "start": submitted + 1, "end": submitted + 5},
    }


def test_the_sensor_waits_while_accounting_shows_only_the_older_job_under_the_id(fake):
    from airflow_provider_maxwell.compat import AirflowFailException

    old = accounting_doc("COMPLETED", 0, T - 20, "before-the-reset")
    ours = accounting_doc("FAILED", 2, T, "reduce")
    fake.script["/slurm/v0.0.44/job/7"] = [(200, {}, {**META, "jobs": [controller_doc("FAILED", 2)]})]
    fake.script["/slurmdb/v0.0.44/job/7"] = [
        (200, {}, {**META, "jobs": [old]}),  # ours not recorded yet
        (200, {}, {**META, "jobs": [old, ours]}),
    ]
    sensor = MaxwellJobSensor(task_id="wait", job_id=7, maxwell_conn_id=fake.conn_id)
    assert sensor.poke({}) is False  # not the old job's COMPLETED
    with pytest.raises(AirflowFailException, match=r"Slurm job 7 \(reduce\) ended FAILED with exit code 2"):
        sensor.poke({})


def test_reattach_search_keeps_every_job_under_a_reused_id(fake):
    # After a reset accounting lists an earlier run's job and ours under one id, oldest first, with
    # the same name: the search for a crashed try's job must not keep only the first.
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    earlier = {**accounting_doc("COMPLETED", 0, T - 3600, "nightly.reduce"), "comment": "ti:earlier-run"}
    ours = {**accounting_doc("RUNNING", 0, T, "nightly.reduce"), "comment": "ti:this-run"}
    fake.script["/slurm/v0.0.44/jobs"] = [(200, {}, {**META, "jobs": []})]  # slurmctld: not listed (yet)
    fake.script["/slurmdb/v0.0.44/jobs"] = [(200, {}, {**META, "jobs": [earlier, ours]})]
    found = MaxwellHook(fake.conn_id).find_jobs_by_name("nightly.reduce")
    assert [(j.job_id, j.comment) for j in found] == [(7, "ti:earlier-run"), (7, "ti:this-run")]
