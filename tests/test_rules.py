"""Rules users rely on, each asserted so that a wrong rule fails a test (issue 18's missed mutants).

Each test names the behaviour; the comment says what a user would see if the rule broke.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_maxwell.auth.cache import TokenCache
from airflow_provider_maxwell.auth.tokens import MAX_RENEW_MARGIN, MintedToken
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import (
    MaxwellConfigError,
    SlurmAccountingUnavailable,
    SlurmJobNotFound,
    SlurmTransientError,
)
from airflow_provider_maxwell.outcome import judge
from airflow_provider_maxwell.slurm.dialects import DIALECTS
from airflow_provider_maxwell.slurm.job import state_and_flags
from airflow_provider_maxwell.slurm.states import TERMINAL_STATES, JobState
from airflow_provider_maxwell.slurm.submit import build_submit_body, minutes
from airflow_provider_maxwell.watch import JobWatch, Observation, WatchSpec

from .factories import slurm_job

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- states


@pytest.mark.parametrize("state", list(JobState))
def test_exactly_the_final_states_are_terminal(state):
    final = {
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
    }
    assert state.is_terminal is (state.value in final)  # a wait must end on OUT_OF_MEMORY, never on PENDING
    assert (state in TERMINAL_STATES) is (state.value in final)


@pytest.mark.parametrize(
    ("words", "state", "flags"),
    [
        ("REQUEUED", JobState.PENDING, {"REQUEUED"}),  # requeued jobs wait again: not RUNNING
        ("COMPLETING", JobState.RUNNING, {"COMPLETING"}),
        ("CONFIGURING", JobState.RUNNING, {"CONFIGURING"}),
        (["RUNNING", "COMPLETING"], JobState.RUNNING, {"COMPLETING"}),
        (["PENDING", "REQUEUED"], JobState.PENDING, {"REQUEUED"}),
        ("no such state", JobState.RUNNING, {"NO SUCH STATE"}),
        ([], JobState.UNKNOWN, set()),
    ],
)
def test_states_shown_only_as_flags(words, state, flags):
    assert state_and_flags(words) == (state, frozenset(flags))


def test_a_completing_job_is_not_over_until_the_flag_clears():
    assert not replace(slurm_job(JobState.COMPLETED), flags=frozenset({"COMPLETING"})).is_terminal
    assert replace(slurm_job(JobState.COMPLETED), flags=frozenset({"REQUEUED"})).is_terminal


# ---------------------------------------------------------------- outcome


def test_retryable_only_when_every_failure_was_the_clusters():
    # One task failed by itself and one lost to a node: the failure is the job's, but not a
    # cancellation, so Airflow's retries still apply; the message must not blame the cluster.
    mixed = [slurm_job(JobState.NODE_FAIL, None, task=0), slurm_job(JobState.FAILED, 2, task=1)]
    outcome = judge(7, mixed)
    assert outcome.retryable and "ended by the cluster" not in outcome.message
    # A cancellation beside a node failure: a person decided, unless the cluster ended all of it.
    cancelled = [slurm_job(JobState.NODE_FAIL, None, task=0), slurm_job(JobState.CANCELLED, None, task=1)]
    outcome = judge(7, cancelled)
    assert not outcome.retryable and "cancelled outside Airflow: not retried" in outcome.message
    all_cluster = [slurm_job(JobState.NODE_FAIL, None, task=0), slurm_job(JobState.PREEMPTED, None, task=1)]
    outcome = judge(7, all_cluster)
    assert outcome.retryable and "ended by the cluster" in outcome.message


def test_a_job_cancelled_outside_airflow_is_not_retried():
    outcome = judge(7, [slurm_job(JobState.CANCELLED, None)])
    assert not outcome.retryable and outcome.message.endswith("(cancelled outside Airflow: not retried)")


# ---------------------------------------------------------------- submit bodies


@pytest.mark.parametrize(
    ("version", "nodes", "sent"),
    [
        ("v0.0.38", 2, [2, 2]),
        ("v0.0.38", "2-4", [2, 4]),
        ("v0.0.40", 2, "2"),
        ("v0.0.45", "2-4", "2-4"),
        ("v0.0.45", " 3 - 5 ", "3-5"),
    ],
)
def test_node_counts_and_ranges_in_each_versions_shape(version, nodes, sent):
    body = build_submit_body(DIALECTS[version], "#!/bin/bash\n", {"nodes": nodes}, default_cwd="/home/a")
    assert body["job"]["nodes"] == sent


@pytest.mark.parametrize("nodes", [0, -1, "4-2", "two", True, "2-"])
def test_bad_node_counts_are_refused(nodes):
    with pytest.raises(MaxwellConfigError, match="nodes must be"):
        build_submit_body(DIALECTS["v0.0.45"], "#!/bin/bash\n", {"nodes": nodes}, default_cwd="/home/a")


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(1, 1), (0.5, 1), (90.01, 91), (timedelta(seconds=61), 2), (timedelta(hours=2), 120)],
)
def test_time_limits_round_up_to_whole_minutes(limit, expected):
    assert minutes("time_limit", limit) == expected  # rounding down would kill jobs before their time


# ---------------------------------------------------------------- tokens


def test_renewal_is_due_a_tenth_of_the_life_before_expiry_at_most_five_minutes():
    short = MintedToken(value="s", issued_at=1000, expires_at=2000)
    assert short.renew_at == 1900
    assert short.is_fresh(now=1899.9) and not short.is_fresh(now=1900) and not short.is_fresh(now=1999)
    day = MintedToken(value="d", issued_at=0, expires_at=86400)
    assert day.renew_at == 86400 - MAX_RENEW_MARGIN == 86100


def test_the_cache_renews_a_token_due_for_renewal_before_it_expires(monkeypatch):
    import time

    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    cache = TokenCache()
    first = cache.get(lambda: MintedToken(value="a", issued_at=1000, expires_at=2000))
    clock[0] = 1899.0
    assert cache.get(lambda: MintedToken(value="b", issued_at=1899, expires_at=2899)) is first
    clock[0] = 1901.0  # 99 s before expiry: due, though still valid
    assert cache.get(lambda: MintedToken(value="c", issued_at=1901, expires_at=2901)).value == "c"
    assert cache.mints == 2


# ---------------------------------------------------------------- connection


def conn(**extra: object) -> MaxwellConnectionConfig:
    return MaxwellConnectionConfig.from_connection("c", host="https://h/sapi", login="a", password="p", extra=extra)


@pytest.mark.parametrize(
    ("given", "verify"),
    [
        ("true", True),
        ("True", True),
        ("yes", True),
        ("1", True),
        (True, True),
        ("false", False),
        ("no", False),
        ("0", False),
        (False, False),
    ],
)
def test_tls_verification_words(given, verify):
    assert conn(verify=given).verify is verify


# ---------------------------------------------------------------- waiting


def test_a_job_missing_everywhere_is_declared_gone_only_after_vanish_after():
    spec = WatchSpec(job_id=7, user="alice", vanish_after=120)
    watch = JobWatch(spec, url="https://h/sapi")
    nothing = Observation(live=None, final=[])
    watch.step(nothing, 1000.0)
    watch.step(nothing, 1120.0)  # exactly the limit: still waiting
    with pytest.raises(SlurmJobNotFound):
        watch.step(nothing, 1120.5)


def test_a_record_resets_the_vanish_clock():
    watch = JobWatch(WatchSpec(job_id=7, user="alice", vanish_after=120))
    nothing = Observation(live=None, final=[])
    watch.step(nothing, 1000.0)
    watch.step(Observation(live=[slurm_job(JobState.RUNNING, None, source="slurmctld")]), 1100.0)
    watch.step(nothing, 1200.0)
    watch.step(nothing, 1320.0)  # 120 s after it was last seen: not yet gone
    with pytest.raises(SlurmJobNotFound):
        watch.step(nothing, 1321.0)


def test_accounting_down_is_waited_out_for_the_tolerance_then_reported():
    down = SlurmAccountingUnavailable("slurmdbd down", status=502, url="u")
    watch = JobWatch(WatchSpec(job_id=7, user="alice", accounting_tolerance=600))
    notes, final = watch.step(Observation(error=down), 1000.0)
    assert final is None and "accounting unavailable, waiting" in notes[0]
    watch.step(Observation(error=down), 1600.0)  # at the limit: still waiting
    with pytest.raises(SlurmAccountingUnavailable):
        watch.step(Observation(error=down), 1600.5)


def test_accounting_back_restarts_its_tolerance():
    down = SlurmAccountingUnavailable("slurmdbd down", status=502, url="u")
    watch = JobWatch(WatchSpec(job_id=7, user="alice", accounting_tolerance=600))
    watch.step(Observation(error=down), 1000.0)
    notes, _ = watch.step(Observation(live=None, final=[slurm_job(JobState.RUNNING, None)]), 1500.0)
    assert "accounting is back" in notes[0]
    watch.step(Observation(error=down), 2000.0)
    watch.step(Observation(error=down), 2600.0)  # 600 s after the second outage began


def test_an_unreachable_rest_api_is_waited_for_without_limit():
    watch = JobWatch(WatchSpec(job_id=7, user="alice"))
    unreachable = SlurmTransientError("connection refused", status=None, url="u")
    for now in (0.0, 1e6, 2e6):
        notes, final = watch.step(Observation(error=unreachable), now)
        assert final is None and "unreachable, will retry" in notes[0]


def test_the_pollers_backoff_resets_after_a_good_round(monkeypatch):
    from airflow_provider_maxwell.triggers import poller as poller_module

    monkeypatch.setattr(random, "uniform", lambda low, high: 1.0)

    class Client:
        state = None

    poller = poller_module.JobPoller(Client(), "key")  # type: ignore[arg-type]
    poller.subscribers = {poller_module.Subscriber(JobWatch(WatchSpec(job_id=7, user="a", poll_interval=10)))}
    rounds = iter(
        [SlurmTransientError("down", status=503, url="u"), SlurmTransientError("down", status=503, url="u"), None, None]
    )
    pauses: list[float] = []

    async def round_(subscribers: object) -> None:
        outcome = next(rounds)
        if outcome is not None:
            raise outcome

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 4:
            poller.subscribers.clear()

    monkeypatch.setattr(poller, "_round", round_)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    asyncio.run(poller._loop())
    assert pauses == [20.0, 40.0, 10.0, 10.0]  # doubled per failed round, back to the interval after a good one
