"""An array job across tries of its task, against a fake slurmrestd, waiting on the worker and deferred:
the tasks that failed are named in the task's failure and its XCom summary, the next try submits only
those indices, and the summary's `array_results` keeps each index from the try that decided it."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_maxwell.array_retry import FAILED_INDICES_KEY
from airflow_provider_maxwell.compat import AirflowFailException
from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from airflow_provider_maxwell.outcome import SUMMARY_XCOM_KEY
from tests.fake_slurm import META
from tests.unit.operators.test_durable import SUBMIT, Store

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

LISTING = "/slurmdb/v0.0.44/jobs"  # what the triggerer's shared poller reads accounting from
FIRST, SECOND = 50, 60  # the array job of try 1 and of try 2


class TaskInstance(SimpleNamespace):
    def __init__(self, try_number: int) -> None:
        super().__init__(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=try_number, pushed={})

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def task_id(array_id: int, index: int, last: int) -> int:
    """A task's own job id, as Slurm gives them: the last task keeps the array's id."""
    return array_id if index == last else array_id + 1 + index


def task_record(array_id: int, index: int, last: int, state: str, code: int = 0) -> dict[str, Any]:
    """Accounting's record of one task of an array (its own job id, the array's id beside it)."""
    now = int(time.time())
    return {
        "job_id": task_id(array_id, index, last),
        "array": {"job_id": array_id, "task_id": index},
        "name": "d.t",
        "user": "alice",
        "partition": "p",
        "state": {"current": [state], "reason": "None"},
        "exit_code": {"status": ["SUCCESS" if code == 0 else "FAILED"], "return_code": code},
        "time": {"submission": now, "start": now + 1, "end": now + 5},
    }


def running_task(array_id: int, index: int, last: int) -> dict[str, Any]:
    """slurmctld's record of one running task of an array."""
    return {
        "job_id": task_id(array_id, index, last),
        "array_job_id": array_id,
        "array_task_id": index,
        "name": "d.t",
        "user_name": "alice",
        "partition": "p",
        "job_state": ["RUNNING"],
        "submit_time": int(time.time()),
    }


def answer(*docs: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    return (200, {}, {**META, "jobs": list(docs)})


def operator(fake: Any, array: str, deferrable: bool) -> MaxwellSubmitJobOperator:
    return MaxwellSubmitJobOperator(
        task_id="t",
        script="#!/bin/bash\ntrue\n",
        maxwell_conn_id=fake.conn_id,
        array=array,
        deferrable=deferrable,
        poll_interval=0.1,
        log_output_lines=0,
        timeout=10,  # a try waiting on tasks that never end fails here, not hangs
    )


Try = Callable[[Store, int, str, int, dict[int, tuple[str, int]]], tuple[TaskInstance, Any]]


@pytest.fixture(params=["worker", "triggerer"])
def run_try(request: pytest.FixtureRequest, fake: Any) -> Try:
    """One try of an array task (`array` as the DAG gives it), whose submission Slurm answers with job
    `job_id` and whose tasks end as `ends` says ({index: (state, exit code)}), waiting on the worker or
    deferred; returns the task instance and what the try returned (or the exception it raised)."""

    def run(store: Store, try_number: int, array: str, job_id: int, ends: dict[int, tuple[str, int]]) -> Any:
        ti = TaskInstance(try_number)
        context = {"ti": ti, "task_state_store": store}
        fake.script[SUBMIT] = [(200, {}, {**META, "job_id": job_id})]
        last = max(ends)
        records = answer(*(task_record(job_id, i, last, state, code) for i, (state, code) in sorted(ends.items())))
        fake.script[f"/slurmdb/v0.0.44/job/{job_id}"] = [records]
        fake.script[LISTING] = [records]
        for earlier in (FIRST, SECOND):  # slurmctld has forgotten the arrays of earlier tries
            fake.script.pop(f"/slurm/v0.0.44/job/{earlier}", None)
        try:
            if request.param == "worker":
                return ti, operator(fake, array, deferrable=False).execute(context)
            fake.script[f"/slurm/v0.0.44/job/{job_id}"] = [answer(*(running_task(job_id, i, last) for i in ends))]
            with pytest.raises(TaskDeferred) as deferred:
                operator(fake, array, deferrable=True).execute(context)
            classpath, kwargs = deferred.value.trigger.serialize()
            module, _, name = classpath.rpartition(".")  # the triggerer imports the class by this path
            trigger = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))

            async def wait() -> dict[str, Any]:
                return (await asyncio.wait_for(anext(aiter(trigger.run())), 30)).payload

            event = asyncio.run(wait())
            resumed = operator(fake, array, deferrable=True)  # a new instance, at the method the deferral named
            return ti, getattr(resumed, deferred.value.method_name)(context, event)
        except (AirflowException, AirflowFailException) as error:
            return ti, error

    return run


