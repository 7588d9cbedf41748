"""The shared poller's rounds and pauses stepped without a server or a clock: what one round asks, which
trigger gets which records, and how long it waits between rounds (issue 18: each test pins behaviour
mutation testing found unasserted)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from airflow_provider_maxwell.exceptions import SlurmTransientError
from airflow_provider_maxwell.triggers import poller as poller_module
from airflow_provider_maxwell.triggers.poller import JobPoller, Subscriber
from airflow_provider_maxwell.watch import JobWatch, Observation, WatchSpec

from .test_protocol_steps import META, Script, job_doc, jobs, ok, ops_for, record, slurm_error, state_with


class ScriptedClient:
    """Stands in for SlurmClient: runs the poller's protocols against a Script, at once."""

    def __init__(self, script: Script, dialect: str = "v0.0.45") -> None:
        self.script = script
        self.state = state_with(dialect)
        self.ops = ops_for(self.state)

    async def arun(self, protocol: Any) -> Any:
        return self.script.run(protocol)


def subscriber(job_id: int, **spec: Any) -> Subscriber:
    return Subscriber(JobWatch(WatchSpec(job_id=job_id, user="alice", **spec)))


def one_round(client: ScriptedClient, subscribers: list[Subscriber]) -> JobPoller:
    poller = JobPoller(client, "key")  # type: ignore[arg-type]
    asyncio.run(poller._round(subscribers))
    return poller


def received(s: Subscriber) -> list[Observation]:
    return [s.inbox.get_nowait() for _ in range(s.inbox.qsize())]


# ---------------------------------------------------------------- one round


def test_the_listing_reaches_back_to_the_oldest_job_or_a_day_before_an_undated_one_registered():
    listing = "/slurmdb/v0.0.45/jobs"
    dated = subscriber(7, submitted_after=50_000.0)
    undated = subscriber(8)
    undated.registered_at = 100_000.0
    script = Script({listing: [jobs(record(7, "RUNNING"), record(8, "RUNNING"))]})
    one_round(ScriptedClient(script), [dated, undated])
    assert script.sent[0].params["start_time"] == str(100_000 - 86400 - 60)
    script = Script({listing: [jobs(record(7, "RUNNING"))]})
    one_round(ScriptedClient(script), [dated])
    assert script.sent[0].params["start_time"] == str(50_000 - 60)


def test_22_05s_lost_exit_code_comes_from_one_slurmctld_listing_once_a_job_ended():
    accounting = "/slurmdb/v0.0.38/jobs"
    script = Script(
        {
            accounting: [jobs(record(7, "FAILED", code=0), record(8, "RUNNING"))],
            "/slurm/v0.0.38/jobs": [jobs(job_doc(7, "FAILED", exit_code=768), job_doc(8, "RUNNING"))],
        }
    )
    ended, running = subscriber(7), subscriber(8)
    one_round(ScriptedClient(script, "v0.0.38"), [ended, running])
    (seen,) = received(ended)
    assert seen.final is not None and seen.final[0].exit_code is None  # 22.05's accounting: unknown
    assert seen.live is not None and seen.live[0].exit_code == 3  # slurmctld's wait status: exit 3
    assert script.sent[0].params == {"step": "7,8", "skip_steps": "true"}
    assert script.count("/slurm/v0.0.38/jobs") == 1


def test_newer_releases_ask_slurmctld_nothing_when_a_job_ends():
    script = Script({"/slurmdb/v0.0.45/jobs": [jobs(record(7, "FAILED", code=3))]})
    ended = subscriber(7)
    one_round(ScriptedClient(script), [ended])
    (seen,) = received(ended)
    assert seen.live is None and seen.final is not None and seen.final[0].exit_code == 3
    assert len(script.sent) == 1


def test_a_trigger_on_an_array_gets_every_tasks_record_and_a_task_only_its_own():
    task = {**record(101, "COMPLETED"), "array": {"job_id": 100, "task_id": 1}}
    plain = record(102, "COMPLETED")
    script = Script({"/slurmdb/v0.0.45/jobs": [jobs(task, plain)]})
    array, one_task, other = subscriber(100), subscriber(101), subscriber(102)
    one_round(ScriptedClient(script), [array, one_task, other])
    assert [j.job_id for j in received(array)[0].final or []] == [101]
    assert [j.job_id for j in received(one_task)[0].final or []] == [101]
    assert [j.job_id for j in received(other)[0].final or []] == [102]


