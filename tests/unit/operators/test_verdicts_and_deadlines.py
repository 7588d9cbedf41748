"""What the operator does with a job's end and with its own deadline, against a fake slurmrestd: a job
cancelled outside Airflow fails the task for good while a failed one is retried, a job that ended before
the task deferred does not defer, a wait past `timeout` cancels the job (on the worker and deferred),
what the task sends Slurm (its tag beside the DAG's comment, an empty rendered field left out), and the
job id on the task's assets."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_maxwell.compat import AirflowFailException
from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
from tests.fake_slurm import META
from tests.unit.operators.test_durable import SUBMIT

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

JOB_ID = 41
JOB = f"/slurm/v0.0.44/job/{JOB_ID}"
ACCOUNTING = f"/slurmdb/v0.0.44/job/{JOB_ID}"
LISTING = "/slurmdb/v0.0.44/jobs"


class TaskInstance(SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1, pushed={})

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


class OutletEvents:
    """Airflow's outlet event accessors as a task sees them: one event per asset, by its URI (an Asset is
    not hashable on every supported Airflow)."""

    def __init__(self) -> None:
        self.by_uri: dict[str, SimpleNamespace] = defaultdict(lambda: SimpleNamespace(extra={}))

    def __getitem__(self, asset: Any) -> SimpleNamespace:
        return self.by_uri[asset.uri]


def context() -> dict[str, Any]:
    return {"ti": TaskInstance(), "outlet_events": OutletEvents()}


def live(state: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    job = {"job_id": JOB_ID, "name": "d.t", "user_name": "alice", "partition": "p", "job_state": [state]}
    return (200, {}, {**META, "jobs": [{**job, "submit_time": int(time.time())}]})


def final(state: str, code: int = 0) -> tuple[int, dict[str, str], dict[str, Any]]:
    now = int(time.time())
    job = {
        "job_id": JOB_ID,
        "name": "d.t",
        "user": "alice",
        "partition": "p",
        "state": {"current": [state], "reason": "None"},
        "exit_code": {"status": ["SUCCESS" if code == 0 else "FAILED"], "return_code": code},
        "time": {"submission": now, "start": now + 1, "end": now + 5},
    }
    return (200, {}, {**META, "jobs": [job]})


def operator(fake: Any, **kwargs: Any) -> MaxwellSubmitJobOperator:
    kwargs = {"poll_interval": 0.1, "log_output_lines": 0, "live_output_lines": 0, "durable": False, **kwargs}
    return MaxwellSubmitJobOperator(task_id="t", script="#!/bin/bash\ntrue\n", maxwell_conn_id=fake.conn_id, **kwargs)


def submitted(fake: Any) -> dict[str, Any]:
    (job,) = [body["job"] for path, body in fake.bodies if path == SUBMIT]
    return job


@pytest.fixture
def ended(fake: Any) -> Any:
    """Job 41, submitted and already over in `state` with exit code `code` (slurmctld forgot it)."""

    def end(state: str, code: int = 0) -> None:
        fake.script[SUBMIT] = [(200, {}, {**META, "job_id": JOB_ID})]
        fake.script[ACCOUNTING] = [final(state, code)]

    return end


def test_a_job_cancelled_outside_airflow_fails_the_task_for_good(fake, ended):
    ended("CANCELLED")
    with pytest.raises(AirflowFailException, match=r"ended CANCELLED .*\(cancelled outside Airflow: not retried\)"):
        operator(fake).execute(context())


def test_a_failed_job_fails_the_try_and_leaves_the_retry_to_airflow(fake, ended):
    ended("FAILED", 3)
    with pytest.raises(AirflowException, match="ended FAILED with exit code 3") as failed:
        operator(fake).execute(context())
    assert not isinstance(failed.value, AirflowFailException)


def test_a_job_that_ended_before_the_task_could_defer_does_not_defer(fake, ended):
    ended("COMPLETED")
    ti_context = context()
    assert operator(fake, deferrable=True).execute(ti_context) == JOB_ID  # no TaskDeferred
    assert ti_context["ti"].pushed["slurm_job"]["state"] == "COMPLETED"


def test_the_job_id_is_on_the_tasks_assets(fake, ended):
    from airflow.sdk import Asset

    ended("COMPLETED")
    data = Asset("file:///beamtime/run-42.h5")
    ti_context = context()
    assert operator(fake, outlets=[data]).execute(ti_context) == JOB_ID
    assert ti_context["outlet_events"][data].extra == {"slurm_job_id": JOB_ID}


def test_the_tasks_tag_goes_before_the_dags_comment_and_empty_fields_stay_unset(fake, ended):
    ended("COMPLETED")
    operator(fake, partition="", job_fields={"comment": "beamtime 42"}).execute(context())
    job = submitted(fake)
    assert job["comment"].startswith("airflow:d/t/r/-1 beamtime 42")  # a retry finds its job by the tag
    assert "partition" not in job  # rendered empty: Slurm's default partition, not ""


def test_a_wait_past_the_timeout_cancels_the_job_on_the_worker(fake):
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": JOB_ID})]
    fake.script[JOB] = [live("RUNNING")]
    with pytest.raises(AirflowException, match=r"still RUNNING at the deadline; cancelled it \(timeout=0.3 s\)"):
        operator(fake, timeout=0.3).execute(context())
    assert fake.count("DELETE", JOB) == 1


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "triggerer"])
def test_a_refused_cancel_at_the_timeout_is_said_not_claimed(fake, deferrable: bool):
    # The job may still be running: the task's failure must not say it was cancelled.
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": JOB_ID})]
    fake.script[JOB] = [live("RUNNING")]
    fake.script[f"DELETE {JOB}"] = [(403, {}, {**META, "errors": [{"error_number": 1, "error": "Access denied"}]})]
    fake.script[LISTING] = [(200, {}, {**META, "jobs": []})]
    with pytest.raises(AirflowException, match="could not cancel it") as failed:
        if not deferrable:
            operator(fake, timeout=0.3).execute(context())
        with pytest.raises(TaskDeferred) as deferred:
            operator(fake, deferrable=True, timeout=0.3).execute(context())
        trigger = MaxwellJobTrigger(**json.loads(json.dumps(deferred.value.trigger.serialize()[1])))

        async def wait() -> dict[str, Any]:
            return (await asyncio.wait_for(anext(aiter(trigger.run())), 30)).payload

        operator(fake, deferrable=True, timeout=0.3).execute_complete(context(), asyncio.run(wait()))
    assert "cancelled it" not in str(failed.value) and fake.count("DELETE", JOB) >= 1


def test_a_deferred_wait_past_the_timeout_cancels_the_job_in_the_triggerer(fake):
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": JOB_ID})]
    fake.script[JOB] = [live("RUNNING")]
    fake.script[LISTING] = [(200, {}, {**META, "jobs": []})]
    with pytest.raises(TaskDeferred) as deferred:
        operator(fake, deferrable=True, timeout=0.5).execute(context())
    # Airflow ends the task even if no triggerer runs the trigger, later than the trigger's own deadline.
    assert deferred.value.timeout is not None and deferred.value.timeout.total_seconds() > 0.5
    trigger = MaxwellJobTrigger(**json.loads(json.dumps(deferred.value.trigger.serialize()[1])))

    async def wait() -> dict[str, Any]:
        return (await asyncio.wait_for(anext(aiter(trigger.run())), 30)).payload

    event = asyncio.run(wait())
    with pytest.raises(AirflowException, match=r"Waiting for Slurm job 41 failed: .*at the deadline; cancelled it"):
        operator(fake, deferrable=True, timeout=0.5).execute_complete(context(), event)
    assert fake.count("DELETE", JOB) == 1
