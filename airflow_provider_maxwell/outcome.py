"""What a finished Slurm job means for an Airflow task: the summary pushed to XCom and, when it
did not succeed, one clear line saying why. No Airflow imports: operators and sensors share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_maxwell.efficiency import usage_summary
from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.slurm.states import DEFAULT_SUCCESS_STATES, JobState
from airflow_provider_maxwell.watch import elapsed_text

SUMMARY_XCOM_KEY = "slurm_job"  # documented: the job summary operators push besides the job id
MAX_LISTED_FAILURES = 5


@dataclass(frozen=True)
class Outcome:
    """What a finished job means for the task: success, a one-line message, retryable, an XCom summary."""

    succeeded: bool
    message: str
    retryable: bool  # False: a user cancelled the job outside Airflow; retrying would undo their decision
    summary: dict[str, Any]


def summarize(job_id: int, jobs: list[SlurmJob]) -> dict[str, Any]:
    """JSON-able facts about the finished job (every value a plain type: it goes to XCom)."""
    first = jobs[0]
    starts = [j.start_time for j in jobs if j.start_time]
    ends = [j.end_time for j in jobs if j.end_time]
    start, end = (min(starts) if starts else None), (max(ends) if ends else None)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
    nodes = sorted({n for j in jobs for n in (j.nodes or "").split(",") if n})
    summary: dict[str, Any] = {
        "job_id": job_id,
        "name": first.name,
        "user": first.user,
        "state": first.state.value if len(jobs) == 1 else _array_state(jobs),
        "exit_code": first.exit_code if len(jobs) == 1 else None,
        "nodes": ",".join(nodes),
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
        "elapsed": elapsed_text(start, end),
        "output": first.output_path(),
    }
    if len(jobs) > 1 or first.array_task_id is not None:
        summary["array_tasks"] = len(jobs)
        summary["state_counts"] = counts
        summary["failed_tasks"] = [
            {"index": j.array_task_id, "state": j.state.value, "exit_code": j.exit_code}
            for j in jobs
            if not j.succeeded()
        ]
    usage = usage_summary(jobs)
    if usage is not None:
        summary["usage"] = usage  # documented keys: efficiency.py
    return summary


def _array_state(jobs: list[SlurmJob]) -> str:
    return JobState.COMPLETED.value if all(j.succeeded() for j in jobs) else JobState.FAILED.value


def judge(job_id: int, jobs: list[SlurmJob], success_states: frozenset[str] = DEFAULT_SUCCESS_STATES) -> Outcome:
    """The outcome of a job (or all tasks of an array) from its final records."""
    summary = summarize(job_id, jobs)
    if all(j.succeeded(success_states) for j in jobs):
        state = summary["state"]
        return Outcome(
            True, f"Slurm job {job_id} ({summary['name']}) ended {state} after {summary['elapsed']}", True, summary
        )
    failed = [j for j in jobs if not j.succeeded(success_states)]
    cancelled = any(j.state is JobState.CANCELLED for j in failed)
    infrastructure = all(j.state.is_infrastructure_failure for j in failed)
    where = f" on {summary['nodes']}" if summary["nodes"] else ""
    output = f"; output: {summary['output']}" if summary["output"] else ""
    if len(jobs) == 1 and jobs[0].array_task_id is None:
        job = jobs[0]
        how = f" with exit code {job.exit_code}" if job.exit_code not in (None, 0) else ""
        how += f" by signal {job.signal}" if job.signal else ""
        message = (
            f"Slurm job {job_id} ({job.name}) ended {job.state.value}{how} after {summary['elapsed']}{where}{output}"
        )
    else:
        listed = ", ".join(
            f"{j.array_task_id}: {j.state.value}"
            + (f" (exit code {j.exit_code})" if j.exit_code not in (None, 0) else "")
            for j in failed[:MAX_LISTED_FAILURES]
        )
        more = f" and {len(failed) - MAX_LISTED_FAILURES} more" if len(failed) > MAX_LISTED_FAILURES else ""
        message = (
            f"Slurm array job {job_id} ({summary['name']}): {len(failed)} of {len(jobs)} tasks did not complete "
            f"[{listed}{more}] after {summary['elapsed']}{where}{output}"
        )
    if cancelled and not infrastructure:
        message += " (cancelled outside Airflow: not retried)"
    elif infrastructure:
        message += " (ended by the cluster, not the job: retryable)"
    return Outcome(False, message, not cancelled or infrastructure, summary)
