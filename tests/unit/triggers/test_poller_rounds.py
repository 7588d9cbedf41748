"""The shared poller's rounds and pauses stepped without a server or a clock: what one round asks, which
trigger gets which records, and how long it waits between rounds (issue 18: each test pins behaviour
mutation testing found unasserted)."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest

from airflow_provider_maxwell import poll_round
from airflow_provider_maxwell.effects import HttpResult
from airflow_provider_maxwell.exceptions import SlurmApiError, SlurmTransientError
from airflow_provider_maxwell.triggers import poller as poller_module
from airflow_provider_maxwell.triggers.poller import (
    BUSY_RATIO,
    SERVER_BURST,
    JobPoller,
    ServerTimeBudget,
    Subscriber,
)
from airflow_provider_maxwell.watch import JobWatch, Observation, WatchSpec
from tests.unit.client.test_protocol_steps import (
    META,
    Script,
    job_doc,
    jobs,
    ok,
    ops_for,
    record,
    slurm_error,
    state_with,
)


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


STATES = "/slurm/v0.0.45/jobs/state"
ACCOUNTING = "/slurmdb/v0.0.45/jobs"


def states(*entries: tuple[str, str]) -> Any:
    """A jobs/state answer: job_id as text ("7", or "9_1" for task 1 whose own id is 9), one state each."""
    return ok({**META, "jobs": [{"job_id": job_id, "state": [state]} for job_id, state in entries]})


def test_a_round_asks_slurmctld_for_the_waited_ids_and_accounting_by_id_for_what_slurmctld_does_not_vouch_for():
    script = Script(
        {
            STATES: [states(("7", "RUNNING"), ("8", "COMPLETED"))],
            ACCOUNTING: [jobs(record(7, "RUNNING"), record(8, "COMPLETED"), record(9, "COMPLETED"))],
        }
    )
    running, ended, purged = subscriber(7, submitted_after=50_000.0), subscriber(8), subscriber(9)
    one_round(ScriptedClient(script), [running, ended, purged])
    assert [c.url.removeprefix("https://rest.example") for c in script.sent] == [STATES, ACCOUNTING]
    assert script.sent[0].params == {"job_id": ["7", "8", "9"]}
    # By id, whenever they ran: no time window, so neither an old wait nor the user's history widens it.
    # The running job is the operator's own (submitted_after): slurmctld's word on it is enough.
    assert script.sent[1].params == {"step": ["8", "9"], "skip_steps": "true", "users": "alice"}
    (progress,) = received(running)
    assert progress.final is None and [j.state.value for j in progress.live or []] == ["RUNNING"]
    assert [len(received(s)) for s in (ended, purged)] == [1, 1]


def test_while_slurmctld_says_a_job_lives_accounting_is_asked_only_for_its_refresh_and_its_end(monkeypatch):
    clock = [10_000.0]
    monkeypatch.setattr(poller_module.time, "time", lambda: clock[0])
    script = Script({STATES: [states(("7", "PENDING"))], ACCOUNTING: [jobs(record(7, "RUNNING"))]})
    waiting = subscriber(7, submitted_after=9_000.0)  # submitted by the operator: the id is its job
    waiting.refresh_at = clock[0] + poll_round.REFRESH_AFTER
    poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]

    def round_() -> list[str]:
        script.sent.clear()
        clock[0] += 10
        asyncio.run(poller._round([waiting]))
        return [c.url.removeprefix("https://rest.example") for c in script.sent]

    assert round_() == [STATES]
    assert round_() == [STATES]
    script.replies[STATES] = [states(("7", "RUNNING"))]
    assert round_() == [STATES]  # it started: progress from slurmctld, not a record from accounting
    clock[0] += poll_round.REFRESH_AFTER * 1.5  # however quiet: read from accounting now and then
    assert round_() == [STATES, ACCOUNTING]
    assert round_() == [STATES]
    script.replies[STATES] = [states(("7", "COMPLETED"))]
    script.replies[ACCOUNTING] = [jobs(record(7, "COMPLETED"))]
    assert round_() == [STATES, ACCOUNTING]  # ended: its final record, once
    seen = [(o.live and o.live[0].state.value, o.final and o.final[0].state.value) for o in received(waiting)]
    assert seen == [("PENDING", None), ("RUNNING", None), ("RUNNING", "RUNNING"), ("COMPLETED", "COMPLETED")]


def test_a_job_slurmctld_shows_completing_is_asked_of_accounting_at_once():
    # The epilog still runs, but accounting may already hold the end: waiting for slurmctld to drop
    # the flag would cost an interval (measured: 23.8 s worst delay at 10 s with 1000 waits).
    completing = ok({**META, "jobs": [{"job_id": "7", "state": ["COMPLETED", "COMPLETING"]}]})
    script = Script({STATES: [completing], ACCOUNTING: [jobs(record(7, "COMPLETED"))]})
    ending = subscriber(7, submitted_after=9_000.0)
    one_round(ScriptedClient(script), [ending])
    assert script.count(ACCOUNTING) == 1
    (seen,) = received(ending)
    assert seen.final is not None and seen.final[0].state.value == "COMPLETED"


def test_an_id_given_from_outside_is_read_from_accounting_when_first_seen_then_left_to_slurmctld():
    script = Script({STATES: [states(("8", "RUNNING"))], ACCOUNTING: [jobs(record(8, "RUNNING"))]})
    sensor = subscriber(8)  # a sensor's job id: whose job it is, only accounting says
    poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]
    for _ in range(3):
        asyncio.run(poller._round([sensor]))
    assert (script.count(STATES), script.count(ACCOUNTING)) == (3, 1)


def test_where_a_proxy_blocks_jobs_state_accounting_by_id_serves_every_round():
    blocked = HttpResult(404, b"<html>404 Not Found</html>", {})
    script = Script({STATES: [blocked], ACCOUNTING: [jobs(record(7, "RUNNING"))]})
    poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]
    waiting = subscriber(7)
    for _ in range(3):
        asyncio.run(poller._round([waiting]))
    assert script.count(STATES) == 1 and script.count(ACCOUNTING) == 3  # asked once, then not again
    assert len(received(waiting)) == 3


def test_a_slurm_error_from_jobs_state_fails_the_round_with_slurms_message():
    script = Script({STATES: [slurm_error(500, 1)], ACCOUNTING: [jobs()]})
    poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]
    with pytest.raises(SlurmApiError, match=r"state of 1 Slurm jobs.*HTTP 500.*jobs/state"):
        asyncio.run(poller._round([subscriber(7)]))


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41"])
def test_releases_without_jobs_state_ask_accounting_by_id_each_round(version):
    listing = f"/slurmdb/{version}/jobs"
    script = Script({listing: [jobs(record(7, "RUNNING"), record(8, "RUNNING"))]})
    one_round(ScriptedClient(script, version), [subscriber(7), subscriber(8)])
    assert [c.url for c in script.sent] == [f"https://rest.example{listing}"]
    assert script.sent[0].params == {"step": ["7", "8"], "skip_steps": "true", "users": "alice"}


def test_a_rounds_answers_follow_the_waited_jobs_not_the_users_history():
    # What a round sends depends on the waited ids only: a wait declared a day earlier adds one id,
    # never a day of the user's records (the old listing asked for start_time = oldest wait).
    fresh = [subscriber(j, submitted_after=200_000.0) for j in range(10, 20)]
    old = subscriber(5, submitted_after=200_000.0 - 86400)
    script = Script(
        {
            STATES: [states(*((str(j), "RUNNING") for j in range(10, 20)))],
            ACCOUNTING: [jobs()],
            "/slurm/v0.0.45/job/5": [jobs(job_doc(5, "RUNNING"))],  # accounting does not show it: looked up
        }
    )
    one_round(ScriptedClient(script), [*fresh, old])
    assert [set(c.params or {}) for c in script.sent[:2]] == [{"job_id"}, {"step", "skip_steps", "users"}]
    assert script.sent[1].params["step"] == ["5"]  # the running fresh ones: jobs/state's word suffices


def test_22_05s_lost_exit_code_comes_from_slurmctld_per_ended_job_a_bounded_number_per_round(monkeypatch):
    monkeypatch.setattr(poll_round, "EXIT_CODE_LOOKUPS", 1)
    accounting = "/slurmdb/v0.0.38/jobs"
    script = Script(
        {
            accounting: [jobs(record(7, "FAILED", code=0), record(8, "RUNNING"), record(9, "FAILED", code=0))],
            "/slurm/v0.0.38/job/7": [jobs(job_doc(7, "FAILED", exit_code=768))],
            "/slurm/v0.0.38/job/9": [jobs(job_doc(9, "FAILED", exit_code=512))],
        }
    )
    ended, running, later = subscriber(7), subscriber(8), subscriber(9)
    poller = one_round(ScriptedClient(script, "v0.0.38"), [ended, running, later])
    (seen,) = received(ended)
    assert seen.final is not None and seen.final[0].exit_code is None  # 22.05's accounting: unknown
    assert seen.live is not None and seen.live[0].exit_code == 3  # slurmctld's wait status: exit 3
    assert script.sent[0].params == {"step": "7,8,9", "skip_steps": "true"}
    assert received(later) == []  # over this round's bound: next round, with its exit code
    assert not [c for c in script.sent if c.url.endswith("/slurm/v0.0.38/jobs")]  # never the whole queue
    asyncio.run(poller._round([later]))
    (seen,) = received(later)
    assert seen.live is not None and seen.live[0].exit_code == 2


def test_newer_releases_ask_slurmctld_nothing_but_jobs_state_when_a_job_ends():
    script = Script({STATES: [states()], ACCOUNTING: [jobs(record(7, "FAILED", code=3))]})
    ended = subscriber(7)
    one_round(ScriptedClient(script), [ended])
    (seen,) = received(ended)
    assert seen.live is None and seen.final is not None and seen.final[0].exit_code == 3
    assert len(script.sent) == 2


def test_a_trigger_on_an_array_gets_every_tasks_record_and_a_task_only_its_own():
    task = {**record(101, "COMPLETED"), "array": {"job_id": 100, "task_id": 1}}
    plain = record(102, "COMPLETED")
    script = Script({STATES: [states(("102", "COMPLETED"))], ACCOUNTING: [jobs(task, plain)]})
    array, one_task, other = subscriber(100, expected_tasks=2), subscriber(101), subscriber(102)
    one_round(ScriptedClient(script), [array, one_task, other])
    assert [j.job_id for j in received(array)[0].final or []] == [101]
    assert [j.job_id for j in received(one_task)[0].final or []] == [101]
    assert [j.job_id for j in received(other)[0].final or []] == [102]


def test_unlisted_jobs_are_looked_up_oldest_lookup_first_and_an_error_stays_with_its_trigger(monkeypatch):
    monkeypatch.setattr(poll_round, "LOOKUPS_PER_ROUND", 2)
    monkeypatch.setattr(poller_module.time, "time", lambda: 5000.0)
    script = Script(
        {
            STATES: [states(("8", "RUNNING"), ("9", "RUNNING"))],
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
def test_the_loop_counts_rounds_resets_the_backoff_and_waits_out_retry_after_and_a_spent_server_share(monkeypatch):
    poller = poller_with(0.2)
    poller.server_time = ServerTimeBudget(burst=0.0, saved=0.0)  # nothing saved up: every slow round is rested
    now = [0.0]
    poller.clock = lambda: now[0]
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
        now[0] += seconds
        if not outcomes:
            poller.subscribers.clear()

    monkeypatch.setattr(poller, "_round", round_)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    (waiting,) = poller.subscribers
    asyncio.run(poller._loop())
    # backoff; Retry-After; 6x a 1 s listing (the round took no time here, so all of the rest comes
    # after it); the interval again, the bucket's debt paid by the rest
    assert pauses == pytest.approx([0.4, 7.0, 6.0, 0.2], abs=0.05)
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
        client = ScriptedClient(Script({STATES: [states()], "/slurmdb/v0.0.45/jobs": [ok({**META, "jobs": []})]}))
        poller = JobPoller.for_client(client)  # type: ignore[arg-type]
        assert JobPoller.for_client(client) is poller  # type: ignore[arg-type]
        async with poller.subscribe(JobWatch(WatchSpec(job_id=7, user="alice", poll_interval=3600))):
            task = poller._task
            await asyncio.sleep(0)
        assert task is not None
        await asyncio.sleep(0)
        assert task.cancelled() and JobPoller.for_client(client) is not poller  # type: ignore[arg-type]

    asyncio.run(main())


@pytest.mark.usefixtures("no_jitter")
def test_the_interval_runs_from_round_start_to_round_start_and_a_slow_round_draws_on_the_saved_share(monkeypatch):
    """A round of 10,000 waits with a wave of ended jobs takes seconds: the next starts one interval after
    this one started, not an interval after it ended; one slow round after quiet ones is paid from the
    server time saved up, so the events of the next interval are not held back."""
    poller = poller_with(10.0)
    now = [100.0]
    poller.clock = lambda: now[0]
    rounds: list[tuple[float, float]] = [(4.0, 0.5), (4.0, 1.6), (12.0, 6.0), (0.0, 0.0)]  # (length, server time)
    pauses: list[float] = []

    async def round_(subscribers: object) -> None:
        length, server = rounds.pop(0)
        now[0] += length
        poller.listing_seconds = server

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds
        if not rounds:
            poller.subscribers.clear()

    monkeypatch.setattr(poller, "_round", round_)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    asyncio.run(poller._loop())
    # 10 s - 4 s twice; a round longer than the interval: the next at once; the interval
    assert pauses == pytest.approx([6.0, 6.0, 0.0, 10.0])
    assert poller.server_time.saved == pytest.approx(SERVER_BURST - 6.0)  # refilled by the quiet rounds, then the wave


def round_starts(budget: ServerTimeBudget, interval: float, server: float, rounds: int) -> list[float]:
    """Start times of rounds that each take `server` seconds of the server's time (and as long in all)."""
    now, starts = 0.0, []
    for _ in range(rounds):
        starts.append(now)
        now += server
        now += max(interval - server, budget.rest_after(server, now))
    return starts


