"""Waiting for a Slurm job to end, written once (as a protocol of effects) for the worker's sync
loop and the triggerer's event loop alike.

The final truth comes from the accounting database: slurmctld is watched while the job lives
(it is current and cheap), accounting is asked once slurmctld says the job ended or forgot it.
"Not in accounting yet" is not "gone": a job is declared vanished only after it has been missing
from both for `vanish_after` seconds. Records of another user, or submitted before this job was,
are someone else's job under a reused id and are ignored. The wait ends with what the job's steps
measured (`with_settled_usage`): accounting may hold a job's end seconds before its steps'.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from airflow_provider_maxwell.client.operations import SlurmOperations
from airflow_provider_maxwell.effects import Note, Protocol, Sleep
from airflow_provider_maxwell.efficiency import with_measured_usage
from airflow_provider_maxwell.exceptions import (
    MaxwellError,
    SlurmAccountingUnavailable,
    SlurmJobNotFound,
    SlurmTransientError,
)
from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.slurm.states import accounting_due
from airflow_provider_maxwell.slurm.values import duration_text
from airflow_provider_maxwell.trigger_kwargs import as_kwargs

SUBMIT_CLOCK_SLACK = 60.0  # seconds: Slurm's and the worker's clocks may disagree a little
SLURM_CLOCK_SLACK = 1.0  # seconds: a submit time read from Slurm itself, compared with Slurm's records
# Pauses (seconds) before each read of an ended job's own accounting records while a step's end is not
# written yet: slurmdbd writes a step's measured figures with its end, seconds after the job's own end
# when the job was seen ending (COMPLETING). Bounded: a step whose end accounting never gets (a lost
# message) costs at most these 15 s, and the usage is then reported as unmeasured.
USAGE_READ_PAUSES = (0.0, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class WatchSpec:
    """What to wait for. Plain values only: it travels in trigger kwargs (never a token)."""

    job_id: int
    user: str
    submitted_after: float | None = None  # epoch seconds; older records under this id are someone else's
    submit_slack: float = SUBMIT_CLOCK_SLACK  # how much older a record may look and still be ours
    expected_tasks: int = 1  # array jobs: how many tasks the array has
    poll_interval: float = 30.0
    deadline: float | None = None  # epoch seconds
    accounting_tolerance: float = 600.0  # how long "accounting unavailable" is waited out
    vanish_after: float = 120.0  # how long a job may be missing from both slurmctld and accounting

    def belongs(self, job: SlurmJob) -> bool:
        """False for records under the same id that are another user's or older than this job (a reused id)."""
        if job.user and job.user != self.user:
            return False
        if self.submitted_after is not None and job.submit_time is not None:
            return job.submit_time.timestamp() >= self.submitted_after - self.submit_slack
        return True

    def pinned_to(self, job: SlurmJob) -> WatchSpec:
        """The spec narrowed to the job slurmctld shows under the id, by its submit time in Slurm's own clock.

        slurmctld holds one job per id, so a live record of ours is this job; accounting keeps records
        of jobs under a reused id, and one ended seconds before a state reset would pass the worker
        clock's minute of slack. Records from accounting, or another user's, leave the spec as it is.
        """
        if job.source != "slurmctld" or job.submit_time is None or not self.belongs(job):
            return self
        return replace(self, submitted_after=job.submit_time.timestamp(), submit_slack=SLURM_CLOCK_SLACK)

    def to_kwargs(self) -> dict[str, Any]:
        """The spec as plain values, for trigger kwargs."""
        return as_kwargs(self)


class WatchDeadlineExceeded(Exception):
    """The overall timeout passed while the job was still running."""


def _ours(spec: WatchSpec, jobs: Iterable[SlurmJob]) -> list[SlurmJob]:
    """The records of this job: under its id, ours, and of each task only the newest one (a reset moments
    before submission leaves an older record of the same user within the clock slack)."""
    newest: dict[tuple[int, int | None], SlurmJob] = {}
    for job in jobs:
        if not spec.belongs(job) or spec.job_id not in (job.job_id, job.array_job_id):
            continue
        key = (job.array_job_id or job.job_id, job.array_task_id)
        if key not in newest or job.submitted > newest[key].submitted:
            newest[key] = job
    return list(newest.values())


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


