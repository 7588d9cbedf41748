"""Slurm job states and Slurm's own rule for when a job is over."""

from __future__ import annotations

from enum import Enum


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
TRANSIENT_FLAGS = frozenset({"COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING", "STAGE_OUT", "SIGNALING"})

#: What counts as success unless a sensor is told otherwise (a COMPLETED job must also exit 0).
DEFAULT_SUCCESS_STATES = frozenset({JobState.COMPLETED.value})
