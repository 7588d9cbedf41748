"""The sensor decides through the same JobWatch as the operator and the trigger: against a fake
slurmrestd, its first look (unknown id, another user's job), its pokes, and its deferral."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_maxwell.exceptions import MaxwellConfigError, SlurmJobNotFound
from airflow_provider_maxwell.sensors.job import MaxwellJobSensor
from airflow_provider_maxwell.triggers.job import JobEvent
from tests.fake_slurm import META

T = 1_790_000_000
JOB = "/slurm/v0.0.44/job/7"
ACCOUNTING = "/slurmdb/v0.0.44/job/7"


def live(state: str, user: str = "alice") -> dict[str, Any]:
    return {
        "job_id": 7,
        "name": "reduce",
        "user_name": user,
        "partition": "p",
        "job_state": [state],
        "submit_time": {"set": True, "number": T},
    }


def record(state: str, code: int = 0, user: str = "alice", submitted: int = T) -> dict[str, Any]:
    return {
        "job_id": 7,
        "name": "reduce",
        "user": user,
        "partition": "p",
        "state": {"current": [state], "reason": "None"},
        "exit_code": {"status": ["SUCCESS" if code == 0 else "FAILED"], "return_code": code},
        "time": {"submission": submitted, "start": submitted + 1, "end": submitted + 5},
    }


def answer(*docs: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    return (200, {}, {**META, "jobs": list(docs)})


def sensor(fake: Any, **kwargs: Any) -> MaxwellJobSensor:
    return MaxwellJobSensor(task_id="wait", job_id="7", maxwell_conn_id=fake.conn_id, **kwargs)


def test_pokes_follow_the_job_and_succeed_on_its_final_accounting_record(fake):
    fake.script[JOB] = [answer(live("RUNNING")), answer(live("COMPLETED"))]
    fake.script[ACCOUNTING] = [answer(record("COMPLETED"))]
    waiting = sensor(fake)
    assert waiting.poke({}) is False
    assert fake.count("GET", ACCOUNTING) == 0  # accounting is not asked while slurmctld shows it running
    assert waiting.poke({}) is True


def test_an_id_nobody_knows_fails_at_the_first_look(fake):
    fake.script[ACCOUNTING] = [answer()]
    with pytest.raises(SlurmJobNotFound, match="Slurm job 7 not found"):
        sensor(fake).poke({})


def test_another_users_job_is_refused_naming_the_owner_and_the_connection(fake):
    fake.script[JOB] = [answer(live("RUNNING", user="bob"))]
    with pytest.raises(
        MaxwellConfigError, match=f"job_id 7 belongs to user 'bob', not to 'alice' of connection '{fake.conn_id}'"
    ):
        sensor(fake).poke({})


def test_a_failed_job_fails_the_sensor_unless_its_state_counts_as_success(fake):
    from airflow_provider_maxwell.compat import AirflowFailException

    fake.script[JOB] = [(404, {}, {**META, "errors": [{"error_number": 2017}]})]
    fake.script[ACCOUNTING] = [answer(record("FAILED", code=3))]
    with pytest.raises(AirflowFailException, match="ended FAILED with exit code 3"):
        sensor(fake).poke({})
    assert sensor(fake, success_states={"COMPLETED", "FAILED"}).poke({}) is True


def test_a_deferred_sensor_hands_the_trigger_the_job_pinned_by_slurms_submit_time(fake):
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

    fake.script[JOB] = [answer(live("PENDING"))]
    with pytest.raises(TaskDeferred) as deferred:
        sensor(fake, deferrable=True, poke_interval=5).execute({})
    spec = deferred.value.trigger.serialize()[1]["spec"]
    assert (spec["job_id"], spec["user"], spec["submitted_after"], spec["submit_slack"]) == (7, "alice", T, 1.0)
    assert spec["poll_interval"] == 5


def test_resuming_reads_the_trigger_event_with_its_retryable_flag(fake):
    from airflow_provider_maxwell.compat import AirflowFailException, AirflowSkipException

    event = JobEvent(
        "failed", 7, "Slurm job 7 (reduce) ended CANCELLED (cancelled outside Airflow: not retried)", False
    )
    with pytest.raises(AirflowFailException, match="cancelled outside Airflow"):
        sensor(fake).execute_complete({}, event.to_payload())
    with pytest.raises(AirflowSkipException):
        sensor(fake, soft_fail=True).execute_complete({}, event.to_payload())
    assert sensor(fake).execute_complete({}, JobEvent("success", 7, "ok").to_payload()) == 7


def test_the_first_look_that_gets_an_answer_checks_whose_job_it_is(fake):
    # Slurm unreachable at the first poke: the owner check waits for the first answer, not skipped.
    fake.script[JOB] = [(502, {}, "<html>502</html>"), answer(live("RUNNING", user="bob"))]
    waiting = MaxwellJobSensor(task_id="wait", job_id="7", maxwell_conn_id=fake.conn_id)
    waiting._hook = lambda: _hook(fake)  # type: ignore[method-assign]
    assert waiting.poke({}) is False
    with pytest.raises(MaxwellConfigError, match="belongs to user 'bob'"):
        waiting.poke({})


def _hook(fake: Any) -> Any:
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    return MaxwellHook(fake.conn_id, retry_limit=1)
