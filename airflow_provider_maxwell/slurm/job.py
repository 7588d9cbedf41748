"""One normalized, typed job model whatever the API version, and the parser that makes it.

The parser accepts every shape the supported versions use (string or list states, plain or
{set, number} integers, raw wait status or structured exit codes): it needs no version switch,
only the dialect's word on whether accounting's exit code can be trusted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from airflow_provider_maxwell.exceptions import MaxwellConfigError, MaxwellError
from airflow_provider_maxwell.slurm.states import DEFAULT_SUCCESS_STATES, TRANSIENT_FLAGS, JobState, has_ended
from airflow_provider_maxwell.slurm.usage import JobUsage, parse_usage
from airflow_provider_maxwell.slurm.values import unwrapped

Source = Literal["slurmctld", "slurmdb"]


@dataclass(frozen=True)
class SlurmJob:
    """One Slurm job (or array task) in the same shape whatever the API version or source (slurmctld or accounting)."""

    job_id: int
    name: str
    user: str
    partition: str
    state: JobState
    source: Source
    flags: frozenset[str] = field(default_factory=frozenset)
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    nodes: str | None = None
    comment: str | None = None
    working_directory: str | None = None
    standard_output: str | None = None
    standard_error: str | None = None
    array_job_id: int | None = None
    array_task_id: int | None = None
    #: the job's user as a uid (slurmctld's records only; accounting's name the user only)
    user_id: int | None = None
    #: the Slurm account the job was charged to (accounting's records; slurmctld's too)
    account: str | None = None
    #: what the job asked for and used (accounting records only; slurmctld's carry none)
    usage: JobUsage | None = field(default=None, compare=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        """Ended, by Slurm's own rule (`states.has_ended`)."""
        return has_ended(self)

    def succeeded(self, success_states: frozenset[str] = DEFAULT_SUCCESS_STATES) -> bool:
        """The one definition of success: ended in one of `success_states`, and COMPLETED only with exit
        code 0 (or unknown, as 22.05's accounting leaves it)."""
        if not self.is_terminal or self.state.value not in success_states:
            return False
        return self.state is not JobState.COMPLETED or self.exit_code in (0, None)

    @property
    def is_success(self) -> bool:
        """Ended COMPLETED with exit code 0 (or unknown): `succeeded()` with the default states."""
        return self.succeeded()

    @property
    def submitted(self) -> float:
        """The submit time in epoch seconds (0.0 when unknown): the newest job under a reused id has the largest."""
        return self.submit_time.timestamp() if self.submit_time else 0.0

    @property
    def state_text(self) -> str:
        """The state with its flags, as Slurm prints it (e.g. 'RUNNING', 'PENDING+REQUEUED')."""
        extra = sorted(self.flags & TRANSIENT_FLAGS)
        return "+".join([self.state.value, *extra])

    @property
    def elapsed(self) -> timedelta | None:
        """Run time from start to end, once both are known."""
        if self.start_time is None:
            return None
        end = self.end_time or datetime.now(timezone.utc)
        return max(end - self.start_time, timedelta(0))

    def output_path(self) -> str | None:
        """Where the job's standard output goes, with Slurm's % patterns expanded (None when unknown)."""
        # slurmctld always knows the path (Slurm's default when none was asked for); older accounting
        # records do not carry it at all, and guessing the default there would name a wrong file.
        default = None
        if self.source == "slurmctld":
            default = "slurm-%A_%a.out" if self.array_task_id is not None else "slurm-%j.out"
        return _expand(self.standard_output, self, default)

    def error_path(self) -> str | None:
        """The job's standard error file with Slurm's %-patterns expanded (None if it goes to standard output)."""
        return _expand(self.standard_error, self, None) if self.standard_error else self.output_path()


MAX_JOB_ID = 2**32 - 1  # Slurm's job ids are 32-bit