def test_unlisted_jobs_are_looked_up_oldest_lookup_first_and_an_error_stays_with_its_trigger(monkeypatch):
    monkeypatch.setattr(poller_module, "LOOKUPS_PER_ROUND", 2)
    monkeypatch.setattr(poller_module.time, "time", lambda: 5000.0)
    script = Script(
        {
            "/slurmdb/v0.0.45/jobs": [jobs()],
            "/slurm/v0.0.45/job/7": [slurm_error(400, 2)],
            "/slurm/v0.0.45/job/8": [jobs(job_doc(8, "RUNNING"))],
            "/slurm/v0.0.45/job/9": [jobs(job_doc(9, "RUNNING"))],
        }
    )
    first, second, third = subscriber(7), subscriber(8), subscriber(9)
    first.looked_up_at, second.looked_up_at, third.looked_up_at = 30.0, 10.0, 20.0
    one_round(ScriptedClient(script), [first, second, third])
    assert (first.looked_up_at, second.looked_up_at, third.looked_up_at) == (30.0, 5000.0, 5000.0)
    assert received(first) == []  # looked up longest ago of the three: waits for the next round
    assert [j.job_id for j in received(second)[0].live or []] == [8]
    script.replies["/slurmdb/v0.0.45/jobs"] = [jobs()]
    one_round(ScriptedClient(script), [first, second, third])
    (failed,) = received(first)
    assert isinstance(failed.error, Exception) and "HTTP 400" in str(failed.error)


# ---------------------------------------------------------------- pauses


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: 1.0)


def poller_with(interval: float) -> JobPoller:
    poller = JobPoller(None, "key")  # type: ignore[arg-type]
    poller.subscribers = {subscriber(7, poll_interval=interval)}
    return poller


@pytest.mark.usefixtures("no_jitter")
def test_the_backoff_doubles_per_failed_round_up_to_five_minutes():
    poller = poller_with(10.0)
    assert poller.pause(0.0) == 10.0  # a fast listing: the plain interval
    for failures, pause in [(1, 20.0), (2, 40.0), (3, 80.0), (5, 300.0), (50, 300.0)]:
        poller.failures = failures
        assert poller.pause(0.0) == pause
    assert JobPoller(None, "k").interval() == 30.0  # type: ignore[arg-type]  # nobody waiting: the default


def test_the_jitter_is_ten_percent_either_way(monkeypatch):
    asked: list[tuple[float, float]] = []
    monkeypatch.setattr(random, "uniform", lambda low, high: asked.append((low, high)) or high)
    assert poller_with(10.0).pause(0.0) == pytest.approx(11.0)
    assert asked == [(pytest.approx(0.9), pytest.approx(1.1))]


@pytest.mark.usefixtures("no_jitter")
def test_the_loop_counts_rounds_resets_the_backoff_and_waits_out_slow_listings_and_retry_after(monkeypatch):
    poller = poller_with(0.2)
    assert (poller.rounds, poller.failures, poller.listing_seconds) == (0, 0, 0.0)
    outcomes: list[Any] = [
        SlurmTransientError("down", status=503, url="u"),  # first round fails before any listing answered
        SlurmTransientError("down", status=503, url="u", retry_after=7.0),
        1.0,  # a good round whose listing took 1 s
        None,
    ]
    pauses: list[float] = []

    async def round_(subscribers: object) -> None:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        poller.listing_seconds = outcome or 0.0

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if not outcomes:
            poller.subscribers.clear()

    monkeypatch.setattr(poller, "_round", round_)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    (waiting,) = poller.subscribers
    asyncio.run(poller._loop())
    assert pauses == [0.4, 7.0, 5.0, 0.2]  # backoff; Retry-After; 5x a 1 s listing; the interval again
    assert poller.rounds == 4 and poller.failures == 0
    assert [type(o.error).__name__ for o in received(waiting)] == ["SlurmTransientError"] * 2


def test_a_poller_made_by_hand_stops_without_a_registry_entry():
    async def main() -> None:
        poller = JobPoller(None, "key")  # type: ignore[arg-type]
        poller._stop()
        assert poller._task is None

    asyncio.run(main())


def test_the_last_trigger_out_cancels_the_poller_at_once(monkeypatch):
    async def main() -> None:
        client = ScriptedClient(Script({"/slurmdb/v0.0.45/jobs": [ok({**META, "jobs": []})]}))
        poller = JobPoller.for_client(client)  # type: ignore[arg-type]
        assert JobPoller.for_client(client) is poller  # type: ignore[arg-type]
        async with poller.subscribe(JobWatch(WatchSpec(job_id=7, user="alice", poll_interval=3600))):
            task = poller._task
            await asyncio.sleep(0)
        assert task is not None
        await asyncio.sleep(0)
        assert task.cancelled() and JobPoller.for_client(client) is not poller  # type: ignore[arg-type]

    asyncio.run(main())
