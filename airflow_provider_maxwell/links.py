"""The "Slurm job" extra link: a task's button to its job's web page, from the connection's
`job_url_template`.

The operator and the sensor push the URL to XCom as soon as they know the job, so the button works
while the task waits (in the worker or deferred). Airflow's API server shows whatever is stored
under the link's XCom key; at the end of each run of the task (deferring included) the worker calls
`get_link` and stores its answer there again, so it answers what this run pushed, and a run without
a page offers no link at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import Context

    from airflow_provider_maxwell.config import MaxwellConnectionConfig

JOB_LINK_XCOM_KEY = "slurm_job_url"  # renaming it hides the links of finished tasks


class SlurmJobLink(BaseOperatorLink):
    """A task's "Slurm job" button: its job's page, as the connection's `job_url_template` builds it."""

    name = "Slurm job"

    @property
    def xcom_key(self) -> str:
        """Where the URL is stored (the API server reads it there)."""
        return JOB_LINK_XCOM_KEY

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The page of the job this run of the task knows (`show_job_link`). Airflow's worker stores this
        answer under `xcom_key` when each run ends, deferrals included; the API server only reads it.

        Taken from the task, not read back from XCom: before the key exists (no template, or a run that
        ended before it knew its job) Airflow's client logs an error line in the task log for the read."""
        return str(getattr(operator, JOB_URL_ATTRIBUTE, None) or "")


JOB_URL_ATTRIBUTE = "_maxwell_job_url"  # where a running task keeps its job's page for `get_link`


def show_job_link(task: Any, url: str | None) -> None:
    """Give this run of the task its "Slurm job" button, or none (`url` None: no template, or no job yet).

    Airflow's worker stores what each of the task's links answers when a run ends, an empty answer
    too: a task without a page offers no link to store (the button is declared on the class, for the
    UI, and stays there; this changes only the running instance)."""
    setattr(task, JOB_URL_ATTRIBUTE, url)
    task.operator_extra_links = (SlurmJobLink(),) if url else ()


def known_job_page(config_of: Callable[[], MaxwellConnectionConfig], job_id: int) -> str | None:
    """The job's page after a deferral (stored before it): None when the connection has no template, or
    cannot be read now (the button is no reason to fail the task; the task's own steps say what is wrong)."""
    from airflow_provider_maxwell.exceptions import MaxwellError

    try:
        return config_of().job_url(job_id)
    except MaxwellError:
        return None


def persist_job_link(task: Any, context: Context, config: MaxwellConnectionConfig, job_id: int) -> str | None:
    """Store the job's page for the task's "Slurm job" button (nothing when the connection has no template),
    and give this run the button (`show_job_link`)."""
    url = config.job_url(job_id)
    if url:
        context["ti"].xcom_push(key=JOB_LINK_XCOM_KEY, value=url)
    show_job_link(task, url)
    return url
