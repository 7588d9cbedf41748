"""The shared poller's timing and bookkeeping seen from the triggers: each connection polls on its own, a
short poll interval is kept, a quiet job is re-read from accounting 5 to 15 minutes after its last read
(at that moment, not a round later), a job slurmctld shows completing is read from accounting at once, and
slurmctld's entries listed in another order are no news (issue 18: each test pins behaviour mutation
testing found unasserted). Clocks and randomness are injected; nothing sleeps."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from airflow_provider_maxwell import poll_round as poll_round_rules
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import HttpResult
from airflow_provider_maxwell.triggers import poller as poller_module
from airflow_provider_maxwell.triggers.poller import JobPoller
from tests.unit.client.test_protocol_steps import Script, job_doc, jobs, record
from tests.unit.triggers.test_poller_rounds import (
    ACCOUNTING,
    STATES,
    ScriptedClient,
    poller_with,
    received,
    states,
    subscriber,
)


def test_each_connection_in_a_loop_gets_a_poller_of_its_own():
    async def main() -> None:
        alice = ScriptedClient(Script({}))
        bob = ScriptedClient(Script({}))
        bob.state.config = MaxwellConnectionConfig.from_connection(
            "bobs", host="https://rest.example", login="bob", password="portal-token", extra={}
        )
        assert alice.state.config.fingerprint != bob.state.config.fingerprint
        mine = JobPoller.for_client(alice)  # type: ignore[arg-type]
        theirs = JobPoller.for_client(bob)  # type: ignore[arg-type]
        assert mine is not theirs and (mine.client, theirs.client) == (alice, bob)
        assert JobPoller.for_client(alice) is mine  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_poll_interval_under_a_second_is_kept(monkeypatch):
    monkeypatch.setattr(random, "uniform", lambda low, high: 1.0)  # no jitter
    poller = poller_with(0.2)
    assert poller.pause(0.0) == 0.2  # no Retry-After: nothing stretches the interval the user chose


class Rounds:
    """One waited job, rounds run at chosen times of an injected clock; what each round asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, script: Script, **spec: Any) -> None:
        self.clock = 10_000.0
        monkeypatch.setattr(poller_module.time, "time", lambda: self.clock)
        self.script = script
        self.waiting = subscriber(7, submitted_after=9_000.0, **spec)  # the operator's own job
        self.poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]

    def at(self, when: float) -> list[str]:
        self.clock = when
        self.script.sent.clear()
        asyncio.run(self.poller._round([self.waiting]))
        return [c.url.removeprefix("https://rest.example") for c in self.script.sent]


def test_a_quiet_job_is_read_from_accounting_when_its_refresh_comes_five_to_fifteen_minutes_on(monkeypatch):
    asked: list[tuple[float, float]] = []
    spread = [0.5, 1.5, 1.0]  # the earliest and the latest refresh the spread allows, in turn
    monkeypatch.setattr(random, "uniform", lambda low, high: asked.append((low, high)) or spread.pop(0))
    rounds = Rounds(monkeypatch, Script({STATES: [states(("7", "RUNNING"))], ACCOUNTING: [jobs(record(7, "RUNNING"))]}))
    assert rounds.at(10_000.0) == [STATES]  # first round: slurmctld's word on the operator's job suffices
    assert rounds.at(10_299.0) == [STATES]
    assert rounds.at(10_300.0) == [STATES, ACCOUNTING]  # 0.5 x 10 minutes: due at that second
    assert rounds.at(10_300.0 + 899.0) == [STATES]
    assert rounds.at(10_300.0 + 900.0) == [STATES, ACCOUNTING]  # then 1.5 x 10 minutes after that read
    assert asked[:2] == [(0.5, 1.5), (0.5, 1.5)]


def test_a_job_slurmctld_names_only_completing_is_read_from_accounting_at_once(monkeypatch):
    # The string form of a state may carry only the flag: the job is ending, accounting soon has its end.
    script = Script({STATES: [states(("7", "COMPLETING"))], ACCOUNTING: [jobs(record(7, "COMPLETED"))]})
    rounds = Rounds(monkeypatch, script)
    assert rounds.at(10_000.0) == [STATES, ACCOUNTING]
    (seen,) = received(rounds.waiting)
    assert [j.state.value for j in seen.final or []] == ["COMPLETED"]


def test_slurmctlds_entries_in_another_order_are_no_news(monkeypatch):
    script = Script({STATES: [states(("7_2", "RUNNING"), ("7_1", "PENDING"))], ACCOUNTING: [jobs()]})
    rounds = Rounds(monkeypatch, script)
    assert rounds.at(10_000.0) == [STATES]
    (progress,) = received(rounds.waiting)
    assert [(j.array_task_id, j.state.value) for j in progress.live or []] == [(1, "PENDING"), (2, "RUNNING")]
    script.replies[STATES] = [states(("7_1", "PENDING"), ("7_2", "RUNNING"))]
    assert rounds.at(10_010.0) == [STATES]
    assert received(rounds.waiting) == []  # the same word: no progress line


def test_22_05s_exit_codes_are_read_for_twenty_ended_jobs_a_round_and_a_busy_slurmctld_delays_only_its_job():
    accounting = "/slurmdb/v0.0.38/jobs"
    ids = list(range(101, 123))  # 22 jobs ended at once
    replies: dict[str, list[Any]] = {accounting: [jobs(*(record(i, "FAILED", code=0) for i in ids))]}
    for i in ids:
        replies[f"/slurm/v0.0.38/job/{i}"] = [jobs(job_doc(i, "FAILED", exit_code=768))]
    replies["/slurm/v0.0.38/job/101"] = [HttpResult(503, b"<html>busy</html>", {})]  # still busy after retries
    script = Script(replies)
    waiting = [subscriber(i) for i in ids]
    poller = JobPoller(ScriptedClient(script, "v0.0.38"), "key")  # type: ignore[arg-type]
    asyncio.run(poller._round(waiting))
    served = [s.spec.job_id for s in waiting if not s.inbox.empty()]
    assert served == ids[1:20]  # 20 reads this round; the busy one and the last two come next round
    assert all(received(s)[0].live[0].exit_code == 3 for s in waiting if s.spec.job_id in served)  # type: ignore[index]
    script.replies["/slurm/v0.0.38/job/101"] = [jobs(job_doc(101, "FAILED", exit_code=512))]
    asyncio.run(poller._round([waiting[0], *waiting[20:]]))
    assert [received(s)[0].live[0].exit_code for s in (waiting[0], *waiting[20:])] == [2, 3, 3]  # type: ignore[index]


@pytest.fixture(autouse=True)
def no_progress_details(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count the requests that decide the waits; the reads of a started or pending job's own
    record for its progress line (at most DETAIL_READS a round) are tested in test_progress_details.py."""
    monkeypatch.setattr(poll_round_rules, "DETAIL_READS", 0)
