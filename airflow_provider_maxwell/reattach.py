"""Which job a retry of a task instance builds on instead of submitting another (durable execution).

The job a previous try submitted is found by the id it saved in Airflow's task state store, or, after a
crash between submit and save, by the tag every job carries in its comment. A job is built on while it
runs or once it completed; a failed one (an array with any failed task) is not: the retry submits afresh.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_maxwell.compat import TaskLog
from airflow_provider_maxwell.exceptions import SlurmJobNotFound

if TYPE_CHECKING:
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
    from airflow_provider_maxwell.slurm.job import SlurmJob

JOB_ID_STATE_KEY = "maxwell_job_id"  # task_state_store key; renaming it breaks in-flight retries
COMMENT_TAG_PREFIX = "airflow:"


def comment_tag(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """What every job carries in its comment, so a retry can find the job of its task instance."""
    return f"{COMMENT_TAG_PREFIX}{dag_id}/{task_id}/{run_id}/{map_index if map_index is not None else -1}"


def task_instance_tag(ti: Any) -> str:
    """The comment tag of a task instance (as Airflow's context hands it)."""
    return comment_tag(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))


def job_to_build_on(
    hook: MaxwellHook,
    store: Any,
    *,
    saved_id_key: str,
    try_number: int,
    name: str,
    tag: str,
    is_array: bool,
    log: TaskLog,
) -> SlurmJob | None:
    """The job a previous try of this task instance submitted, if there is one to build on.

    Saved job id first (`store`, Airflow's task state store, under `saved_id_key`); else, after a crash
    between submit and save, the newest job of this user with this name whose comment carries this task
    instance's `tag`. A failed earlier job is not built on: the caller submits afresh.
    """
    stored = store.get(saved_id_key) if store is not None else None
    if stored:
        try:
            job = hook.get_job(int(str(stored)))
        except SlurmJobNotFound:
            log.warning("Saved Slurm job %s is unknown to Slurm: submitting afresh", stored)
            return None
        if job.user == hook.config.login:
            if is_array:
                return whole_array(hook, job, log)
            return job if (not job.is_terminal or job.is_success) else None
    if try_number <= 1 and not stored:
        return None  # a first try has nothing to re-attach to: skip the search
    candidates = [j for j in hook.find_jobs_by_name(name) if j.comment and j.comment.split(" ", 1)[0] == tag]
    if not candidates:
        return None
    job = candidates[-1]
    if is_array:
        return whole_array(hook, job, log)
    if job.is_terminal and not job.is_success:
        log.info("Earlier Slurm job %s of this task instance ended %s: submitting afresh", job.job_id, job.state_text)
        return None
    return hook.get_job(job.job_id) if not job.is_terminal else job


def whole_array(hook: MaxwellHook, job: SlurmJob, log: TaskLog) -> SlurmJob | None:
    """An earlier array job to build on, judged by all its tasks (one record says one task's state):
    a live task's record to re-attach to, the job if every task completed, else None (submit afresh).
    Either comes under the array's id, which the wait follows: `job` may be one started task's record
    (a search by tag finds those under their own ids)."""
    array_id = job.array_job_id or job.job_id
    tasks = hook.get_controller_jobs(array_id) or hook.get_accounting_jobs(array_id) or [job]
    live = [t for t in tasks if not t.is_terminal]
    if live:
        return replace(live[0], job_id=array_id)
    if all(t.is_success for t in tasks):
        return replace(job, job_id=array_id)
    log.info("Earlier Slurm array job %s of this task instance had failed tasks: submitting anew", array_id)
    return None
