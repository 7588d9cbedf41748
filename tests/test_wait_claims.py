"""Which job a wait on an id given from outside (a sensor's) claims, and how the wait state machine
behaves at its edges (issue 18: each test pins behaviour mutation testing found unasserted)."""

from __future__ import annotations

from datetime import timedelta

from airflow_provider_maxwell.slurm.states import JobState
from airflow_provider_maxwell.watch import JobWatch, Observation, WatchSpec

from .factories import T0, slurm_job


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