def parse_job_id(value: object) -> int:
    """A Slurm job id from an int or its text (e.g. a rendered XCom); a clear error for anything else."""
    job_id = readable_job_id(value)
    if job_id is None:
        small = not isinstance(value, int) or -(10**30) < value < 10**30  # repr() refuses 10**5000
        shown = repr(value) if small and isinstance(value, str | int | float | None) else ""
        raise MaxwellConfigError(
            f"job_id must be a Slurm job id (a positive whole number), not "
            f"{shown if 0 < len(shown) <= 40 else f'a {type(value).__name__} of that size or shape'}: "
            "check the value or template that gives it (e.g. the submitting task's XCom)"
        )
    return job_id


def readable_job_id(value: object) -> int | None:
    """A job id from 1 to MAX_JOB_ID as an int or its ASCII digits (surrounding spaces allowed); None for
    anything else: bools, floats, '²' (which int() refuses), full-width digits (which int() reads as plain
    ones), 10**5000 (which str() refuses)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 < value <= MAX_JOB_ID else None
    if not isinstance(value, str):
        return None
    text = value.strip().lstrip("0")
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_JOB_ID)):
        return None
    return int(text) if int(text) <= MAX_JOB_ID else None


def _expand(pattern: str | None, job: SlurmJob, default: str | None) -> str | None:
    pattern = pattern or default
    if not pattern:
        return None
    values = {
        "j": str(job.job_id),
        "A": str(job.array_job_id or job.job_id),
        "a": str(job.array_task_id) if job.array_task_id is not None else "4294967294",
        "x": job.name,
        "u": job.user,
        "N": (job.nodes or "").split(",")[0],
        "%": "%",
    }
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "%" and i + 1 < len(pattern):
            j = i + 1
            while j < len(pattern) and pattern[j].isdigit():  # %5j: zero-padded
                j += 1
            if j < len(pattern) and pattern[j] in values:
                width = int(pattern[i + 1 : j] or 0)
                value = values[pattern[j]]
                out.append(value.zfill(width) if value.isdigit() else value)
                i = j + 1
                continue
        out.append(pattern[i])
        i += 1
    path = "".join(out)
    if not os.path.isabs(path) and job.working_directory:
        path = os.path.join(job.working_directory, path)
    return path


# ------------------------------------------------------------------ shape readers


def number(value: Any) -> int | None:
    """A plain integer or a {set, infinite, number} struct; None when unset or infinite."""
    value = unwrapped(value)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # junk, or float('inf') from a broken server
        return None


LATEST_TIMESTAMP = 253_402_300_799  # 9999-12-31: beyond it no datetime, and no real job


def timestamp(value: Any) -> datetime | None:
    """A datetime (UTC) from any timestamp shape; None if unset, zero or out of range."""
    seconds = number(value)
    if not seconds or seconds <= 0 or seconds > LATEST_TIMESTAMP:
        return None
    import pendulum  # deferred: only execution paths parse jobs, DAG parsing never does

    return pendulum.from_timestamp(seconds, tz="UTC")


def state_and_flags(value: Any) -> tuple[JobState, frozenset[str]]:
    """The base state and flags from any state shape (a string, or a list of state and flags)."""
    words = [value] if isinstance(value, str) else [str(v) for v in value] if isinstance(value, list) else []
    words = [w.upper() for w in words if w]
    base = next((JobState.parse(w) for w in words if JobState.parse(w) is not JobState.UNKNOWN), None)
    flags = frozenset(w for w in words if JobState.parse(w) is JobState.UNKNOWN)
    if base is None:
        # The string form may carry only a flag: COMPLETING/CONFIGURING mean running, REQUEUED pending.
        base = JobState.PENDING if "REQUEUED" in flags else JobState.RUNNING if flags else JobState.UNKNOWN
    return base, flags


def exit_status(value: Any) -> tuple[int | None, int | None]:
    """(exit code, signal) from any exit-code shape."""
    if value is None:
        return None, None
    if isinstance(value, Mapping):
        code = number(value.get("return_code"))
        signal_info = value.get("signal")
        sig = number(signal_info.get("id")) if isinstance(signal_info, Mapping) else None
        return code, sig or None
    raw = number(value)
    if raw is None:
        return None, None
    # slurmctld v0.0.38: the raw wait(2) status, e.g. 768 for exit 3, 9 for SIGKILL.
    return (None, raw & 0x7F) if raw & 0x7F else (raw >> 8, None)


def text(value: Any) -> str | None:
    """The value if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


