"""Slurm job states, and the one rule for when a job is over, is ending, and when accounting (not
slurmctld) is the one to ask about it."""

from __future__ import annotations

from collections.abc import Collection
from enum import Enum
from typing import Protocol


class JobState(str, Enum):
    """Base state of a Slurm job (the part of `job_state` that is not a flag)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """True for states a job never leaves."""
        return self in TERMINAL_STATES

    @property
    def is_infrastructure_failure(self) -> bool:
        """Ended by the cluster, not by the job: worth an automatic retry."""
        return self in (JobState.NODE_FAIL, JobState.BOOT_FAIL, JobState.PREEMPTED)

    @classmethod
    def parse(cls, text: str) -> JobState:
        """The state for Slurm's name of it; UNKNOWN for names it does not know."""
        try:
            return cls(text.upper())
        except ValueError:
            return cls.UNKNOWN


TERMINAL_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.OUT_OF_MEMORY,
    }
)

# Flags that can stand instead of a base state in the string form (<= v0.0.39), or beside it.
# COMPLETING means processes may still run: never terminal while it is set.
COMPLETING = "COMPLETING"
TRANSIENT_FLAGS = frozenset({"COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING", "STAGE_OUT", "SIGNALING"})

#: What counts as success unless a sensor is told otherwise (a COMPLETED job must also exit 0).
DEFAULT_SUCCESS_STATES = frozenset({JobState.COMPLETED.value})


class StateWord(Protocol):
    """What a job's state is read from: a full record (SlurmJob) or jobs/state's short word (JobStatus)."""

    @property
    def state(self) -> JobState:
        """The base state."""

    @property
    def flags(self) -> frozenset[str]:
        """The flags beside it (COMPLETING among them)."""


def has_ended(job: StateWord) -> bool:
    """Slurm's own rule: a final base state and no COMPLETING flag (processes may still run)."""
    return job.state.is_terminal and COMPLETING not in job.flags


def ended_or_ending(job: StateWord) -> bool:
    """Ended, or ending (COMPLETING while its epilog runs): accounting has, or soon has, its end."""
    return job.state.is_terminal or COMPLETING in job.flags


def accounting_due(said: Collection[StateWord], *, ending_will_do: bool) -> bool:
    """Whether accounting, not slurmctld, is now the one to ask about a wait, from slurmctld's entries
    for it (every task it still holds, for an array): it holds none of them (purged, or never ours), or
    every one has ended. Tasks slurmctld purged ended before, so they do not hold an array back; its
    tasks not started yet are held as a pending entry, which does.

    `ending_will_do`: an ending job (COMPLETING) counts as ended. The shared poller asks accounting at
    once (it reads the verdict only; waiting for the flag to drop cost an interval, measured 23.8 s
    worst delay at 10 s with 1,000 waits); the per-job wait reads the job's usage in the same answer,
    so it leaves the epilog to finish, as it always has (issue 26: the deferred wait's usage read,
    made right at the end, missed a peak the worker's read found).
    """
    ended = ended_or_ending if ending_will_do else has_ended
    return all(ended(entry) for entry in said)
