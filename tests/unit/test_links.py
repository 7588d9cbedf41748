"""The "Slurm job" extra link: the URL from the connection's template is in XCom before the task
waits or defers, there is none without a template, and Airflow sees the link on both task types."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_maxwell.links import JOB_LINK_XCOM_KEY, SlurmJobLink
from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from airflow_provider_maxwell.provider_info import get_provider_info
from airflow_provider_maxwell.sensors.job import MaxwellJobSensor
from tests.fake_slurm import META

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

TEMPLATE = "https://slurm-web.example/job/{job_id}?user={user}"
SUBMIT = "/slurm/v0.0.44/job/submit"


class TaskInstance(SimpleNamespace):
    """The part of a running task instance the operator and the sensor use: XCom pushes are recorded."""

    def __init__(self) -> None:
        super().__init__(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def linked(fake: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fake server's connection with a job URL template."""
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{fake.conn_id.upper()}"])
    conn["extra"]["job_url_template"] = TEMPLATE
    monkeypatch.setenv("AIRFLOW_CONN_MAXWELL_LINKED", json.dumps(conn))
    return "maxwell_linked"


def running(job_id: int) -> tuple[int, dict[str, str], dict[str, Any]]:
    job = {"job_id": job_id, "job_state": ["RUNNING"], "user_name": "alice", "name": "d.t", "partition": "p"}
    return (200, {}, {**META, "jobs": [job]})


def test_the_operator_stores_the_job_page_as_soon_as_it_submits(fake, linked):
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 41})]
    ti = TaskInstance()
    task = MaxwellSubmitJobOperator(
        task_id="t", script="#!/bin/bash\ntrue\n", maxwell_conn_id=linked, wait_for_completion=False
    )
    assert task.execute({"ti": ti}) == 41
    assert ti.pushed[JOB_LINK_XCOM_KEY] == "https://slurm-web.example/job/41?user=alice"


def test_the_operator_stores_the_job_page_before_deferring(fake, linked):
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 41})]
    fake.script["/slurm/v0.0.44/job/41"] = [running(41)]
    ti = TaskInstance()
    task = MaxwellSubmitJobOperator(
        task_id="t", script="#!/bin/bash\ntrue\n", maxwell_conn_id=linked, deferrable=True, durable=False
    )
    with pytest.raises(TaskDeferred):
        task.execute({"ti": ti})
    assert ti.pushed == {JOB_LINK_XCOM_KEY: "https://slurm-web.example/job/41?user=alice"}


def test_without_a_template_there_is_no_link(fake):
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 41})]
    ti = TaskInstance()
    task = MaxwellSubmitJobOperator(
        task_id="t", script="#!/bin/bash\ntrue\n", maxwell_conn_id=fake.conn_id, wait_for_completion=False
    )
    assert task.execute({"ti": ti}) == 41
    assert JOB_LINK_XCOM_KEY not in ti.pushed


def test_the_sensor_stores_the_job_page_before_deferring(fake, linked):
    fake.script["/slurm/v0.0.44/job/7"] = [running(7)]
    ti = TaskInstance()
    waiting = MaxwellJobSensor(task_id="wait", job_id="7", maxwell_conn_id=linked, deferrable=True)
    with pytest.raises(TaskDeferred):
        waiting.execute({"ti": ti})
    assert ti.pushed == {JOB_LINK_XCOM_KEY: "https://slurm-web.example/job/7?user=alice"}


def stored_at_the_end_of_the_run(task: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What Airflow's worker stores for the task's extra links when a run ends (its own `finalize`, as after
    a deferral), which must read no XCom for them."""
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.xcom import XCom
    from airflow.utils.state import TaskInstanceState

    stored: dict[str, Any] = {}
    monkeypatch.setattr(task_runner, "_xcom_push_to_db", lambda ti, key, value: stored.__setitem__(key, value))
    reads: list[Any] = []
    monkeypatch.setattr(XCom, "get_one", classmethod(lambda cls, **kwargs: reads.append(kwargs)))
    ti = SimpleNamespace(
        task=task, start_date=None, end_date=None, dag_id="d", task_id=task.task_id, run_id="r", map_index=-1
    )
    task_runner.finalize(ti, TaskInstanceState.DEFERRED, {"ti": ti}, structlog_logger())  # type: ignore[arg-type]
    assert reads == [], "the link read XCom: a key not stored yet is an error line in the task log"
    return stored


def structlog_logger() -> Any:
    import structlog

    return structlog.get_logger("test")


def test_a_run_without_a_job_page_stores_no_link_and_reads_none(fake, monkeypatch):
    fake.script["/slurm/v0.0.44/job/7"] = [running(7)]
    waiting = MaxwellJobSensor(task_id="wait", job_id="7", maxwell_conn_id=fake.conn_id, deferrable=True)
    with pytest.raises(TaskDeferred):
        waiting.execute({"ti": TaskInstance()})
    assert stored_at_the_end_of_the_run(waiting, monkeypatch) == {}  # no XCom holding ""


def test_a_run_with_a_job_page_stores_it_without_reading_it_back(fake, linked, monkeypatch):
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 41})]
    fake.script["/slurm/v0.0.44/job/41"] = [running(41)]
    task = MaxwellSubmitJobOperator(
        task_id="t", script="#!/bin/bash\ntrue\n", maxwell_conn_id=linked, deferrable=True, durable=False
    )
    with pytest.raises(TaskDeferred):
        task.execute({"ti": TaskInstance()})
    assert stored_at_the_end_of_the_run(task, monkeypatch) == {
        JOB_LINK_XCOM_KEY: "https://slurm-web.example/job/41?user=alice"
    }
    assert SlurmJobLink().xcom_key == JOB_LINK_XCOM_KEY == "slurm_job_url"  # renaming it hides finished tasks' links


def test_the_run_after_a_deferral_keeps_the_page_stored_before_it(linked, monkeypatch):
    event = {"status": "success", "job_id": 41, "message": "ok", "summary": {"job_id": 41}}
    task = MaxwellSubmitJobOperator(task_id="t", script="#!/bin/bash\ntrue\n", maxwell_conn_id=linked)
    task.execute_complete({"ti": TaskInstance()}, event)
    assert stored_at_the_end_of_the_run(task, monkeypatch) == {
        JOB_LINK_XCOM_KEY: "https://slurm-web.example/job/41?user=alice"
    }


def test_airflow_serializes_the_link_for_the_ui_on_both_task_types():
    from airflow.sdk import DAG

    try:
        from airflow.serialization.serialized_objects import DagSerialization as Serializer
    except ImportError:  # Airflow before 3.2
        from airflow.serialization.serialized_objects import SerializedDAG as Serializer  # type: ignore[no-redef]

    with DAG("linked", schedule=None) as dag:
        MaxwellSubmitJobOperator(task_id="submit", script="#!/bin/bash\ntrue\n")
        MaxwellJobSensor(task_id="wait", job_id="7")
    tasks = Serializer.to_dict(dag)["dag"]["tasks"]
    links = {t["__var"]["task_id"]: t["__var"].get("_operator_extra_links") for t in tasks}
    assert links == {"submit": {"Slurm job": JOB_LINK_XCOM_KEY}, "wait": {"Slurm job": JOB_LINK_XCOM_KEY}}
    assert get_provider_info()["extra-links"] == ["airflow_provider_maxwell.links.SlurmJobLink"]
