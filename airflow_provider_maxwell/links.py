"""The "Slurm job" extra link: a task's button to its job's web page, from the connection's
`job_url_template`.

The operator and the sensor push the URL to XCom as soon as they know the job, so the button works
while the task waits (in the worker or deferred). Airflow's API server shows whatever is stored
under the link's XCom key; at the end of each run of the task (deferring included) the worker calls
`get_link` and stores its answer there again, so it returns what was pushed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
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
        """The URL pushed for this task instance; empty when none was (no template, or no job yet)."""
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=JOB_LINK_XCOM_KEY)
        return url if isinstance(url, str) else ""


def persist_job_link(context: Context, config: MaxwellConnectionConfig, job_id: int) -> str | None:
    """Store the job's page for the task's "Slurm job" button; nothing when the connection has no template."""
    url = config.job_url(job_id)
    if url:
        context["ti"].xcom_push(key=JOB_LINK_XCOM_KEY, value=url)
    return url
