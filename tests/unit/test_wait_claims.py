"""Which job a wait on an id given from outside (a sensor's) claims, and how the wait state machine
behaves at its edges (issue 18: each test pins behaviour mutation testing found unasserted)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_maxwell import watch as watch_module
from airflow_provider_maxwell.effects import Sleep
from airflow_provider_maxwell.exceptions import SlurmAccountingUnavailable, SlurmJobNotFound
from airflow_provider_maxwell.slurm.states import JobState
from airflow_provider_maxwell.watch import JobWatch, Observation, WatchDeadlineExceeded, WatchSpec
from tests.factories import T0, slurm_job
from tests.unit.client.test_protocol_steps import (
    ACCOUNTING_JOB,
    JOB,
    Script,
    job_doc,
    jobs,
    ops_for,
    record,
    state_with,
)


def test_a_sensors_wait_is_pinned_to_a_record_that_names_no_user():
    # slurmctld's jobs/state and some accounting records name no user: not refused for it, so the wait
    # is narrowed to that job's submit time like one of the connection user's own.
    watch = JobWatch(WatchSpec(job_id=7, user="alice"))
    anonymous = slurm_job(JobState.RUNNING, None, user="")
    assert watch.claim(Observation(final=[anonymous])) is anonymous
    assert watch.spec.submitted_after == anonymous.submitted


def test_another_users_record_is_claimed_but_never_pins_the_wait():
    watch = JobWatch(WatchSpec(job_id=7, user="alice"))
    bobs = slurm_job(JobState.RUNNING, None, user="bob", submit_time=T0 + timedelta(minutes=5))
    assert watch.claim(Observation(final=[slurm_job(JobState.COMPLETED), bobs])) is bobs
    assert watch.spec.submitted_after is None  # bob's job says nothing about when alice's was submitted


def drive(protocol: Any, script: Script, clock: list[float], step: float) -> Any:
    """Run the worker's wait: answers from `script`, each Sleep moves the injected clock by `step`."""
    result: Any = None
    while True:
        effect = protocol.send(result)
        if isinstance(effect, Sleep):
            clock[0] += step
        result = script.answer(effect)


def test_the_workers_wait_ends_at_its_deadline_saying_what_the_job_was_doing(monkeypatch):
    clock = [1_000.0]
    monkeypatch.setattr(watch_module, "_now", lambda: clock[0])
    script = Script({JOB: [jobs(job_doc(7, "RUNNING", nodes="max-wn01"))]})
    spec = WatchSpec(job_id=7, user="alice", deadline=1_025.0, poll_interval=10.0)
    with pytest.raises(WatchDeadlineExceeded, match=r"^Slurm job 7 still RUNNING on max-wn01 at the deadline$"):
        drive(watch_module.watch(ops_for(state_with()), spec), script, clock, 10.0)
    assert clock[0] == 1_030.0  # the first look past the deadline gives up, before asking Slurm again
    assert script.notes == ["Slurm job 7: RUNNING on max-wn01"]  # noted once, not per poll
    assert script.sleeps == [10.0, 10.0, 10.0] and script.count(JOB) == 3


def test_the_workers_wait_returns_accounting_records_once_the_job_ended(monkeypatch):
    clock = [1_000.0]
    monkeypatch.setattr(watch_module, "_now", lambda: clock[0])
    script = Script({JOB: [jobs(job_doc(7, "RUNNING")), jobs()], ACCOUNTING_JOB: [jobs(record(7, "COMPLETED"))]})
    final = drive_to_end(watch_module.watch(ops_for(state_with()), WatchSpec(job_id=7, user="alice")), script)
    assert [(j.job_id, j.state.value, j.source) for j in final] == [(7, "COMPLETED", "slurmdb")]
    assert script.notes == ["Slurm job 7: RUNNING", "Slurm job 7: COMPLETED (accounting)"]


def drive_to_end(protocol: Any, script: Script) -> Any:
    try:
        drive(protocol, script, [0.0], 0.0)
    except StopIteration as done:
        return done.value


def test_an_arrays_wait_keeps_every_task_when_slurmctld_shows_them_submitted_at_different_times():
    # A requeued task shows a later submit time than its siblings: the wait is narrowed to the oldest
    # task's, so none of the array's own records are taken for someone else's afterwards.
    watch = JobWatch(WatchSpec(job_id=7, user="alice", expected_tasks=2))
    later = T0 + timedelta(minutes=5)
    live = [
        slurm_job(JobState.RUNNING, None, task=1, source="slurmctld", submit_time=later),
        slurm_job(JobState.RUNNING, None, task=0, source="slurmctld"),
    ]
    assert watch.step(Observation(live=live), 0.0) == (["Slurm job 7: 2 RUNNING"], None)
    assert watch.spec.submitted_after == T0.timestamp()
    final = [slurm_job(JobState.COMPLETED, task=0), slurm_job(JobState.COMPLETED, task=1, submit_time=later)]
    notes, done = watch.step(Observation(live=[], final=final), 10.0)
    assert notes == ["Slurm job 7: 2 COMPLETED (accounting)"] and done == final


def test_accounting_is_back_is_noted_once_per_outage():
    down = SlurmAccountingUnavailable("slurmdbd down", status=502, url="u")
    watch = JobWatch(WatchSpec(job_id=7, user="alice"))
    running = [slurm_job(JobState.RUNNING, None)]
    assert watch.step(Observation(error=down), 0.0)[0] == [
        "Slurm job 7: accounting unavailable, waiting (slurmdbd down: HTTP 502 from u)"
    ]
    assert watch.step(Observation(live=[], final=running), 30.0)[0] == [
        "Slurm job 7: accounting is back",
        "Slurm job 7: RUNNING",
    ]
    assert watch.step(Observation(live=[], final=running), 60.0)[0] == []  # nothing new to say


def test_the_vanish_clock_starts_when_the_job_went_missing_not_when_accounting_last_showed_it():
    watch = JobWatch(WatchSpec(job_id=7, user="alice", vanish_after=120))
    nothing = Observation(live=[], final=[])
    watch.step(Observation(live=[], final=[slurm_job(JobState.PENDING, None)]), 1000.0)  # accounting has it
    watch.step(nothing, 1121.0)  # missing from both since now
    watch.step(nothing, 1241.0)  # 120 s missing: not yet gone
    with pytest.raises(SlurmJobNotFound) as failure:
        watch.step(nothing, 1241.5)
    assert failure.value.job_id == 7


def test_a_record_submitted_exactly_at_the_clock_slack_is_still_ours():
    spec = WatchSpec(job_id=7, user="alice", submitted_after=T0.timestamp() + 60.0)  # the worker's clock: 60 s ahead
    assert spec.belongs(slurm_job(JobState.RUNNING, None))  # exactly SUBMIT_CLOCK_SLACK older: ours
    assert not spec.belongs(slurm_job(JobState.RUNNING, None, submit_time=T0 - timedelta(seconds=1)))


def test_an_arrays_final_records_are_its_tasks_in_index_order_without_the_summary_record():
    watch = JobWatch(WatchSpec(job_id=7, user="alice", expected_tasks=2))
    summary = slurm_job(JobState.FAILED, 1, array_job_id=7)  # the array's own record, beside its tasks
    task0, task1 = slurm_job(JobState.COMPLETED, task=0), slurm_job(JobState.FAILED, 1, task=1)
    notes, final = watch.step(Observation(live=[], final=[task1, summary, task0]), 0.0)
    assert final == [task0, task1]
    assert notes == ["Slurm job 7: 1 COMPLETED, 1 FAILED (accounting)"]