class UnreadableJobRecord(MaxwellError, ValueError):
    """A job record in an answer names no usable job id: it cannot be told apart from any other job."""


def record_job_id(doc: Mapping[str, Any]) -> int:
    """A record's `job_id` (plain, or a {set, number} struct); UnreadableJobRecord for anything else (a
    record of job 0 would pass for the job asked about)."""
    value = unwrapped(doc.get("job_id"))
    job_id = readable_job_id(value)
    if job_id is None:
        raise UnreadableJobRecord(f"a job record's job_id is not a Slurm job id (a {type(value).__name__})")
    return job_id


def parse_controller_jobs(docs: Iterable[Any]) -> list[SlurmJob]:
    """The jobs of a /slurm answer's `jobs` list; entries that are no job record with a job id are skipped
    (one odd record must not stop a wait on all the others)."""
    return _parse_all(docs, parse_controller_job)


def parse_accounting_jobs(docs: Iterable[Any], *, exit_code_reliable: bool = True) -> list[SlurmJob]:
    """The jobs of a /slurmdb answer's `jobs` list; odd entries skipped as in `parse_controller_jobs`."""
    return _parse_all(docs, lambda doc: parse_accounting_job(doc, exit_code_reliable=exit_code_reliable))


def _parse_all(docs: Iterable[Any], parse: Callable[[Mapping[str, Any]], SlurmJob]) -> list[SlurmJob]:
    jobs = []
    for doc in docs:
        if not isinstance(doc, Mapping):
            continue
        try:
            jobs.append(parse(doc))
        except UnreadableJobRecord:
            continue
    return jobs


@dataclass(frozen=True)
class JobStatus:
    """slurmctld's short word on one job or array task (GET /slurm/vX/jobs/state): ids and state only,
    ~230 bytes where a full record is ~5 KB. Enough to tell whether anything changed, not who owns it."""

    job_id: int  # the job's (or task's) own id
    array_task_id: int | None
    state: JobState
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_terminal(self) -> bool:
        """Ended, by Slurm's own rule (`states.has_ended`)."""
        return has_ended(self)

    def as_job(self, array_job_id: int | None = None) -> SlurmJob:
        """slurmctld's word as a job record for progress lines: no user, name or submit time (unknown
        here, so it neither claims the job for a user nor pins the wait to a submit time). jobs/state
        does not name a task's array: `array_job_id` is the array that was asked about, where known."""
        return SlurmJob(
            job_id=self.job_id,
            name="",
            user="",
            partition="",
            state=self.state,
            flags=self.flags,
            source="slurmctld",
            array_task_id=self.array_task_id,
            array_job_id=array_job_id,
        )


def parse_job_statuses(docs: Iterable[Any]) -> list[JobStatus]:
    """The entries of a jobs/state answer. Its job_id is text: "2600001", or "2600004_1" for task 1 of
    an array whose task has its own id 2600004 (measured on 24.11 and 26.05); unreadable entries are skipped."""
    statuses = []
    for doc in docs:
        if not isinstance(doc, Mapping):
            continue
        own, _, task = str(doc.get("job_id", "")).partition("_")
        job_id = readable_job_id(own)
        if job_id is None:
            continue
        state, flags = state_and_flags(doc.get("state"))
        statuses.append(JobStatus(job_id, int(task) if task.isascii() and task.isdigit() else None, state, flags))
    return statuses