def submitted_arrays(fake: Any) -> list[str | None]:
    return [body["job"].get("array") for path, body in fake.bodies if path == SUBMIT]


def test_a_try_with_failed_tasks_stores_exactly_those_and_the_next_try_reruns_only_them(fake, run_try, capsys):
    store = Store()
    failed = {0: ("COMPLETED", 0), 1: ("FAILED", 2), 2: ("COMPLETED", 0), 3: ("FAILED", 2)}
    ti, error = run_try(store, 1, "0-3%2", FIRST, failed)
    assert isinstance(error, AirflowException) and not isinstance(error, AirflowFailException)  # retried
    assert "2 of 4 tasks did not complete [1: FAILED (exit code 2), 3: FAILED (exit code 2)]" in str(error)
    assert store.saved[FAILED_INDICES_KEY] == [1, 3]
    assert [t["index"] for t in ti.pushed[SUMMARY_XCOM_KEY]["failed_tasks"]] == [1, 3]

    capsys.readouterr()
    ti, returned = run_try(store, 2, "0-3%2", SECOND, {1: ("COMPLETED", 0), 3: ("COMPLETED", 0)})
    assert returned == SECOND
    assert submitted_arrays(fake) == ["0-3%2", "1,3%2"]  # the throttle kept
    logged = capsys.readouterr().out
    assert logged.count("Rerunning only the array tasks that failed in the last try: 1,3%2 (of 0-3%2)") == 1
    assert store.saved[FAILED_INDICES_KEY] == []
    summary = ti.pushed[SUMMARY_XCOM_KEY]
    assert summary["state"] == "COMPLETED" and summary["array_tasks"] == 2
    assert summary["array_results"] == {
        "0": {"state": "COMPLETED", "exit_code": 0, "try": 1, "job_id": FIRST},
        "1": {"state": "COMPLETED", "exit_code": 0, "try": 2, "job_id": SECOND},
        "2": {"state": "COMPLETED", "exit_code": 0, "try": 1, "job_id": FIRST},
        "3": {"state": "COMPLETED", "exit_code": 0, "try": 2, "job_id": SECOND},
    }


def test_an_array_whose_first_task_failed_names_it_and_reruns_it(fake, run_try):
    store = Store()
    ti, error = run_try(store, 1, "0-2", FIRST, {0: ("FAILED", 3), 1: ("COMPLETED", 0), 2: ("COMPLETED", 0)})
    assert isinstance(error, AirflowException)
    assert f"Slurm array job {FIRST} (d.t): 1 of 3 tasks did not complete [0: FAILED (exit code 3)]" in str(error)
    summary = ti.pushed[SUMMARY_XCOM_KEY]
    assert summary["state"] == "FAILED"
    assert summary["failed_tasks"] == [{"index": 0, "state": "FAILED", "exit_code": 3}]
    assert summary["array_results"]["0"] == {"state": "FAILED", "exit_code": 3, "try": 1, "job_id": FIRST}
    assert store.saved[FAILED_INDICES_KEY] == [0]

    ti, returned = run_try(store, 2, "0-2", SECOND, {0: ("COMPLETED", 0)})
    assert returned == SECOND and submitted_arrays(fake) == ["0-2", "0"]
    assert ti.pushed[SUMMARY_XCOM_KEY]["array_results"]["0"]["try"] == 2
