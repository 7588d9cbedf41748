"""slurmctld's short word on jobs (GET /slurm/vX/jobs/state), as the shared poller reads it each round: one
odd entry must not hide the others, and a status made into a job record claims nothing about who owns the
job or when it was submitted; and the by-id queries of each round are cut to stay under proxies' URL
limit in as few requests as that allows (issue 18)."""

from __future__ import annotations

import itertools

from airflow_provider_maxwell.slurm.dialects import DIALECTS, ID_QUERY_CHARS
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


def test_id_queries_stay_under_the_url_limit_and_are_as_few_as_that_allows():
    # Each id goes into the URL as `job_id=<id>&` (or `step=<id>&`): every query stays within
    # ID_QUERY_CHARS, and is full (its next id would pass the limit), so a round sends as few as it can.
    for dialect, key in ((DIALECTS["v0.0.42"], "job_id"), (DIALECTS["v0.0.40"], "step")):
        for width in range(1, 11):
            first = 10 ** (width - 1)
            ids = list(range(first, first + 1200))
            if dialect.controller_states_by_id:
                queries = [q["job_id"] for q in dialect.job_state_queries(reversed(ids))]
            else:
                queries = [q["step"] for q in dialect.accounting_by_id("alice", ids)]
            assert [int(i) for q in queries for i in q] == ids  # ascending, each once
            sizes = [sum(len(f"{key}={i}&") for i in q) for q in queries]
            assert all(size <= ID_QUERY_CHARS for size in sizes), (key, width, sizes)
            for size, after in itertools.pairwise(queries):
                full = sum(len(f"{key}={i}&") for i in size) + len(f"{key}={after[0]}&")
                assert full > ID_QUERY_CHARS, (key, width, len(size))