def merge_live(final: list[SlurmJob], live: list[SlurmJob]) -> list[SlurmJob]:
    """Accounting is the truth, but 22.05's forgets exit codes, and for some seconds after a job failed
    at launch names it "allocation": take those from slurmctld's record of the same job where known."""
    by_key = {(j.job_id, j.array_task_id): j for j in live}
    merged = []
    for job in final:
        seen = by_key.get((job.job_id, job.array_task_id))
        if seen is not None and job.exit_code is None and job.signal is None:
            job = replace(job, exit_code=seen.exit_code, signal=seen.signal)
        if seen is not None and seen.name:
            job = replace(job, name=seen.name)
        merged.append(job)
    return merged


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Observation:
    """What one poll learned about one job. `None` means "not asked this time", [] "asked, none"."""

    live: list[SlurmJob] | None = None  # slurmctld's records under the id
    final: list[SlurmJob] | None = None  # accounting's records under the id
    error: Exception | None = None  # the poll failed (for this job or for all)


class JobWatch:
    """The state of one wait, fed with observations; decides progress notes, the end, and giving up.

    No I/O here: the per-job loop (`watch`, workers) and the shared poller (triggerer) both feed it.
    """

    def __init__(self, spec: WatchSpec, url: str = "") -> None:
        self.spec = spec
        self.url = url  # where the job was looked for, for the "not found" error
        self.last_progress = ""
        self.live_seen: list[SlurmJob] = []
        self.missing_since: float | None = None
        self.accounting_down_since: float | None = None

    def claim(self, seen: Observation) -> SlurmJob | None:
        """First look at a job id given from outside (the sensor's): the newest record under the id, and
        the wait narrowed to that job's submit time when it is ours. None when nobody knows the id."""
        under_id = [
            r for r in [*(seen.live or []), *(seen.final or [])] if self.spec.job_id in (r.job_id, r.array_job_id)
        ]
        if not under_id:
            return None
        newest = max(under_id, key=lambda r: r.submitted)
        if newest.user in ("", self.spec.user) and self.spec.submitted_after is None and newest.submit_time:
            self.spec = replace(self.spec, submitted_after=newest.submitted).pinned_to(newest)
        return newest

    def check_deadline(self, now: float) -> None:
        """Raise WatchDeadlineExceeded once the spec's deadline has passed."""
        if self.spec.deadline is not None and now > self.spec.deadline:
            raise WatchDeadlineExceeded(
                f"Slurm job {self.spec.job_id} still {self.last_progress or 'unknown'} at the deadline"
            )

    def asks_accounting(self, live: list[SlurmJob] | None) -> bool:
        """Whether accounting is asked now, from slurmctld's records under the id (`accounting_due`):
        it holds none of ours, or all of it has ended."""
        return accounting_due(_ours(self.spec, live or []), ending_will_do=False)

    def step(self, seen: Observation, now: float) -> tuple[list[str], list[SlurmJob] | None]:
        """Progress notes, and the final records once every task has one (raises when giving up)."""
        spec, notes = self.spec, []
        if seen.error is not None:
            return self._failed(seen.error, now), None
        ours = _tasks(_ours(spec, seen.live or []))
        final = _tasks(_ours(spec, seen.final or []))
        if ours:
            self.live_seen = ours
            self.spec = self.spec.pinned_to(min(ours, key=lambda j: j.submitted))
        if seen.final is not None and self.accounting_down_since is not None:
            notes.append(f"Slurm job {spec.job_id}: accounting is back")
            self.accounting_down_since = None
        done = bool(final) and all(j.is_terminal for j in final) and len(final) >= spec.expected_tasks
        shown = final if done or (final and not ours) else ours
        if shown:
            self.missing_since = None
            progress = describe(shown) + (" (accounting)" if shown is final and done else "")
            if progress != self.last_progress:
                notes.append(f"Slurm job {spec.job_id}: {progress}")
                self.last_progress = progress
        if done:
            return notes, merge_live(final, self.live_seen)
        if not ours and not final and seen.final is not None:
            self.missing_since = self.missing_since or now
            if now - self.missing_since > spec.vanish_after:
                raise SlurmJobNotFound(spec.job_id, status=None, url=self.url)
        return notes, None

    def _failed(self, error: Exception, now: float) -> list[str]:
        job_id = self.spec.job_id
        if isinstance(error, SlurmAccountingUnavailable):
            self.accounting_down_since = self.accounting_down_since or now
            if now - self.accounting_down_since > self.spec.accounting_tolerance:
                raise error
            return [f"Slurm job {job_id}: accounting unavailable, waiting ({error})"]
        if isinstance(error, SlurmTransientError):
            # The REST API itself is unreachable (restart, proxy): keep waiting, it is not the job's fault.
            return [f"Slurm job {job_id}: Slurm REST API unreachable, will retry ({error})"]
        raise error


