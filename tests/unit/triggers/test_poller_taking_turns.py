"""Many plain waits in the shared poller (issue 14, N = 10,000): beyond what one jobs/state request can
name (~375 ids under an 8 KB request line), the waits take turns on jobs/state, least recently asked
first, and their ends come from one accounting window a round (the user's jobs that ended since the
last window), so a round is at most three requests whatever N is."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_maxwell import poll_round
from airflow_provider_maxwell.effects import HttpCall, HttpResult
from airflow_provider_maxwell.exceptions import SlurmApiError
from airflow_provider_maxwell.poll_round import ENDS_AHEAD, ENDS_OVERLAP
from airflow_provider_maxwell.slurm import dialects
from airflow_provider_maxwell.triggers import poller as poller_module
from airflow_provider_maxwell.triggers.poller import JobPoller, Subscriber
from tests.unit.client.test_protocol_steps import Script, jobs, record, slurm_error
from tests.unit.triggers.test_poller_rounds import ACCOUNTING, STATES, ScriptedClient, received, states, subscriber

SUBMITTED = 1_700_000_000  # record()'s submit time


class Cluster:
    """Answers jobs/state with every asked id RUNNING unless told otherwise, the window and accounting
    by id from what ended; records which requests each round sent."""

    def __init__(self) -> None:
        self.ended: dict[int, dict[str, Any]] = {}  # job id -> its accounting record
        self.in_window: set[int] = set()  # the ended jobs the next window answers
        self.states: dict[int, str] = {}
        self.failing: set[str] = set()  # requests answered with a Slurm error: "window", "by id"
        self.blocked: set[str] = set()  # jobs/state queries (asked ids joined with ",") a proxy refuses
        self.windows: list[tuple[int, int]] = []  # (start_time, end_time) of each window asked
        self.script = Script({STATES: [self.jobs_state], ACCOUNTING: [self.accounting]})

    def jobs_state(self, sent: list[HttpCall]) -> HttpResult:
        asked = [int(i) for i in (sent[-1].params or {})["job_id"]]
        if ",".join(map(str, asked)) in self.blocked:
            return HttpResult(403, b"<html>Forbidden</html>", {"content-type": "text/html"})
        return states(*((str(i), self.states.get(i, "RUNNING")) for i in asked))

    def accounting(self, sent: list[HttpCall]) -> HttpResult:
        params = sent[-1].params or {}
        if "state" in params:  # the window of ended jobs
            self.windows.append((int(params["start_time"]), int(params["end_time"])))
            if "window" in self.failing:
                return slurm_error(500, 9999)
            return jobs(*(self.ended[i] for i in sorted(self.in_window)))
        if "by id" in self.failing:
            return slurm_error(500, 9999)
        return jobs(*(self.ended.get(int(i)) or record(int(i), "RUNNING") for i in params["step"]))

    def end(self, job_id: int, code: int = 0, *, in_window: bool = True) -> None:
        self.ended[job_id] = record(job_id, "COMPLETED" if code == 0 else "FAILED", code=code)
        self.states[job_id] = "COMPLETED" if code == 0 else "FAILED"
        if in_window:
            self.in_window.add(job_id)

    def round(self, poller: JobPoller, subscribers: list[Subscriber]) -> list[dict[str, Any]]:
        self.script.sent.clear()
        try:
            asyncio.run(poller._round(subscribers))
        finally:
            self.in_window.clear()  # an end is in the window of the round after it, not in every later one
        return [{"path": c.url.rsplit("/v0.0.45/", 1)[-1], **(c.params or {})} for c in self.script.sent]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [SUBMITTED + 1_000.0]
    monkeypatch.setattr(poller_module.time, "time", lambda: now[0])
    return now


@pytest.fixture
def three_ids_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # 60 characters of query, less the room for the longest id (18): three "job_id=10N&" per request.
    monkeypatch.setattr(dialects, "ID_QUERY_CHARS", 60)


def waits(*job_ids: int) -> list[Subscriber]:
    return [subscriber(i, submitted_after=SUBMITTED) for i in job_ids]


@pytest.mark.usefixtures("three_ids_per_request")
def test_waits_beyond_one_request_take_turns_and_the_window_brings_every_end(clock):
    cluster = Cluster()
    subscribers = waits(101, 102, 103, 104, 105, 106)
    poller = JobPoller(ScriptedClient(cluster.script), "key")  # type: ignore[arg-type]
    cluster.end(105, code=3)  # ended; not on jobs/state this round, but in the window
    first = cluster.round(poller, subscribers)
    assert [r["path"] for r in first] == ["jobs/state", "jobs"]
    assert first[0]["job_id"] == ["101", "102", "103"]
    assert first[1]["start_time"] == str(int(clock[0] - ENDS_OVERLAP))
    assert first[1]["end_time"] == str(int(clock[0] + ENDS_AHEAD))
    assert sorted(first[1]["state"]) == sorted(
        [
            "BOOT_FAIL",
            "CANCELLED",
            "COMPLETED",
            "DEADLINE",
            "FAILED",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "PREEMPTED",
            "TIMEOUT",
        ]
    )
    ((seen,),) = [received(s) for s in subscribers if s.spec.job_id == 105]
    assert seen.final is not None and [(j.job_id, j.exit_code) for j in seen.final] == [(105, 3)]
    assert [len(received(s)) for s in subscribers if s.spec.job_id in (104, 106)] == [0, 0]  # not their turn
    asked_first = clock[0]
    clock[0] += 10
    second = cluster.round(poller, subscribers)
    assert second[0]["job_id"] == ["104", "105", "106"]  # the least recently asked
    assert second[1]["start_time"] == str(int(asked_first - ENDS_OVERLAP))  # over the last window's edge
    clock[0] += 10
    assert cluster.round(poller, subscribers)[0]["job_id"] == ["101", "102", "103"]


@pytest.mark.usefixtures("three_ids_per_request")
def test_an_end_the_window_missed_is_found_on_the_jobs_turn(clock):
    # Accounting wrote the end later than the window reached back: slurmctld's word on its turn
    # sends it to accounting by id, as when all waits fit.
    cluster = Cluster()
    subscribers = waits(101, 102, 103, 104)
    poller = JobPoller(ScriptedClient(cluster.script), "key")  # type: ignore[arg-type]
    cluster.round(poller, subscribers)
    cluster.end(104, code=2, in_window=False)
    clock[0] += 10
    asked = cluster.round(poller, subscribers)
    assert [r["path"] for r in asked] == ["jobs/state", "jobs", "jobs"]
    assert asked[2]["step"] == ["104"]
    late = subscribers[3]
    assert [(j.job_id, j.exit_code) for j in received(late)[-1].final or []] == [(104, 2)]


@pytest.mark.usefixtures("three_ids_per_request")
def test_a_window_record_of_another_job_under_the_id_or_of_an_array_task_is_not_taken(clock):
    cluster = Cluster()
    subscribers = waits(101, 102, 103, 104, 105)
    cluster.ended[104] = record(104, "COMPLETED", submit=SUBMITTED - 3_600)  # the id's previous job (a reset)
    # A sensor waits on 105 as one job, but 105 is an array whose last task (3) kept the array's id.
    cluster.ended[105] = {**record(105, "COMPLETED"), "array": {"job_id": 105, "task_id": 3}}
    cluster.in_window = {104, 105}
    poller = JobPoller(ScriptedClient(cluster.script), "key")  # type: ignore[arg-type]
    cluster.round(poller, subscribers)
    assert [received(s) for s in subscribers[3:]] == [[], []]


def test_once_every_wait_fits_one_request_there_is_no_window_and_the_next_reaches_back_to_the_last_full_round(
    clock, monkeypatch
):
    monkeypatch.setattr(dialects, "ID_QUERY_CHARS", 60)
    cluster = Cluster()
    many, few = waits(101, 102, 103, 104), waits(101, 102)
    poller = JobPoller(ScriptedClient(cluster.script), "key")  # type: ignore[arg-type]
    cluster.round(poller, many)
    clock[0] += 10
    assert [r["path"] for r in cluster.round(poller, few)] == ["jobs/state"]
    all_named_at = clock[0]
    clock[0] += 100
    again = cluster.round(poller, many)
    # Ends since the last round that named every wait, not since the first window (110 s ago), nor
    # only the last 3 s (an end between the two rounds would wait a whole cycle of turns).
    assert again[1]["start_time"] == str(int(all_named_at - ENDS_OVERLAP))


def test_ten_thousand_waits_cost_at_most_three_requests_a_round(clock):
    cluster = Cluster()
    ids = range(2_600_000, 2_610_000)
    subscribers = waits(*ids)
    poller = JobPoller(ScriptedClient(cluster.script), "key")  # type: ignore[arg-type]
    per_round, named, told = [], set(), set()
    for n in range(60):
        for job_id in ids[n * 40 : n * 40 + 40] if n < 30 else ():  # 40 ends an interval, 1 in 10 late for the window
            cluster.end(job_id, in_window=job_id % 10 != 0)
        asked = cluster.round(poller, subscribers)
        per_round.append(len(asked))
        if n < 27:
            named.update(i for r in asked if r["path"] == "jobs/state" for i in r["job_id"])
        for s in list(subscribers):  # a trigger whose job ended leaves, as MaxwellJobTrigger does
            if any(j.is_terminal for o in received(s) for j in o.final or []):
                told.add(s.spec.job_id)
                subscribers.remove(s)
        clock[0] += 10
    assert max(per_round) <= 3, per_round
    first = SUBMITTED + 1_000  # each window reaches 3 s back over the last one's query time
    assert [w[0] for w in cluster.windows] == [int(first + 10 * max(n - 1, 0) - ENDS_OVERLAP) for n in range(60)]
    assert len(named) == 10_000  # every wait had its turn within 27 rounds (~375 a round)
    assert told == set(ids[:1_200])  # every end reached its trigger: by the window, or by id on its next turn


@pytest.mark.usefixtures("three_ids_per_request")
def test_an_end_seen_on_the_jobs_turn_is_asked_of_accounting_every_round_until_it_is_there(clock, monkeypatch):
    # slurmctld says 101 ended on its turn, but accounting has not written the end yet (it lags);
    # the next rounds are not 101's turn, and still ask accounting for it until the record is there.
    monkeypatch.setattr(poll_round, "LOOKUPS_PER_ROUND", 0)
    cluster = Cluster()
    subscribers = waits(101, 102, 103, 104, 105, 106)
    poller = JobPoller(ScriptedClient(cluster.script), "key")  # type: ignore[arg-type]
    cluster.states[101] = "COMPLETED"
    first = cluster.round(poller, subscribers)
    assert first[-1].get("step") == ["101"]  # accounting still says RUNNING
    assert not [j for o in received(subscribers[0]) for j in o.final or [] if j.is_terminal]
    clock[0] += 10
    cluster.end(101, code=5, in_window=False)
    second = cluster.round(poller, subscribers)
    assert second[0]["job_id"] == ["104", "105", "106"] and second[-1].get("step") == ["101"]
    assert [(j.job_id, j.exit_code) for j in received(subscribers[0])[-1].final or []] == [(101, 5)]


@pytest.mark.usefixtures("three_ids_per_request")
def test_a_round_that_fails_leaves_its_batch_the_turn_and_the_next_window_covers_its_time(clock):
    cluster = Cluster()
    subscribers = waits(101, 102, 103, 104, 105, 106)
    poller = JobPoller(ScriptedClient(cluster.script), "key")  # type: ignore[arg-type]
    cluster.round(poller, subscribers)  # 101-103, the first window
    clock[0] += 10
    cluster.failing = {"by id", "window"}
    cluster.end(104, code=1)  # 104's turn: jobs/state says FAILED, accounting by id fails the round
    with pytest.raises(SlurmApiError):
        cluster.round(poller, subscribers)
    failed_at = clock[0]
    clock[0] += 10
    cluster.failing = set()
    again = cluster.round(poller, subscribers)
    assert again[0]["job_id"] == ["104", "105", "106"]  # the failed round did not use up their turn
    assert [w[0] for w in cluster.windows] == [
        int(failed_at - 10 - ENDS_OVERLAP),
        int(failed_at - 10 - ENDS_OVERLAP),  # the failed window
        int(failed_at - 10 - ENDS_OVERLAP),  # reaches back over the failed round's time
    ]
    assert [(j.job_id, j.exit_code) for j in received(subscribers[3])[-1].final or []] == [(104, 1)]


def test_a_window_while_slurmdbd_is_down_is_skipped_and_the_next_covers_its_time(clock, monkeypatch):
    monkeypatch.setattr(dialects, "ID_QUERY_CHARS", 60)
    cluster = Cluster()
    subscribers = waits(101, 102, 103, 104)
    poller = JobPoller(ScriptedClient(cluster.script), "key")  # type: ignore[arg-type]
    down = slurm_error(500, 7000)  # slurmrestd: "Unable to connect to database"
    cluster.round(poller, subscribers)
    first_at = clock[0]
    clock[0] += 10
    window = cluster.accounting
    cluster.script.replies[ACCOUNTING] = [lambda sent: down if "state" in (sent[-1].params or {}) else window(sent)]
    cluster.round(poller, subscribers)  # the window fails (after a token renewal, as every 7000 does)
    assert not [o for s in subscribers for o in received(s) if o.error is not None]  # running jobs fail nothing
    clock[0] += 10
    cluster.script.replies[ACCOUNTING] = [window]
    cluster.round(poller, subscribers)
    assert cluster.windows[-1][0] == int(first_at - ENDS_OVERLAP)


def test_jobs_state_refused_by_a_proxy_for_an_array_ends_turns_and_windows(clock, monkeypatch):
    monkeypatch.setattr(dialects, "ID_QUERY_CHARS", 60)
    cluster = Cluster()
    cluster.blocked = {"200"}
    subscribers = [*waits(101, 102, 103, 104), subscriber(200, expected_tasks=2, submitted_after=SUBMITTED)]
    poller = JobPoller(ScriptedClient(cluster.script), "key")  # type: ignore[arg-type]
    first = cluster.round(poller, subscribers)
    assert poller.poll_state.statuses_unavailable and not poller.poll_state.taking_turns
    assert "state" not in first[-1] and len(first[-1]["step"]) == 5  # every wait by id, no window
    clock[0] += 10
    assert [r["path"] for r in cluster.round(poller, subscribers)] == ["jobs"]


@pytest.fixture(autouse=True)
def no_progress_details(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count the requests that decide the waits; the reads of a started or pending job's own
    record for its progress line (at most DETAIL_READS a round) are tested in test_progress_details.py."""
    monkeypatch.setattr(poll_round, "DETAIL_READS", 0)
