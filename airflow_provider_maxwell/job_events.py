"""Events for jobs that ended, wherever they were submitted, as a protocol over explicit state: which
jobs a watcher fires for, in what order, and how far it has got (its cursor). No Airflow imports and
no clock: triggers/events.py reads the windows, passes the time, keeps the cursor and fires.

A round reads accounting's window of the jobs that ended lately (by end time, so its cost follows the
interval's ends, not the users' history) and steps the cursor over it:

- The cursor is a small JSON dict: `since`, the earliest end second that may still fire (anything
  ending before it was fired, or is history the watcher started after), and `fired`, the ids (with
  their end seconds) fired at or after `since`.
- Accounting writes an end a moment after it happened, and Slurm's clock may differ from ours: a
  window reaches back `REACH_BACK` seconds before the last read. A job that shows up late, with an
  end inside that reach, fires then, once: the ids fired inside the reach are in the cursor, so the
  overlap never fires a job twice. After a read at time t, `since` becomes t - REACH_BACK: a job
  accounting had not written by t ended after that (if it is written within REACH_BACK of its end).
- A first start does not replay history: `since` starts at the start time minus the look-back
  (default none); a resumed cursor picks up where it stopped, however long ago.
- Array tasks are not events (an array ends when its last task does, which no window tells).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_provider_maxwell.client.operations import SlurmOperations
from airflow_provider_maxwell.effects import Protocol
from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.poll_round import ENDS_AHEAD
from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.slurm.states import TERMINAL_STATES

#: seconds each window reaches back before the last read: accounting's late writes and clock skew
REACH_BACK = 15.0
#: every end state, the states a filter fires on unless told otherwise
END_STATES = tuple(sorted(state.value for state in TERMINAL_STATES))


@dataclass(frozen=True)
class JobFilter:
    """Which ended jobs a watcher fires for: every given condition must hold (None: any)."""

    name: str | None = None  # a glob on the job name (fnmatch, case-sensitive): "beamtime.*"
    users: tuple[str, ...] = ()  # (): the users the window was read for
    account: str | None = None
    partition: str | None = None
    states: frozenset[str] = frozenset(END_STATES)

    @classmethod
    def of(
        cls,
        *,
        name: str | None = None,
        users: Sequence[str] | str | None = None,
        account: str | None = None,
        partition: str | None = None,
        states: Sequence[str] | str | None = None,
    ) -> JobFilter:
        """A filter from a watcher's arguments; MaxwellConfigError naming the argument and the fix."""
        for field_name, value in (("name", name), ("account", account), ("partition", partition)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise MaxwellConfigError(f"{field_name} must be a non-empty text or None (any), not {value!r}")
        return cls(
            name=name,
            users=_names("users", users),
            account=account,
            partition=partition,
            states=_end_states(states),
        )

    def matches(self, job: SlurmJob) -> bool:
        """Whether the ended `job` is one this watcher fires for."""
        if job.state.value not in self.states:
            return False
        if self.name is not None and not fnmatch.fnmatchcase(job.name, self.name):
            return False
        if self.users and job.user not in self.users:
            return False
        if self.account is not None and job.account != self.account:
            return False
        # A job submitted to several partitions is recorded in the one it ran in (or all of them, listed).
        return self.partition is None or self.partition in (job.partition or "").split(",")


def _names(field_name: str, value: Sequence[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) and n.strip() and "," not in n for n in names):
        raise MaxwellConfigError(
            f"{field_name} must be a list of Slurm user names (no commas, none empty), not {value!r}"
        )
    return tuple(sorted(set(names)))


def _end_states(value: Sequence[str] | str | None) -> frozenset[str]:
    if value is None:
        return frozenset(END_STATES)
    states = [value] if isinstance(value, str) else list(value)
    wrong = [s for s in states if not isinstance(s, str) or s.upper() not in END_STATES]
    if wrong or not states:
        raise MaxwellConfigError(
            f"states must name end states of Slurm jobs ({', '.join(END_STATES)}), not {wrong or value!r}: "
            "leave it out for every end state"
        )
    return frozenset(s.upper() for s in states)


@dataclass(frozen=True)
class Cursor:
    """How far a watcher has got: ends before `since` are done; `fired` holds the ids (id: end second)
    fired at or after `since`, so that a window reaching back over them does not fire them again."""

    since: int
    fired: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def first(cls, now: float, look_back: float = 0.0) -> Cursor:
        """A watcher's first cursor: jobs that ended `look_back` seconds before `now` or later fire."""
        return cls(since=int(now - max(look_back, 0.0)))

    def to_json(self) -> dict[str, Any]:
        """The cursor as a small JSON dict (the asset state store's value)."""
        return {"since": self.since, "fired": {str(job_id): end for job_id, end in sorted(self.fired.items())}}

    @classmethod
    def from_json(cls, value: object) -> Cursor | None:
        """Read what `to_json` wrote; None for anything else (no cursor kept yet, or not one of ours)."""
        if not isinstance(value, Mapping) or not isinstance(value.get("since"), int):
            return None
        fired = value.get("fired")
        if not isinstance(fired, Mapping):
            return None
        try:
            return cls(since=value["since"], fired={int(k): int(v) for k, v in fired.items()})
        except (TypeError, ValueError):
            return None

    def with_fired(self, job: SlurmJob) -> Cursor:
        """The cursor once `job` has fired."""
        return replace(self, fired={**self.fired, job.job_id: end_second(job)})

    def window(self, now: float) -> tuple[float, float]:
        """The (since, until) to read at clock reading `now`: from `since`, and a minute past our clock
        (Slurm's clock may be ahead of ours)."""
        return float(self.since), now + ENDS_AHEAD


@dataclass(frozen=True)
class EndedWindow:
    """Accounting's records of jobs that ended at or after `since`, as read at our clock's `read_at`."""

    since: float
    read_at: float
    jobs: tuple[SlurmJob, ...]


@dataclass(frozen=True)
class Step:
    """What one window means for one watcher: the jobs to fire, in end-time order, and the cursor after."""

    fires: list[SlurmJob]
    cursor: Cursor


def step(cursor: Cursor, window: EndedWindow, job_filter: JobFilter, reach_back: float = REACH_BACK) -> Step:
    """Which jobs of `window` fire (each once: ended at or after the cursor's `since`, not fired yet,
    matching the filter; by end time, then id), and the cursor after them. The window must reach back
    to the cursor's `since` (`covers`)."""
    if not covers(window, cursor):
        raise ValueError(
            f"the window starts at {window.since}, after the cursor's {cursor.since}: read from the cursor"
        )
    latest: dict[int, SlurmJob] = {}
    for job in window.jobs:
        if not _is_event(job) or end_second(job) < cursor.since or job.job_id in cursor.fired:
            continue
        known = latest.get(job.job_id)  # a requeued job may be listed twice: its last end counts
        if job_filter.matches(job) and (known is None or end_second(job) >= end_second(known)):
            latest[job.job_id] = job
    fires = sorted(latest.values(), key=lambda j: (end_second(j), j.job_id))
    since = max(cursor.since, next_since(window.read_at, reach_back))
    fired = {**cursor.fired, **{j.job_id: end_second(j) for j in fires}}
    return Step(fires, Cursor(since, {job_id: end for job_id, end in fired.items() if end >= since}))


def covers(window: EndedWindow, cursor: Cursor) -> bool:
    """Whether `window` reaches back to the cursor's `since`. A shared window does not for a cursor resumed
    from before the stream began, or one that missed a round: that watcher reads its own window once."""
    return window.since <= cursor.since


def next_since(read_at: float, reach_back: float = REACH_BACK) -> int:
    """Where the window after a read at `read_at` begins: `reach_back` before it, in accounting's whole
    seconds (a shared stream and each watcher's cursor must agree on it to the second)."""
    return int(read_at - reach_back)


def end_second(job: SlurmJob) -> int:
    """The job's end as whole epoch seconds, accounting's resolution (0 while it has none)."""
    return int(job.end_time.timestamp()) if job.end_time else 0


def _is_event(job: SlurmJob) -> bool:
    return job.is_terminal and job.end_time is not None and job.array_task_id is None


def read_window(ops: SlurmOperations, since: float, now: float, users: Iterable[str] = ()) -> Protocol[EndedWindow]:
    """Read accounting's window of `users`' jobs (the connection's login when none) that ended from
    `since` (to a minute past `now`, our clock). Where accounting cannot filter by user (22.05) the
    window holds what the token may read: only the users' jobs are kept."""
    wanted = tuple(users)
    jobs = yield from ops.accounting_ended(since, now + ENDS_AHEAD, wanted)
    users_kept = set(wanted) or {ops.state.config.login}
    return EndedWindow(since, now, tuple(job for job in jobs if job.user in users_kept))