#: Where slurmctld's job record (/slurm/vX/job/{id}) and accounting's (/slurmdb/vX/job/{id}) keep each
#: field: a dotted path of keys, or several, the first that says something winning. The rules that turn
#: the values into a job are the same for both (`_parse_record`).
_PLACES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # field: (in slurmctld's record, in accounting's)
    "state": (("job_state",), ("state.current",)),
    "reason": (("state_reason",), ("state.reason",)),
    "user": (("user_name",), ("user",)),
    "submit_time": (("submit_time",), ("time.submission",)),
    "start_time": (("start_time",), ("time.start",)),
    "end_time": (("end_time",), ("time.end",)),
    "comment": (("comment",), ("comment.job", "comment")),
    "working_directory": (("current_working_directory",), ("working_directory",)),
    "standard_output": (("standard_output",), ("stdout_expanded", "stdout")),
    "standard_error": (("standard_error",), ("stderr_expanded", "stderr")),
    "array_job_id": (("array_job_id",), ("array.job_id",)),
    "array_task_id": (("array_task_id",), ("array.task_id",)),
    "user_id": (("user_id",), ()),  # accounting names the user only
}


def parse_controller_job(doc: Mapping[str, Any]) -> SlurmJob:
    """A job as /slurm/vX/job/{id} describes it (one element of its `jobs`); UnreadableJobRecord when
    it names no usable job id."""
    return _parse_record(doc, "slurmctld")


def parse_accounting_job(doc: Mapping[str, Any], *, exit_code_reliable: bool = True) -> SlurmJob:
    """A job as /slurmdb/vX/job/{id} describes it (one element of its `jobs`); UnreadableJobRecord when
    it names no usable job id."""
    return _parse_record(doc, "slurmdb", exit_code_reliable=exit_code_reliable)


def _parse_record(doc: Mapping[str, Any], source: Source, *, exit_code_reliable: bool = True) -> SlurmJob:
    column = 0 if source == "slurmctld" else 1

    def at(name: str) -> Any:
        values = (_at_path(doc, path) for path in _PLACES[name][column])
        return next((v for v in values if v not in (None, "")), None)

    state, flags = state_and_flags(at("state"))
    code, sig = exit_status(doc.get("exit_code"))
    if not exit_code_reliable and state is not JobState.COMPLETED and code == 0:
        code = None  # 22.05 says 0 whatever the job returned: unknown is the honest answer
    array_job = number(at("array_job_id")) or None
    return SlurmJob(
        job_id=record_job_id(doc),
        name=text(doc.get("name")) or "",
        user=text(at("user")) or "",
        partition=text(doc.get("partition")) or "",
        state=state,
        flags=flags,
        source=source,
        reason=_reason(at("reason")),
        # While a job has not ended its exit code means nothing yet.
        exit_code=code if state.is_terminal else None,
        signal=sig if state.is_terminal else None,
        submit_time=timestamp(at("submit_time")),
        start_time=timestamp(at("start_time")),
        end_time=timestamp(at("end_time")) if state.is_terminal else None,
        nodes=_nodes(doc.get("nodes")),
        comment=text(at("comment")),
        working_directory=text(at("working_directory")),
        standard_output=text(at("standard_output")),
        standard_error=text(at("standard_error")),
        array_job_id=array_job,
        array_task_id=number(at("array_task_id")) if array_job else None,
        user_id=number(at("user_id")),
        usage=parse_usage(doc) if source == "slurmdb" else None,  # slurmctld's records carry none
        account=text(doc.get("account")),
    )


def _at_path(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of keys; None where a step is missing or no mapping."""
    value: Any = doc
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _reason(value: Any) -> str | None:
    return value if isinstance(value, str) and value not in ("", "None") else None


def _nodes(value: Any) -> str | None:
    return value if isinstance(value, str) and value not in ("", "None assigned") else None