def observe(ops: SlurmOperations, job_watch: JobWatch) -> Protocol[Observation]:
    """Ask about one job: slurmctld while it runs, accounting once slurmctld says it ended or forgot it."""
    job_id = job_watch.spec.job_id
    try:
        live = yield from ops.controller_jobs(job_id)
        if not job_watch.asks_accounting(live):
            return Observation(live=live)
        return Observation(live=live, final=(yield from ops.accounting_jobs(job_id)))
    except (SlurmAccountingUnavailable, SlurmTransientError) as error:
        return Observation(error=error)


def watch(ops: SlurmOperations, spec: WatchSpec) -> Protocol[list[SlurmJob]]:
    """Wait, polling this one job, until every task has a final record in accounting; return those, with
    what their steps measured."""
    job_watch = JobWatch(spec, url=ops.state.config.host)
    while True:
        job_watch.check_deadline(_now())
        seen = yield from observe(ops, job_watch)
        notes, final = job_watch.step(seen, _now())
        for note in notes:
            yield Note(note)
        if final is not None:
            return (yield from with_settled_usage(ops, spec.job_id, final))
        yield Sleep(spec.poll_interval)


def usage_to_read(jobs: Iterable[SlurmJob], *, read_before: bool) -> bool:
    """Whether the job's own accounting records are worth (another) read for what its steps measured:
    a listing left the steps out (`read_before`: the records are the job's own already), or a step's
    end, written with its figures, is not there yet. A record that lists no steps even when asked
    (a server that never does) is not read again."""
    usages = [j.usage for j in jobs]
    if not read_before and any(u is None or not u.steps_known for u in usages):
        return True
    return any(u is not None and u.steps_known and not u.steps_ended for u in usages)


def with_settled_usage(
    ops: SlurmOperations, job_id: int, final: list[SlurmJob], *, read_before: bool = True
) -> Protocol[list[SlurmJob]]:
    """`final` with what its steps measured: the job's own accounting records read while
    `usage_to_read` says so, after the pauses of `USAGE_READ_PAUSES`. Usage is a report, not the
    verdict: a failed read is said in a note and `final` kept. (The triggerer runs this loop with its
    reads queued among all triggers: triggers/job.py.)"""
    for pause in USAGE_READ_PAUSES:
        if not usage_to_read(final, read_before=read_before):
            break
        if pause:
            yield Sleep(pause)
        try:
            detailed = yield from ops.accounting_jobs(job_id)
        except MaxwellError as error:
            yield Note(f"Could not read the resource usage of Slurm job {job_id}: {error}")
            break
        final, read_before = with_measured_usage(final, detailed), True
    return final


def array_size(spec: str | None) -> int:
    """How many tasks an --array specification makes: '0-99%10' -> 100, '1,3,5-7' -> 5, '0-10:2' -> 6."""
    return max(len(array_indices(spec)), 1) if spec else 1


def array_indices(spec: str | None) -> list[int]:
    """The task indices of an --array specification, ascending: '1,3,5-7%2' -> [1, 3, 5, 6, 7]."""
    if not spec:
        return []
    indices: set[int] = set()
    for part in spec.split("%", 1)[0].split(","):
        part = part.strip()
        if not part:
            continue
        rng, _, step = part.partition(":")
        low, _, high = rng.partition("-")
        indices.update(range(int(low), int(high or low) + 1, int(step or 1)))
    return sorted(indices)


def elapsed_text(start: datetime | None, end: datetime | None) -> str:
    """A duration as H:MM:SS, as Slurm prints elapsed times."""
    if start is None or end is None:
        return "0:00:00"
    return duration_text(max((end - start).total_seconds(), 0))
