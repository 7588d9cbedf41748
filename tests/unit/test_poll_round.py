"""The shared poller's round driven by hand, as tests/unit/client/test_protocol_steps.py drives the other protocols:
scripted answers, the clock passed in, and what the round asks, what it delivers to which wait and what
it leaves for the next round read off directly. No event loop, no poller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_maxwell import poll_round as poll_round_rules
from airflow_provider_maxwell.exceptions import SlurmApiError
from airflow_provider_maxwell.poll_round import ENDS_AHEAD, ENDS_OVERLAP, PollRound, PollState, Wait
from airflow_provider_maxwell.slurm import dialects
from airflow_provider_maxwell.slurm.job import JobStatus
from airflow_provider_maxwell.slurm.states import JobState, accounting_due, ended_or_ending, has_ended
from airflow_provider_maxwell.triggers.poller import JobPoller
from airflow_provider_maxwell.watch import JobWatch, Observation, WatchSpec
from tests.unit.client.test_protocol_steps import Script, jobs, ops_for, record, slurm_error, state_with
from tests.unit.triggers.test_poller_rounds import ACCOUNTING, STATES, ScriptedClient, received, states, subscriber

NOW = 1_700_001_000.0
SUBMITTED = 1_700_000_000.0  # record()'s submit time


def wait(job_id: int, **spec: Any) -> Wait:
    return Wait(JobWatch(WatchSpec(job_id=job_id, user="alice", submitted_after=SUBMITTED, **spec)))


def run(script: Script, state: PollState, waits: list[Wait], now: float = NOW) -> list[tuple[Wait, Observation]]:
    script.sent.clear()
    delivered: list[tuple[Wait, Observation]] = script.run(PollRound(ops_for(state_with()), state, waits, now).run())
    return delivered


def paths(script: Script) -> list[str]:
    return [c.url.removeprefix("https://rest.example") for c in script.sent]


def test_a_round_where_every_wait_fits_asks_jobs_state_once_and_accounting_only_for_the_end():
    script = Script(
        {STATES: [states(("7", "RUNNING"), ("8", "COMPLETED"))], ACCOUNTING: [jobs(record(8, "FAILED", code=4))]}
    )
    state, running, ended = PollState(), wait(7), wait(8)
    delivered = run(script, state, [running, ended])
    assert paths(script) == [STATES, ACCOUNTING]
    assert script.sent[1].params == {"step": ["8"], "skip_steps": "true", "users": "alice"}
    (to_running, progress), (to_ended, end) = delivered
    assert (to_running, to_ended) == (running, ended)
    assert progress.final is None and [j.state.value for j in progress.live or []] == ["RUNNING"]
    assert [(j.job_id, j.exit_code) for j in end.final or []] == [(8, 4)]
    # Every plain wait was named: no turns, and a later window reaches back only to this round.
    assert (state.taking_turns, state.ends_asked_at) == (False, NOW)
    assert (running.states_asked_at, running.last_said) == (NOW, (JobStatus(7, None, JobState.RUNNING),))
    # The same word next round is no news: nothing delivered, nothing asked of accounting.
    script.replies[STATES] = [states(("7", "RUNNING"))]
    assert run(script, state, [running], NOW + 10) == [] and paths(script) == [STATES]


@pytest.fixture
def three_ids_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dialects, "ID_QUERY_CHARS", 60)


@pytest.mark.usefixtures("three_ids_per_request")
def test_waits_beyond_one_request_take_turns_and_a_window_reaching_three_seconds_back_brings_their_ends():
    window = jobs(record(105, "COMPLETED"))  # ended; not on jobs/state this round
    script = Script({STATES: [states(*((str(i), "RUNNING") for i in (101, 102, 103)))], ACCOUNTING: [window]})
    state, waits = PollState(), [wait(i) for i in range(101, 107)]
    delivered = run(script, state, waits)
    assert paths(script) == [STATES, ACCOUNTING]
    assert script.sent[0].params == {"job_id": ["101", "102", "103"]}
    window_asked = script.sent[1].params or {}
    assert (window_asked["start_time"], window_asked["end_time"]) == (
        str(int(NOW - ENDS_OVERLAP)),
        str(int(NOW + ENDS_AHEAD)),
    )
    assert [(w.spec.job_id, bool(seen.final)) for w, seen in delivered] == [
        (101, False),
        (102, False),
        (103, False),
        (105, True),
    ]
    assert state.taking_turns and state.ends_asked_at == NOW
    # The next round: the least recently asked, and a window from this one's edge, 3 s back.
    script.replies[STATES] = [states(*((str(i), "RUNNING") for i in (104, 105, 106)))]
    script.replies[ACCOUNTING] = [jobs()]
    run(script, state, waits, NOW + 10)
    assert script.sent[0].params == {"job_id": ["104", "105", "106"]}
    assert (script.sent[1].params or {})["start_time"] == str(int(NOW - ENDS_OVERLAP))


def failing_half_way() -> Script:
    """Six waits, three a turn: jobs/state says 101 ended and the window brings 105's end; then
    accounting by id (for 101) fails the round."""
    window = jobs(record(105, "COMPLETED"))
    replies = [lambda sent: window if "state" in (sent[-1].params or {}) else slurm_error(500, 9999)]
    states_now = states(("101", "FAILED"), ("102", "RUNNING"), ("103", "RUNNING"))
    return Script({STATES: [states_now], ACCOUNTING: replies})


@pytest.mark.usefixtures("three_ids_per_request")
def test_a_round_failing_half_way_keeps_what_it_learnt_and_leaves_its_batch_the_turn():
    script = failing_half_way()
    state, waits = PollState(), [wait(i) for i in range(101, 107)]
    poll_round = PollRound(ops_for(state_with()), state, waits, NOW)
    with pytest.raises(SlurmApiError):
        script.run(poll_round.run())
    assert [(w.spec.job_id, bool(seen.final), bool(seen.live)) for w, seen in poll_round.deliveries] == [
        (102, False, True),
        (103, False, True),
        (105, True, False),
    ]
    assert [w.states_asked_at for w in waits[:3]] == [0.0, 0.0, 0.0]  # their turn again next round


@pytest.mark.usefixtures("three_ids_per_request")
def test_the_poller_hands_over_what_a_failed_round_learnt_before_telling_every_trigger_of_the_failure():
    script = failing_half_way()
    subscribers = [subscriber(i, submitted_after=SUBMITTED) for i in range(101, 107)]
    poller = JobPoller(ScriptedClient(script), "key")  # type: ignore[arg-type]
    with pytest.raises(SlurmApiError):
        asyncio.run(poller._round(subscribers))
    (ended,) = received(subscribers[4])
    assert [j.job_id for j in ended.final or []] == [105]


def test_where_jobs_state_is_missing_every_wait_is_read_from_accounting_by_id_from_then_on():
    listing = "/slurmdb/v0.0.41/jobs"
    script = Script({listing: [jobs(record(7, "RUNNING"), record(8, "COMPLETED"))]})
    state, waits = PollState(), [wait(7), wait(8)]
    for _ in range(2):
        script.sent.clear()
        poll_round = PollRound(ops_for(state_with("v0.0.41")), state, waits, NOW)
        delivered = script.run(poll_round.run())
        assert [c.params for c in script.sent] == [{"step": ["7", "8"], "skip_steps": "true", "users": "alice"}]
        assert [(w.spec.job_id, [j.state.value for j in seen.final or []]) for w, seen in delivered] == [
            (7, ["RUNNING"]),
            (8, ["COMPLETED"]),
        ]
    assert state.statuses_unavailable and not state.taking_turns


def test_an_array_is_asked_alone_and_read_from_accounting_once_no_task_lives():
    tasks = {"100": [("101_0", "COMPLETED"), ("100_1", "RUNNING")]}
    script = Script(
        {
            STATES: [lambda sent: states(*tasks[",".join((sent[-1].params or {})["job_id"])])],
            ACCOUNTING: [jobs({**record(101, "COMPLETED"), "array": {"job_id": 100, "task_id": 0}})],
        }
    )
    state, array = PollState(), wait(100, expected_tasks=2)
    ((_, progress),) = run(script, state, [array])
    assert paths(script) == [STATES] and progress.final is None
    tasks["100"] = [("100_1", "FAILED")]  # task 0 purged, task 1 ended: the array's end
    ((_, end),) = run(script, state, [array], NOW + 10)
    assert paths(script) == [STATES, ACCOUNTING] and [j.job_id for j in end.final or []] == [101]


def status(state: JobState, *flags: str) -> JobStatus:
    return JobStatus(7, None, state, frozenset(flags))


def test_ended_ending_and_ask_accounting_now_are_one_rule_for_records_and_jobs_state_alike():
    completing = status(JobState.COMPLETED, "COMPLETING")
    only_the_flag = status(JobState.RUNNING, "COMPLETING")  # the string form may carry only the flag
    assert [has_ended(s) for s in (completing, only_the_flag, status(JobState.FAILED))] == [False, False, True]
    assert [ended_or_ending(s) for s in (completing, only_the_flag, status(JobState.RUNNING))] == [True, True, False]
    assert accounting_due([], ending_will_do=False)  # slurmctld holds none of it
    assert accounting_due([completing, status(JobState.FAILED)], ending_will_do=True)
    assert not accounting_due([completing, status(JobState.FAILED)], ending_will_do=False)
    assert not accounting_due([status(JobState.FAILED), status(JobState.PENDING)], ending_will_do=True)


@pytest.fixture(autouse=True)
def no_progress_details(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count the requests that decide the waits; the reads of a started or pending job's own
    record for its progress line (at most DETAIL_READS a round) are tested in test_progress_details.py."""
    monkeypatch.setattr(poll_round_rules, "DETAIL_READS", 0)
