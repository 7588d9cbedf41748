"""Finding the job of a submission whose answer was lost, before sending it again (exactly one job per
submit): each submission carries a mark no other carries, in the job's comment, and is looked for by it.

Accounting is searched by name and user (a few records, not the cluster's queue), but it stores a
job's comment only when the job ends: a live job found there is read from slurmctld by id.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Protocol as Structure

from airflow_provider_maxwell.effects import Protocol, Sleep
from airflow_provider_maxwell.exceptions import SlurmTransientError

if TYPE_CHECKING:
    from airflow_provider_maxwell.client.state import ConnectionState
    from airflow_provider_maxwell.slurm.dialects import ApiDialect, Route
    from airflow_provider_maxwell.slurm.job import SlurmJob

# Pauses before each look for a job whose submission's answer was lost: accounting may lag behind
# slurmctld, and slurmrestd may still be holding the request.
LOST_ANSWER_LOOKS = (2.0, 5.0, 10.0, 20.0, 40.0)
CLOCK_SKEW = 300  # seconds: the search window opens this much before the sending, for hosts' clocks
LIVE_LOOKUPS = 20  # live same-named jobs read from slurmctld per look for a lost submission's job


class Reads(Structure):
    """The reads a search needs (SlurmOperations has them; named here, which imports this module)."""

    state: ConnectionState

    def dialect(self) -> Protocol[ApiDialect]:
        """The REST API version spoken."""
        ...

    def accounting_query(
        self, route: Route, what: str, params: Mapping[str, str] | None = None, *, deadline: float | None = None
    ) -> Protocol[list[SlurmJob]]:
        """An accounting route's jobs (only what the search passes: the route, the params, a deadline)."""
        ...

    def controller_jobs(self, job_id: int, deadline: float | None = None) -> Protocol[list[SlurmJob] | None]:
        """slurmctld's records under a job id."""
        ...


def submission_mark() -> str:
    """A word no other submission carries: put in the job's comment, it identifies the job of one call."""
    return f"maxwell-submission:{secrets.token_hex(8)}"


def carries(job: SlurmJob, mark: str) -> bool:
    """Whether the job's comment holds `mark` as one of its words."""
    return mark in (job.comment or "").split()


def find_marked(ops: Reads, mark: str, name: object, since: float, deadline: float) -> Protocol[int | None]:
    """The job carrying `mark`, looked for after each of `LOST_ANSWER_LOOKS` (accounting may lag behind,
    and a request slurmrestd still holds may create the job later) while `deadline` (epoch seconds)
    leaves room; None if none shows up. A look that gets no answer found nothing: the next asks again."""
    dialect = yield from ops.dialect()
    login = ops.state.config.login
    params = dialect.accounting_search(name, login) if isinstance(name, str) and name else {}
    params |= {"start_time": dialect.accounting_time(since - CLOCK_SKEW), "skip_steps": "true"}
    read_without_mark: set[int] = set()  # a job's comment does not change: read once per search
    for pause in LOST_ANSWER_LOOKS:
        if time.time() + pause >= deadline:
            return None
        yield Sleep(pause)
        try:
            found = yield from _look(ops, dialect, mark, params, since, deadline, read_without_mark)
        except SlurmTransientError:
            continue
        if found is not None:
            return found
    return None


def _look(
    ops: Reads,
    dialect: ApiDialect,
    mark: str,
    params: dict[str, str],
    since: float,
    deadline: float,
    read_without_mark: set[int],
) -> Protocol[int | None]:
    """One look: accounting's records of the name, then the live ones' slurmctld records."""
    what = f"Could not look for the job of submission {mark}"
    records = yield from ops.accounting_query(dialect.accounting_jobs, what, params, deadline=deadline)
    marked = [r.job_id for r in records if carries(r, mark)]
    if marked:
        return min(marked)
    # Nearest to the sending first: in a burst of same-named submissions ours is among them.
    live = [r for r in records if not r.comment and r.job_id not in read_without_mark]
    for record in sorted(live, key=lambda r: abs(r.submitted - since))[:LIVE_LOOKUPS]:
        current = yield from ops.controller_jobs(record.job_id, deadline=deadline)
        if any(carries(job, mark) for job in current or []):
            return record.job_id
        read_without_mark.add(record.job_id)
    return None