def test_a_server_slow_round_after_round_rests_five_times_its_answer_time_once_the_saved_share_is_spent():
    starts = round_starts(ServerTimeBudget(), interval=10.0, server=4.0, rounds=40)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[:4] == pytest.approx([10.0] * 4)  # paid from the 30 s saved up while quiet
    assert gaps[-10:] == pytest.approx([24.0] * 10)  # then 4 s of answers + 20 s of rest
    server_time, elapsed = 40 * 4.0, starts[-1] + 24.0
    assert server_time <= elapsed / (BUSY_RATIO + 1) + SERVER_BURST + 1e-9  # at most 1/6 of the time, plus the burst


def test_fast_rounds_never_wait_and_the_saved_share_is_capped():
    budget = ServerTimeBudget()
    assert round_starts(budget, interval=10.0, server=0.1, rounds=30)[-1] == pytest.approx(290.0)
    assert budget.saved == pytest.approx(SERVER_BURST - 0.1)  # full again after each round, less the last
    # Hours of quiet save no more than the burst: two 30 s rounds in a row, the second is rested.
    assert budget.rest_after(SERVER_BURST, now=1e6) == 0.0
    assert budget.rest_after(SERVER_BURST, now=1e6 + 30.0) == pytest.approx((SERVER_BURST - 5.0) * 6)


@pytest.fixture(autouse=True)
def no_progress_details(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count the requests that decide the waits; the reads of a started or pending job's own
    record for its progress line (at most DETAIL_READS a round) are tested in test_progress_details.py."""
    monkeypatch.setattr(poll_round, "DETAIL_READS", 0)
