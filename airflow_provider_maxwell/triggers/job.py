"""MaxwellJobTrigger: waits in the triggerer for a Slurm job's final accounting record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_maxwell.exceptions import MaxwellError
from airflow_provider_maxwell.outcome import DEFAULT_SUCCESS_STATES, judge
from airflow_provider_maxwell.watch import WatchDeadlineExceeded, WatchSpec


class MaxwellJobTrigger(BaseTrigger):
    """Fires one event when the job (every task of an array) has ended, as accounting records it.

    Its kwargs are stored in plain text in Airflow's database: they hold the connection id, the job
    and timing values, never a token. Credentials are fetched inside the triggerer.
    """

    def __init__(
        self,
        *,
        maxwell_conn_id: str,
        spec: dict[str, Any],
        success_states: list[str] | None = None,
        cancel_on_deadline: bool = True,
    ) -> None:
        super().__init__()
        self.maxwell_conn_id = maxwell_conn_id
        self.spec = WatchSpec(**spec)
        self.success_states = sorted(success_states or DEFAULT_SUCCESS_STATES)
        self.cancel_on_deadline = cancel_on_deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_maxwell.triggers.job.MaxwellJobTrigger",
            {
                "maxwell_conn_id": self.maxwell_conn_id,
                "spec": self.spec.to_kwargs(),
                "success_states": self.success_states,
                "cancel_on_deadline": self.cancel_on_deadline,
            },
        )

    def _hook(self) -> Any:
        from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

        return MaxwellHook(self.maxwell_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        job_id = self.spec.job_id
        hook = self._hook()
        try:
            jobs = await hook.await_job(self.spec)
        except WatchDeadlineExceeded as error:
            if self.cancel_on_deadline:
                await self._cancel(hook)
            yield TriggerEvent({"status": "timeout", "job_id": job_id, "message": f"{error}; cancelled it"})
            return
        except MaxwellError as error:
            yield TriggerEvent({"status": "error", "job_id": job_id, "message": str(error)})
            return
        outcome = judge(job_id, jobs, frozenset(self.success_states))
        yield TriggerEvent(
            {
                "status": "success" if outcome.succeeded else "failed",
                "job_id": job_id,
                "message": outcome.message,
                "retryable": outcome.retryable,
                "summary": outcome.summary,
            }
        )

    async def _cancel(self, hook: Any) -> None:
        try:
            await hook.acancel_job(self.spec.job_id)
            self.log.info("Cancelled Slurm job %s", self.spec.job_id)
        except MaxwellError as error:
            self.log.warning("Could not cancel Slurm job %s: %s", self.spec.job_id, error)

    async def on_kill(self) -> None:
        """The user marked the task failed or cleared it: the job must not run on unattended."""
        await self._cancel(self._hook())
