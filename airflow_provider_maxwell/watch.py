"""Waiting for a Slurm job to end, written once (as a protocol of effects) for the worker's sync
loop and the triggerer's event loop alike.

The final truth comes from the accounting database: slurmctld is watched while the job lives
(it is current and cheap), accounting is asked once slurmctld says the job ended or forgot it.
"Not in accounting yet" is not "gone": a job is declared vanished only after it has been missing
from both for `vanish_after` seconds. Records of another user, or submitted before this job was,
are someone else's job under a reused id and are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_maxwell.effects import Note, Protocol, Sleep
from airflow_provider_maxwell.exceptions import (
    SlurmAccountingUnavailable,
    SlurmJobNotFound,
    SlurmTransientError,
)
from airflow_provider_maxwell.slurm.job import SlurmJob

if TYPE_CHECKING:
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

SUBMIT_CLOCK_SLACK = 60.0  # seconds: Slurm's and the worker's clocks may disagree a little


@dataclass(frozen=True)
class WatchSpec:
    """What to wait for. Plain values only: it travels in trigger kwargs (never a token)."""

    job_id: int
    user: str
    submitted_after: float | None = None  # epoch seconds; older records under this id are someone else's
    expected_tasks: int = 1  # array jobs: how many tasks the array has
    poll_interval: float = 30.0
    deadline: float | None = None  # epoch seconds
    accounting_tolerance: float = 600.0  # how long "accounting unavailable" is waited out
    vanish_after: float = 120.0  # how long a job may be missing from both slurmctld and accounting

    def belongs(self, job: SlurmJob) -> bool:
        if job.user and job.user != self.user:
            return False
        if self.submitted_after is not None and job.submit_time is not None:
            return job.submit_time.timestamp() >= self.submitted_after - SUBMIT_CLOCK_SLACK
        return True

    def to_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class WatchDeadlineExceeded(Exception):
    """The overall timeout passed while the job was still running."""


def _ours(spec: WatchSpec, jobs: Iterable[SlurmJob]) -> list[SlurmJob]:
    return [j for j in jobs if spec.belongs(j) and (j.job_id == spec.job_id or j.array_job_id == spec.job_id)]


def _tasks(jobs: list[SlurmJob]) -> list[SlurmJob]:
    """One record per array task (drop the array's summary record where tasks are listed too)."""
    tasks = [j for j in jobs if j.array_task_id is not None]
    return sorted(tasks, key=lambda j: j.array_task_id or 0) if tasks else jobs


def describe(jobs: list[SlurmJob]) -> str:
    """A progress line: 'PENDING (Priority)', 'RUNNING on maxwn26', or per-state counts for arrays."""
    if len(jobs) == 1:
        job = jobs[0]
        if job.state.value == "PENDING":
            return f"PENDING ({job.reason})" if job.reason else "PENDING"
        where = f" on {job.nodes}" if job.nodes and not job.is_terminal else ""
        return f"{job.state_text}{where}"
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state_text] = counts.get(job.state_text, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _merge_exit_codes(final: list[SlurmJob], live: list[SlurmJob]) -> list[SlurmJob]:
    """Accounting is the truth, but 22.05's forgets exit codes: take them from slurmctld where known."""
    by_key = {(j.job_id, j.array_task_id): j for j in live}
    merged = []
    for job in final:
        seen = by_key.get((job.job_id, job.array_task_id))
        if job.exit_code is None and seen is not None and seen.exit_code is not None:
            job = replace(job, exit_code=seen.exit_code, signal=job.signal or seen.signal)
        merged.append(job)
    return merged


def _now() -> float:
    return time.time()


def watch(hook: MaxwellHook, spec: WatchSpec) -> Protocol[list[SlurmJob]]:
    """Wait until every task of the job has a final record in accounting; return those records."""
    last_progress = ""
    live_seen: list[SlurmJob] = []
    missing_since: float | None = None
    accounting_down_since: float | None = None
    while True:
        if spec.deadline is not None and _now() > spec.deadline:
            raise WatchDeadlineExceeded(f"Slurm job {spec.job_id} still {last_progress or 'unknown'} at the deadline")
        try:
            live = yield from hook._controller_jobs(spec.job_id)
            ours = _tasks(_ours(spec, live or []))
            if ours:
                live_seen = ours
                missing_since = None
                progress = describe(ours)
                if progress != last_progress:
                    yield Note(f"Slurm job {spec.job_id}: {progress}")
                    last_progress = progress
            still_running = bool(ours) and not (all(j.is_terminal for j in ours) and len(ours) >= spec.expected_tasks)
            if not still_running:
                records = yield from hook._accounting_jobs(spec.job_id)
                if accounting_down_since is not None:
                    yield Note(f"Slurm job {spec.job_id}: accounting is back")
                accounting_down_since = None
                final = _tasks(_ours(spec, records))
                if final and all(j.is_terminal for j in final) and len(final) >= spec.expected_tasks:
                    progress = describe(final)
                    if progress != last_progress:
                        yield Note(f"Slurm job {spec.job_id}: {progress} (accounting)")
                    return _merge_exit_codes(final, live_seen)
                if not ours and not final:
                    missing_since = missing_since or _now()
                    if _now() - missing_since > spec.vanish_after:
                        raise SlurmJobNotFound(spec.job_id, status=None, url=hook.config.host)
        except SlurmAccountingUnavailable as error:
            accounting_down_since = accounting_down_since or _now()
            if _now() - accounting_down_since > spec.accounting_tolerance:
                raise
            yield Note(f"Slurm job {spec.job_id}: accounting unavailable, waiting ({error})")
        except SlurmTransientError as error:
            # The REST API itself is unreachable (restart, proxy): keep waiting, it is not the job's fault.
            yield Note(f"Slurm job {spec.job_id}: Slurm REST API unreachable, will retry ({error})")
        yield Sleep(spec.poll_interval)


def array_size(spec: str | None) -> int:
    """How many tasks an --array specification makes: '0-99%10' -> 100, '1,3,5-7' -> 5, '0-10:2' -> 6."""
    if not spec:
        return 1
    body = spec.split("%", 1)[0]
    total = 0
    for part in body.split(","):
        part = part.strip()
        if not part:
            continue
        rng, _, step = part.partition(":")
        low, _, high = rng.partition("-")
        if high:
            total += len(range(int(low), int(high) + 1, int(step or 1)))
        else:
            total += 1
    return max(total, 1)


def elapsed_text(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "0:00:00"
    seconds = max(int((end - start).total_seconds()), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
