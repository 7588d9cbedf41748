"""The sensor's `success_states`, kept the same whether it waits on the worker (pokes) or deferred in the
triggerer: a job ending in a listed state other than COMPLETED succeeds, one ending in a state not
listed fails with the job's verdict, and either way the summary lands in XCom. A deferred sensor past
its timeout fails without cancelling the job it only watches."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_maxwell.compat import AirflowFailException
from airflow_provider_maxwell.outcome import SUMMARY_XCOM_KEY
from airflow_provider_maxwell.sensors.job import MaxwellJobSensor
from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
from tests.unit.sensors.test_sensor import ACCOUNTING, JOB, answer, live, record

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

LISTING = "/slurmdb/v0.0.44/jobs"  # what the triggerer's shared poller reads accounting from
SUCCESS_STATES = {"COMPLETED", "TIMEOUT"}


class TaskInstance(SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(dag_id="d", task_id="wait", run_id="r", map_index=-1, try_number=1, pushed={})

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def sensor(fake: Any, deferrable: bool) -> MaxwellJobSensor:
    return MaxwellJobSensor(
        task_id="wait",
        job_id="7",
        maxwell_conn_id=fake.conn_id,
        success_states=SUCCESS_STATES,
        deferrable=deferrable,
        poke_interval=0.1,
    )


def on_the_worker(fake: Any, ti: TaskInstance, state: str, code: int) -> Any:
    fake.script[JOB] = [answer(live("RUNNING")), answer(live(state))]
    fake.script[ACCOUNTING] = [answer(record(state, code=code))]
    waiting = sensor(fake, deferrable=False)
    assert waiting.poke({"ti": ti}) is False
    return waiting.poke({"ti": ti})


def in_the_triggerer(fake: Any, ti: TaskInstance, state: str, code: int) -> Any:
    fake.script[JOB] = [answer(live("RUNNING"))]
    with pytest.raises(TaskDeferred) as deferred:
        sensor(fake, deferrable=True).execute({"ti": ti})
    classpath, kwargs = deferred.value.trigger.serialize()
    module, _, name = classpath.rpartition(".")  # the triggerer imports the class by this path
    trigger = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    fake.script[LISTING] = [answer(record(state, code=code))]
    fake.script[ACCOUNTING] = [answer(record(state, code=code))]

    async def wait() -> dict[str, Any]:
        return (await asyncio.wait_for(anext(aiter(trigger.run())), 30)).payload

    event = asyncio.run(wait())
    resumed = sensor(fake, deferrable=True)  # a new instance, at the method the deferral named, as Airflow resumes
    return getattr(resumed, deferred.value.method_name)({"ti": ti}, event)


@pytest.fixture(params=["worker", "triggerer"])
def wait(request: pytest.FixtureRequest, fake: Any) -> Callable[[TaskInstance, str, int], Any]:
    """Wait on job 7 to its end in `state` with exit code `code`, as the sensor does in `request.param`."""
    how = on_the_worker if request.param == "worker" else in_the_triggerer
    return lambda ti, state, code: how(fake, ti, state, code)


def test_a_job_ending_in_a_listed_state_other_than_completed_succeeds(wait):
    ti = TaskInstance()
    assert wait(ti, "TIMEOUT", 0) in (True, 7)  # poke says done; execute_complete returns the job id
    assert ti.pushed[SUMMARY_XCOM_KEY]["state"] == "TIMEOUT"
    assert ti.pushed[SUMMARY_XCOM_KEY]["job_id"] == 7


def test_a_job_ending_in_a_state_not_listed_fails_with_its_verdict(wait):
    ti = TaskInstance()
    with pytest.raises(AirflowFailException, match=r"Slurm job 7 \(reduce\) ended FAILED with exit code 3"):
        wait(ti, "FAILED", 3)
    assert ti.pushed[SUMMARY_XCOM_KEY]["state"] == "FAILED"
    assert ti.pushed[SUMMARY_XCOM_KEY]["exit_code"] == 3


def test_a_deferred_sensor_past_its_timeout_fails_but_never_cancels_the_job_it_watches(fake):
    # The job is another task's (or a person's): the sensor only watches it.
    fake.script[JOB] = [answer(live("RUNNING"))]
    fake.script[LISTING] = [answer()]
    waiting = sensor(fake, deferrable=True)
    waiting.timeout = 0.5
    with pytest.raises(TaskDeferred) as deferred:
        waiting.execute({})
    # Airflow ends the task even if no triggerer runs the trigger, later than the trigger's own deadline.
    assert deferred.value.timeout is not None and deferred.value.timeout.total_seconds() > 0.5
    trigger = MaxwellJobTrigger(**json.loads(json.dumps(deferred.value.trigger.serialize()[1])))

    async def wait() -> dict[str, Any]:
        return (await asyncio.wait_for(anext(aiter(trigger.run())), 30)).payload

    event = asyncio.run(wait())
    with pytest.raises(AirflowException, match=r"Waiting for Slurm job 7 failed: .*still RUNNING at the deadline$"):
        sensor(fake, deferrable=True).execute_complete({}, event)
    assert fake.count("DELETE", JOB) == 0
