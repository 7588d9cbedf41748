"""The operator's durable execution (Airflow 3.3's meaning of `durable` and `external_id_key`),
against a fake slurmrestd: the job id saved, a retry re-attaching, and `durable=False`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from tests.fake_slurm import META

SUBMIT = "/slurm/v0.0.44/job/submit"


class Store:
    """Airflow 3.3's task state store, as the operator sees it."""

    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        self.saved = dict(saved or {})
        self.reads: list[str] = []

    def get(self, key: str) -> Any:
        self.reads.append(key)
        return self.saved.get(key)

    def set(self, key: str, value: Any) -> None:
        self.saved[key] = value


def context(store: Store, try_number: int = 1) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=try_number)
    return {"ti": ti, "task_state_store": store}


def operator(fake: Any, **kwargs: Any) -> MaxwellSubmitJobOperator:
    return MaxwellSubmitJobOperator(
        task_id="t", script="#!/bin/bash\ntrue\n", maxwell_conn_id=fake.conn_id, wait_for_completion=False, **kwargs
    )


def test_the_job_id_is_saved_under_external_id_key(fake):
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 41})]
    store = Store()
    assert operator(fake).execute(context(store)) == 41
    assert store.saved == {MaxwellSubmitJobOperator.external_id_key: 41}
    assert MaxwellSubmitJobOperator.external_id_key == "maxwell_job_id"  # renaming it breaks in-flight retries


def test_a_retry_reattaches_to_the_saved_running_job_instead_of_submitting(fake):
    running = {"job_id": 41, "job_state": ["RUNNING"], "user_name": "alice", "name": "d.t", "partition": "p"}
    fake.script["/slurm/v0.0.44/job/41"] = [(200, {}, {**META, "jobs": [running]})]
    store = Store({"maxwell_job_id": 41})
    assert operator(fake).execute(context(store, try_number=2)) == 41
    assert fake.count("POST", SUBMIT) == 0


def test_not_durable_every_try_submits_and_nothing_is_saved_or_read(fake):
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 42})]
    store = Store({"maxwell_job_id": 41})
    assert operator(fake, durable=False).execute(context(store, try_number=2)) == 42
    assert fake.count("POST", SUBMIT) == 1 and store.reads == [] and store.saved == {"maxwell_job_id": 41}


def test_after_a_crash_before_the_id_was_saved_a_retry_reattaches_to_the_newest_job_of_its_tag(fake):
    # Try 1 submitted job 40, which failed; try 2 submitted job 41 and its worker died before saving the id.
    tag = "airflow:d/t/r/-1"
    older = {"job_id": 40, "name": "d.t", "user": "alice", "state": {"current": ["FAILED"]}, "comment": {"job": tag}}
    newer = {"job_id": 41, "name": "d.t", "user": "alice", "state": {"current": ["RUNNING"]}, "comment": {"job": tag}}
    older["time"], newer["time"] = {"submission": 1_790_000_000}, {"submission": 1_790_000_100}
    fake.script["/slurmdb/v0.0.44/jobs"] = [(200, {}, {**META, "jobs": [older, newer]})]
    running = {"job_id": 41, "job_state": ["RUNNING"], "user_name": "alice", "name": "d.t", "comment": tag}
    fake.script["/slurm/v0.0.44/job/41"] = [(200, {}, {**META, "jobs": [{**running, "submit_time": 1_790_000_100}]})]
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 42})]
    assert operator(fake).execute(context(Store(), try_number=3)) == 41
    assert fake.count("POST", SUBMIT) == 0


def test_a_second_try_finds_its_own_newest_job_by_the_tag_before_the_dags_comment(fake):
    # Earlier jobs of this task instance (38, 40) failed; the last, 41, runs, and its try died before saving
    # its id. The jobs with the task's name include another run's and one with no comment.
    tag = "airflow:d/t/r/-1"

    def listed(job_id: int, state: str, comment: str | None) -> dict[str, Any]:
        doc = {"job_id": job_id, "name": "d.t", "user": "alice", "state": {"current": [state]}}
        return doc | {"time": {"submission": 1_790_000_000 + job_id}, "comment": {"job": comment}}

    jobs = [listed(37, "COMPLETED", "airflow:d/t/other-run/-1 nightly"), listed(38, "FAILED", tag)]
    jobs += [
        listed(39, "COMPLETED", None),
        listed(40, "FAILED", f"{tag} beamtime 42"),
        listed(41, "RUNNING", f"{tag} beamtime 42"),
    ]
    fake.script["/slurmdb/v0.0.44/jobs"] = [(200, {}, {**META, "jobs": jobs})]
    running = {
        "job_id": 41,
        "job_state": ["RUNNING"],
        "user_name": "alice",
        "name": "d.t",
        "comment": f"{tag} beamtime 42",
    }
    fake.script["/slurm/v0.0.44/job/41"] = [(200, {}, {**META, "jobs": [{**running, "submit_time": 1_790_000_041}]})]
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 42})]
    assert operator(fake).execute(context(Store(), try_number=2)) == 41
    assert fake.count("POST", SUBMIT) == 0


def test_after_a_crash_an_array_retry_reattaches_to_the_whole_array_not_the_task_it_found(fake):
    # Try 1 submitted array 500 and died before saving its id; accounting lists each started task under
    # its own id (501 is task 1). The retry waits for the array, under the array's id, not for one task.
    tag = "airflow:d/t/r/-1"

    def listed(job_id: int, task: int, state: str) -> dict[str, Any]:
        doc = {"job_id": job_id, "name": "d.t", "user": "alice", "state": {"current": [state]}}
        doc |= {"array": {"job_id": 500, "task_id": task}, "comment": {"job": tag}}
        return doc | {"time": {"submission": 1_790_000_000}}

    found = [listed(500, 0, "COMPLETED"), listed(501, 1, "RUNNING")]
    fake.script["/slurmdb/v0.0.44/jobs"] = [(200, {}, {**META, "jobs": found})]

    def held(job_id: int, task: int, state: str) -> dict[str, Any]:
        doc = {"job_id": job_id, "job_state": [state], "user_name": "alice", "name": "d.t", "comment": tag}
        return doc | {"array_job_id": 500, "array_task_id": task, "submit_time": 1_790_000_000}

    tasks = [held(500, 0, "COMPLETED"), held(501, 1, "RUNNING"), held(502, 2, "PENDING")]
    fake.script["/slurm/v0.0.44/job/500"] = [(200, {}, {**META, "jobs": tasks})] * 3
    fake.script["/slurm/v0.0.44/job/501"] = [(200, {}, {**META, "jobs": [tasks[1]]})] * 3
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 503})]
    assert operator(fake, array="0-2").execute(context(Store(), try_number=2)) == 500
    assert fake.count("POST", SUBMIT) == 0
