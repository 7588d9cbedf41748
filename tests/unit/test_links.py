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


def test_the_link_reads_back_what_was_stored_and_nothing_when_nothing_was(monkeypatch):
    # Airflow's worker stores get_link's answer under xcom_key when the task (or its deferral) ends.
    from airflow.sdk.execution_time.xcom import XCom

    stored: dict[tuple[str, str], Any] = {("t", JOB_LINK_XCOM_KEY): "https://slurm-web.example/job/7"}
    monkeypatch.setattr(XCom, "get_value", classmethod(lambda cls, *, ti_key, key: stored.get((ti_key.task_id, key))))
    link = SlurmJobLink()
    assert link.get_link(None, ti_key=SimpleNamespace(task_id="t")) == "https://slurm-web.example/job/7"
    assert link.get_link(None, ti_key=SimpleNamespace(task_id="other")) == ""
    assert link.xcom_key == JOB_LINK_XCOM_KEY == "slurm_job_url"  # renaming it hides finished tasks' links


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
