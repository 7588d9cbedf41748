"""Rules users rely on, each asserted so that a wrong rule fails a test (issue 18's missed mutants).

Each test names the behaviour; the comment says what a user would see if the rule broke.
"""

from __future__ import annotations

import asyncio
import json
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
from tests.factories import slurm_job

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
    # doubled per failed round, back to the interval after a good one (rounds here take no time)
    assert pauses == pytest.approx([20.0, 40.0, 10.0, 10.0], abs=0.05)


# ---------------------------------------------------------------- what each version looks like


@pytest.mark.parametrize(
    ("version", "flags"),
    [
        ("v0.0.38", (False, False, False, False, False, False, True)),
        ("v0.0.40", (True, True, True, False, True, True, False)),
        ("v0.0.41", (True, True, True, True, True, True, False)),
        ("v0.0.42", (True, True, True, True, True, True, True)),
        ("v0.0.45", (True, True, True, True, True, True, True)),
    ],
)
def test_each_version_is_described_by_its_flags(version, flags):
    # (numbers as structs, node ranges as strings, environment as a list, script inside the job,
    #  accounting exit codes reliable, accounting filters by user, cancel reports failures)
    d = DIALECTS[version]
    seen = (
        d.numbers_as_structs,
        d.nodes_as_range_string,
        d.environment_as_list,
        d.script_in_job,
        d.accounting_exit_code_reliable,
        d.accounting_filters_by_user,
        d.cancel_reports_failures,
    )
    expected = list(flags)
    expected[3] = version >= "v0.0.40"  # the script moved into `job` in v0.0.40
    assert seen == tuple(expected)
    assert d.version == version


def test_routes_say_what_they_reach():
    from airflow_provider_maxwell.slurm.dialects import Route, Service

    d = DIALECTS["v0.0.44"]
    assert d.job(7) == Route(Service.SLURM, "/slurm/v0.0.44/job/7", "v0.0.44")
    assert d.accounting_jobs == Route(Service.SLURMDB, "/slurmdb/v0.0.44/jobs", "v0.0.44")
    assert d.diag.path == "/slurm/v0.0.44/diag" and d.submit.path == "/slurm/v0.0.44/job/submit"
    assert d.accounting_job(7).ping() is None  # only slurmctld's routes have a ping to ask
    assert d.job(7).ping() == Route(Service.SLURM, "/slurm/v0.0.44/ping", "v0.0.44")


def test_the_name_search_filters_by_user_where_the_version_can():
    assert DIALECTS["v0.0.44"].accounting_search("reduce", "alice") == {"job_name": "reduce", "users": "alice"}
    assert DIALECTS["v0.0.38"].accounting_search("reduce", "alice") == {"job_name": "reduce"}


@pytest.mark.parametrize(
    ("status", "document", "down"),
    [
        (200, {"pings": []}, False),
        (200, {"pings": [{"responding": True}]}, False),
        (200, {"pings": [{"pinged": "UP"}]}, False),
        (200, {"pings": [{"ping": "UP"}]}, False),  # v0.0.38's key
        (200, {"pings": [{"pinged": "DOWN", "responding": False}]}, True),
        (200, {"pings": [{"pinged": "DOWN"}, {"pinged": "UP"}]}, False),  # one controller answers
        (500, {"errors": [{"error_number": -1}]}, True),
        (500, {"errors": [{"error_number": 1007}]}, False),
    ],
)
def test_a_ping_tells_whether_slurmctld_answers(status, document, down):
    from airflow_provider_maxwell.slurm import answers

    assert answers.controller_down(answers.read_answer(status, json.dumps(document))) is down


def test_an_arrays_summary_state_is_completed_only_when_every_task_succeeded():
    done = [slurm_job(JobState.COMPLETED, 0, task=0), slurm_job(JobState.COMPLETED, 0, task=1)]
    assert judge(7, done).summary["state"] == "COMPLETED"
    mixed = [slurm_job(JobState.COMPLETED, 0, task=0), slurm_job(JobState.FAILED, 1, task=1)]
    assert judge(7, mixed).summary["state"] == "FAILED"


def test_a_sensors_first_look_does_not_pin_another_users_job():
    spec = WatchSpec(job_id=7, user="alice")
    theirs = slurm_job(JobState.RUNNING, None, source="slurmctld", user="bob")
    watch = JobWatch(spec)
    assert watch.claim(Observation(live=[theirs])) == theirs
    assert watch.spec == spec  # not narrowed to bob's job
    ours = slurm_job(JobState.RUNNING, None, source="slurmctld")
    watch.claim(Observation(live=[ours]))
    assert watch.spec.submitted_after == ours.submitted and watch.spec.submit_slack == 1.0


def test_the_wait_gives_up_at_its_deadline_and_says_where_the_job_was(monkeypatch):
    from airflow_provider_maxwell import watch as watch_module
    from airflow_provider_maxwell.watch import WatchDeadlineExceeded
    from tests.unit.client.test_protocol_steps import JOB, Script, job_doc, jobs, ops_for, state_with

    clock = [1000.0]
    monkeypatch.setattr(watch_module, "_now", lambda: clock[0])
    script = Script({JOB: [jobs(job_doc(7, "RUNNING"))]})
    spec = WatchSpec(job_id=7, user="alice", poll_interval=10, deadline=1015.0)
    protocol = watch_module.watch(ops_for(state_with()), spec)

    def advance(effect: object) -> object:
        if type(effect).__name__ == "Sleep":
            clock[0] += 10
        return script.answer(effect)

    result: object = None
    with pytest.raises(WatchDeadlineExceeded, match="Slurm job 7 still RUNNING at the deadline"):
        while True:
            result = advance(protocol.send(result))
    assert clock[0] == 1020.0  # looked at 1000 and 1010, gave up at 1020


def test_notes_name_the_job():
    down = SlurmAccountingUnavailable("slurmdbd down", status=502, url="u")
    notes, _ = JobWatch(WatchSpec(job_id=7, user="alice")).step(Observation(error=down), 0.0)
    assert notes == ["Slurm job 7: accounting unavailable, waiting (slurmdbd down: HTTP 502 from u)"]
