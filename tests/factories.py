"""SlurmJob records for tests that judge jobs without a server."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.slurm.states import JobState

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


def slurm_job(
    state: JobState, exit_code: int | None = 0, *, task: int | None = None, source: str = "slurmdb", **fields: Any
) -> SlurmJob:
    """Job 7 of alice, 30 s long, from accounting unless `source` says otherwise; `task` makes it an array task."""
    job = SlurmJob(
        job_id=7,
        name="reduce",
        user="alice",
        partition="maxcpu",
        state=state,
        source=source,  # type: ignore[arg-type]
        exit_code=exit_code,
        submit_time=T0,
        start_time=T0,
        end_time=T0 + timedelta(seconds=30),
        array_job_id=7 if task is not None else None,
        array_task_id=task,
    )
    return replace(job, **fields)
