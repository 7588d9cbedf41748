"""slurmctld's short word on jobs (GET /slurm/vX/jobs/state), as the shared poller reads it each round: one
odd entry must not hide the others, and a status made into a job record claims nothing about who owns the
job or when it was submitted (issue 18)."""

from __future__ import annotations

from airflow_provider_maxwell.slurm.job import JobStatus, SlurmJob, parse_job_statuses
from airflow_provider_maxwell.slurm.states import JobState


def test_odd_entries_are_skipped_and_every_other_entry_is_read():
    answer = [
        "junk",
        None,
        {"job_id": "abc", "state": ["RUNNING"]},
        {"state": ["RUNNING"]},
        {"job_id": "7", "state": ["RUNNING", "COMPLETING"]},
        {"job_id": "9_x", "state": "PENDING"},
        {"job_id": "2600004_1", "state": ["COMPLETED"]},
    ]
    assert parse_job_statuses(answer) == [
        JobStatus(7, None, JobState.RUNNING, frozenset({"COMPLETING"})),
        JobStatus(9, None, JobState.PENDING),  # a task index that is no number is no task
        JobStatus(2600004, 1, JobState.COMPLETED),
    ]


def test_a_status_is_ended_only_without_completing_processes():
    ending, ended = parse_job_statuses(
        [{"job_id": "7", "state": ["COMPLETED", "COMPLETING"]}, {"job_id": "8", "state": ["COMPLETED"]}]
    )
    assert not ending.is_terminal and ended.is_terminal


def test_a_status_as_a_job_record_names_no_user_name_or_submit_time():
    (status,) = parse_job_statuses([{"job_id": "2600004_1", "state": ["RUNNING", "CONFIGURING"]}])
    assert status.as_job() == SlurmJob(
        job_id=2600004,
        name="",
        user="",
        partition="",
        state=JobState.RUNNING,
        flags=frozenset({"CONFIGURING"}),
        source="slurmctld",
        array_task_id=1,
    )
    assert status.as_job().state_text == "RUNNING+CONFIGURING"
