"""The ended-job events' protocol (job_events.py) by hand: filters, the cursor, and the step over
windows of ended jobs, against a simulated accounting that writes ends late. Properties: whatever the
round times, the late writes and the restarts from a saved cursor, every matching job that ended after
the start fires exactly once and nothing else fires."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.job_events import (
    END_STATES,
    REACH_BACK,
    Cursor,
    EndedWindow,
    JobFilter,
    covers,
    next_since,
    read_window,
    step,
)
from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.slurm.states import JobState
from tests.factories import slurm_job
from tests.paths import PROJECT
from tests.unit.client.test_protocol_steps import Script, jobs, ops_for, record, state_with

START = 1_700_000_000  # the watcher's first start (epoch seconds)
PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ended(
    job_id: int, end: float, name: str = "beamtime.scan", state: JobState = JobState.COMPLETED, **fields
) -> SlurmJob:
    return slurm_job(state, job_id=job_id, name=name, end_time=datetime.fromtimestamp(end, timezone.utc), **fields)


def window(since: float, read_at: float, *records: SlurmJob) -> EndedWindow:
    return EndedWindow(since, read_at, records)


# ------------------------------------------------------------------ the filter


def test_the_filter_fires_on_every_end_state_unless_told_and_matches_each_condition():
    every = JobFilter.of()
    assert all(every.matches(ended(1, START, state=JobState(s))) for s in END_STATES)
    beamtime = JobFilter.of(name="beamtime.*", states=["completed"], account="p11", partition="maxwell")
    job = ended(1, START, account="p11", partition="allcpu,maxwell")
    assert beamtime.matches(job)
    assert not beamtime.matches(replace(job, name="calibration"))
    assert not beamtime.matches(replace(job, name="Beamtime.scan")), "the glob is case-sensitive, as Slurm's names are"
    assert not beamtime.matches(replace(job, state=JobState.FAILED))
    assert not beamtime.matches(replace(job, account="p21"))
    assert not beamtime.matches(replace(job, partition="allcpu"))
    assert JobFilter.of(users=["bob", "alice"]).matches(job) and not JobFilter.of(users="bob").matches(job)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"states": ["RUNNING"]}, "states must name end states"),
        ({"states": []}, "states must name end states"),
        ({"users": ["alice,bob"]}, "users must be a list of Slurm user names"),
        ({"users": [""]}, "users must be a list"),
        ({"name": ""}, "name must be a non-empty text"),
        ({"partition": 3}, "partition must be a non-empty text"),
    ],
)
def test_a_wrong_filter_argument_is_refused_naming_it(arguments, named):
    with pytest.raises(MaxwellConfigError, match=named):
        JobFilter.of(**arguments)


# ------------------------------------------------------------------ the cursor


def test_the_cursor_is_a_small_json_dict_that_reads_back_and_anything_else_reads_as_none():
    cursor = Cursor(START, {12: START + 3, 9: START})
    saved = json.loads(json.dumps(cursor.to_json()))
    assert saved == {"since": START, "fired": {"9": START, "12": START + 3}}
    assert Cursor.from_json(saved) == cursor
    for junk in (None, "x", {"since": "1"}, {"since": 1, "fired": []}, {"since": 1, "fired": {"a": 1}}):
        assert Cursor.from_json(junk) is None


def test_a_first_start_fires_nothing_that_ended_before_it_unless_told_to_look_back():
    history = ended(1, START - 5)
    fresh = ended(2, START + 1)
    read = window(START - 100, START + 2, history, fresh)
    assert [j.job_id for j in step(Cursor.first(START), read, JobFilter()).fires] == [2]
    assert [j.job_id for j in step(Cursor.first(START, look_back=60), read, JobFilter()).fires] == [1, 2]


def test_jobs_fire_in_end_time_order_and_a_late_written_one_fires_once_in_the_overlap():
    cursor = Cursor.first(START)
    first = step(cursor, window(START, START + 10, ended(3, START + 8), ended(2, START + 4)), JobFilter())
    assert [j.job_id for j in first.fires] == [2, 3]
    # Accounting wrote job 4's end (at START + 7) after the first read: the next window reaches back over it.
    since, _ = first.cursor.window(START + 20)
    assert since <= START + 7
    second = step(
        first.cursor,
        window(since, START + 20, ended(2, START + 4), ended(3, START + 8), ended(4, START + 7)),
        JobFilter(),
    )
    assert [j.job_id for j in second.fires] == [4]
    assert second.cursor.since == START + 20 - REACH_BACK
    assert set(second.cursor.fired) == {4, 3}, "ids that ended before the reach are dropped: the cursor stays small"


def test_array_tasks_running_jobs_and_jobs_the_filter_refuses_do_not_fire():
    read = window(
        START,
        START + 10,
        ended(1, START + 1, task=0),
        replace(ended(2, START + 1), state=JobState.RUNNING, end_time=None),
        ended(3, START + 1, name="calibration"),
        ended(4, START + 1),
    )
    assert [j.job_id for j in step(Cursor.first(START), read, JobFilter(name="beamtime.*")).fires] == [4]


def test_a_shared_window_that_does_not_reach_back_to_a_resumed_cursor_is_not_stepped_over():
    cursor = Cursor(START, {})
    shared = window(next_since(START + 500), START + 520)
    assert not covers(shared, cursor)
    with pytest.raises(ValueError, match="read from the cursor"):
        step(cursor, shared, JobFilter())
    after = step(Cursor(START + 400, {}), window(START + 400, START + 500), JobFilter()).cursor
    assert covers(shared, after), "the next shared window starts where the cursor stepped over the last one"


def test_the_window_is_read_for_the_watchers_users_by_end_time():
    script = Script({"/slurmdb/v0.0.45/jobs": [jobs(record(5, "COMPLETED"))]})
    read = script.run(read_window(ops_for(state_with()), START, START + 10, ["bob", "alice"]))
    assert [j.job_id for j in read.jobs] == [5] and read.since == START and read.read_at == START + 10
    params = dict(script.sent[-1].params or {})
    assert params["users"] == "bob,alice"
    assert "start_time" in params and "end_time" in params


def test_where_accounting_cannot_filter_by_user_the_window_keeps_only_the_users_jobs():
    """22.05 (v0.0.38) answers "Unknown Query field" to users= and to a list of states."""
    script = Script({"/slurmdb/v0.0.38/jobs": [jobs(record(5, "COMPLETED"), record(6, "COMPLETED", user="bob"))]})
    read = script.run(read_window(ops_for(state_with("v0.0.38")), START, START + 10))
    assert [j.job_id for j in read.jobs] == [5], "the connection's login's jobs only"
    assert set(script.sent[-1].params or {}) == {"start_time", "end_time"}


# ------------------------------------------------------------------ properties over simulated accounting


@dataclass(frozen=True)
class Ended:
    job_id: int
    end: int  # when it ended (Slurm's clock)
    written: int  # when accounting shows it: at most REACH_BACK after its end
    matching: bool


ends = st.lists(st.tuples(st.integers(-40, 400), st.integers(0, int(REACH_BACK)), st.booleans()), max_size=40).map(
    lambda rows: [Ended(i + 1, START + e, START + e + d, m) for i, (e, d, m) in enumerate(rows)]
)
rounds = st.lists(st.tuples(st.integers(1, 60), st.booleans(), st.integers(0, 30)), min_size=1, max_size=30)


def accounting(jobs_ended: list[Ended], since: float, until: float, now: int) -> tuple[SlurmJob, ...]:
    """What accounting answers at `now` for ends between `since` and `until`, in no useful order."""
    shown = [j for j in jobs_ended if j.written <= now and since <= j.end <= until]
    return tuple(ended(j.job_id, j.end, name="beamtime.x" if j.matching else "other") for j in reversed(shown))


@PROPERTIES
@given(jobs_ended=ends, schedule=rounds, look_back=st.sampled_from([0, 30]))
def test_every_matching_job_fires_exactly_once_whatever_the_rounds_late_writes_and_restarts(
    jobs_ended, schedule, look_back
):
    """Each round reads the window the cursor asks for (some reaching further back than asked); after any
    event the watcher may restart from the cursor it saved after that event."""
    beamtime = JobFilter(name="beamtime.*")
    saved = Cursor.first(START, look_back).to_json()
    fired: list[int] = []
    now = START
    for pause, restart, wider in schedule:
        now += pause
        cursor = Cursor.from_json(saved)
        assert cursor is not None
        since, until = cursor.window(now)
        since -= wider  # a window may reach back further than asked (a shared stream's, a gap's)
        result = step(cursor, EndedWindow(since, now, accounting(jobs_ended, since, until, now)), beamtime)
        ends_fired = [j.end_time for j in result.fires]
        assert ends_fired == sorted(ends_fired)
        for job in result.fires:
            fired.append(job.job_id)
            cursor = cursor.with_fired(job)
            saved = json.loads(json.dumps(cursor.to_json()))  # what a restart finds
            if restart:
                break  # the watcher stops after this event: the next round starts from what was saved
        else:
            saved = result.cursor.to_json()
    # After the last round, a final read long after everything was written: nothing may be left.
    cursor = Cursor.from_json(saved)
    assert cursor is not None
    last = START + 2000
    since, until = cursor.window(last)
    fired += [
        j.job_id
        for j in step(cursor, EndedWindow(since, last, accounting(jobs_ended, since, until, last)), beamtime).fires
    ]
    expected = sorted(j.job_id for j in jobs_ended if j.matching and j.end >= START - look_back)
    assert sorted(fired) == expected, "each matching job that ended after the start fires exactly once"


@PROPERTIES
@given(jobs_ended=ends, cut=st.integers(0, 500))
def test_a_watcher_restarted_from_its_saved_cursor_fires_what_one_that_ran_on_would(jobs_ended, cut):
    """Two rounds (at START + cut and long after) from one cursor give the same events as a single read
    long after, whichever jobs fell into which round."""
    beamtime = JobFilter(name="beamtime.*")
    late = START + 2000

    def read(cursor: Cursor, now: int) -> EndedWindow:
        since, until = cursor.window(now)
        return EndedWindow(since, now, accounting(jobs_ended, since, until, now))

    once = step(Cursor.first(START), read(Cursor.first(START), late), beamtime).fires
    first = step(Cursor.first(START), read(Cursor.first(START), START + cut), beamtime)
    resumed = Cursor.from_json(json.loads(json.dumps(first.cursor.to_json())))
    assert resumed is not None
    second = step(resumed, read(resumed, late), beamtime).fires
    assert sorted(j.job_id for j in first.fires + second) == sorted(j.job_id for j in once)


def test_the_docs_state_the_reach_back_the_code_uses():
    page = (PROJECT / "docs" / "job-events.md").read_text()
    assert f"reaching {REACH_BACK:g} s back over the last read" in page
