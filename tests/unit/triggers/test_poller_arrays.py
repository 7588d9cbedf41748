"""Array waits in the shared poller (issue 14): an array is asked of slurmctld's jobs/state on its own
(its tasks carry ids of their own, so only an array asked alone can be told apart), and of accounting
only once none of its tasks lives, not every round: an array of 1,000 tasks is ~230 KB of jobs/state a
round instead of ~4.4 MB of accounting records."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_maxwell import poll_round
from airflow_provider_maxwell.effects import HttpCall, HttpResult
from airflow_provider_maxwell.triggers import poller as poller_module
from airflow_provider_maxwell.triggers.poller import JobPoller, Subscriber
from tests.unit.client.test_protocol_steps import Script, job_doc, jobs, record
from tests.unit.triggers.test_poller_rounds import ACCOUNTING, STATES, ScriptedClient, received, states, subscriber


def states_of(answers: dict[str, list[tuple[str, str]]]) -> Any:
    """A jobs/state reply that depends on the ids asked: `answers` by the asked ids joined with ","."""

    def reply(sent: list[HttpCall]) -> HttpResult:
        asked = ",".join((sent[-1].params or {})["job_id"])
        return states(*answers.get(asked, []))

    return reply


def task(job_id: int, array_id: int, index: int, state: str, code: int = 0) -> dict[str, Any]:
    return {**record(job_id, state, code=code), "array": {"job_id": array_id, "task_id": index}}


def run_round(poller: JobPoller, subscribers: list[Subscriber], script: Script) -> list[dict[str, Any]]:
    script.sent.clear()
    asyncio.run(poller._round(subscribers))
    return [dict(c.params or {}) for c in script.sent]


def test_an_array_is_asked_of_jobs_state_alone_and_not_of_accounting_while_a_task_lives():
    # Array 100: task 0 runs under its own id 101, task 1 waits under the array's id (as slurmctld lists them).
    running = {"100": [("101_0", "RUNNING"), ("100_1", "PENDING")], "7": [("7", "RUNNING")]}
    script = Script({STATES: [states_of(running)], ACCOUNTING: [jobs()]})
    array, plain = subscriber(100, expected_tasks=2, submitted_after=0.0), subscriber(7, submitted_after=0.0)
    poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]
    asked = run_round(poller, [array, plain], script)
    assert asked == [{"job_id": ["7"]}, {"job_id": ["100"]}]  # the plain ids together, the array alone
    (progress,) = received(array)
    assert progress.final is None
    assert sorted((j.job_id, j.array_job_id, j.array_task_id, j.state.value) for j in progress.live or []) == [
        (100, 100, 1, "PENDING"),
        (101, 100, 0, "RUNNING"),
    ]
    notes, final = array.watch.step(progress, now=1.0)
    assert final is None and notes == ["Slurm job 100: 1 PENDING, 1 RUNNING"]
    assert run_round(poller, [array, plain], script) == asked  # the same word again: no accounting, no news
    assert received(array) == []


def test_once_no_task_of_an_array_lives_accounting_is_asked_and_gives_every_tasks_record():
    # Task 0 ended long ago (slurmctld purged it), task 1 has just failed: the array's end.
    ended = {"100": [("100_1", "FAILED")]}
    records = jobs(task(101, 100, 0, "COMPLETED"), task(100, 100, 1, "FAILED", code=2))
    script = Script({STATES: [states_of(ended)], ACCOUNTING: [records]})
    array = subscriber(100, expected_tasks=2, submitted_after=0.0)
    poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]
    asked = run_round(poller, [array], script)
    assert asked == [{"job_id": ["100"]}, {"step": ["100"], "skip_steps": "true", "users": "alice"}]
    (seen,) = received(array)
    _, final = array.watch.step(seen, now=1.0)
    assert [(j.array_task_id, j.exit_code) for j in final or []] == [(0, 0), (1, 2)]


def test_an_array_slurmctld_holds_nothing_of_is_read_from_accounting():
    script = Script({STATES: [states_of({})], ACCOUNTING: [jobs(task(101, 100, 0, "COMPLETED"))]})
    array = subscriber(100, expected_tasks=2, submitted_after=0.0)
    asked = run_round(JobPoller(ScriptedClient(script), "key"), [array], script)  # type: ignore[arg-type]
    assert asked[-1]["step"] == ["100"]


def test_a_sensor_on_an_arrays_id_as_one_job_gets_only_the_entries_under_that_id():
    # The operator waits on the array (two tasks), a sensor on the same id as one job: the sensor's
    # batch names task 1 under the array's id; task 0's own id (101) is the array wait's alone.
    answers = {"100": [("101_0", "RUNNING"), ("100_1", "RUNNING")]}
    script = Script({STATES: [states_of(answers)], ACCOUNTING: [jobs()]})
    array = subscriber(100, expected_tasks=2, submitted_after=0.0)
    sensor = subscriber(100, submitted_after=0.0)
    poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]
    run_round(poller, [array, sensor], script)
    assert [j.job_id for j in received(sensor)[0].live or []] == [100]
    assert sorted(j.job_id for j in received(array)[0].live or []) == [100, 101]


def test_arrays_beyond_the_per_round_limit_take_turns_and_meanwhile_read_accounting(monkeypatch):
    monkeypatch.setattr(poll_round, "ARRAY_STATE_REQUESTS", 1)
    clock = [1_000.0]
    monkeypatch.setattr(poller_module.time, "time", lambda: clock[0])
    answers = {"100": [("100_0", "RUNNING")], "200": [("200_0", "RUNNING")]}
    # Accounting shows neither yet: the one not asked of jobs/state is looked up on its own too.
    lookups = {
        f"/slurm/v0.0.45/job/{i}": [jobs(job_doc(i + 1, "RUNNING", array_job_id=i, array_task_id=0))]
        for i in (100, 200)
    }
    script = Script({STATES: [states_of(answers)], ACCOUNTING: [jobs()], **lookups})
    first, second = (subscriber(i, expected_tasks=2, submitted_after=0.0) for i in (100, 200))
    poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]
    rounds = []
    for _ in range(3):
        rounds.append(run_round(poller, [first, second], script))
        clock[0] += 10
    # One array per round on jobs/state, the least recently asked first; the other is read from
    # accounting that round (as every array was before), so neither goes unwatched.
    assert [r[0]["job_id"] for r in rounds] == [["100"], ["200"], ["100"]]
    assert [r[1]["step"] for r in rounds] == [["200"], ["100"], ["200"]]


def test_releases_without_jobs_state_read_arrays_from_accounting_every_round():
    script = Script({"/slurmdb/v0.0.41/jobs": [jobs(task(101, 100, 0, "RUNNING"))]})
    array = subscriber(100, expected_tasks=2, submitted_after=0.0)
    poller = JobPoller(ScriptedClient(script, dialect="v0.0.41"), "key")  # type: ignore[arg-type]
    for _ in range(2):
        assert [c.get("step") for c in run_round(poller, [array], script)] == [["100"]]


@pytest.fixture(autouse=True)
def no_progress_details(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count the requests that decide the waits; the reads of a started or pending job's own
    record for its progress line (at most DETAIL_READS a round) are tested in test_progress_details.py."""
    monkeypatch.setattr(poll_round, "DETAIL_READS", 0)
