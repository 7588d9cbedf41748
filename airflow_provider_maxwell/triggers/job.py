"""MaxwellJobTrigger: waits in the triggerer for a Slurm job's final accounting record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_maxwell.exceptions import MaxwellError
from airflow_provider_maxwell.outcome import DEFAULT_SUCCESS_STATES, judge
from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.watch import JobWatch, WatchDeadlineExceeded, WatchSpec


class MaxwellJobTrigger(BaseTrigger):
    """Fires one event when the job (every task of an array) has ended, as accounting records it.

    All triggers of one connection in a triggerer share one poller (triggers/poller.py): one
    accounting request per interval for all their jobs, one token, one connection pool.

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
        """The trigger's class path and kwargs, as stored (in plain text) in Airflow's database: no secrets."""
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
        """Wait through the shared poller and yield exactly one event: success, failed, timeout or error."""
        job_id = self.spec.job_id
        hook = self._hook()
        try:
            jobs = await self._wait(hook)
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

    async def _wait(self, hook: Any) -> list[SlurmJob]:
        """Feed this job's observations from the shared poller to its own JobWatch until it ends."""
        from airflow_provider_maxwell.triggers.poller import JobPoller

        poller = await JobPoller.for_hook(hook)
        job_watch = JobWatch(self.spec, url=hook.config.host)
        async with poller.subscribe(job_watch) as inbox:
            while True:
                job_watch.check_deadline(time.time())
                timeout = None if self.spec.deadline is None else max(self.spec.deadline - time.time(), 0.0) + 0.1
                try:
                    seen = await asyncio.wait_for(inbox.get(), timeout)
                except asyncio.TimeoutError:
                    continue  # the deadline check above ends it
                notes, final = job_watch.step(seen, time.time())
                for note in notes:
                    self.log.info("%s", note)
                if final is not None:
                    return final

    async def _cancel(self, hook: Any) -> None:
        try:
            await hook.acancel_job(self.spec.job_id)
            self.log.info("Cancelled Slurm job %s", self.spec.job_id)
        except MaxwellError as error:
            self.log.warning("Could not cancel Slurm job %s: %s", self.spec.job_id, error)

    async def on_kill(self) -> None:
        """The user marked the task failed or cleared it: the job must not run on unattended."""
        await self._cancel(self._hook())
