"""MaxwellJobTrigger: waits in the triggerer for a Slurm job's final accounting record, and the one
event it fires (`JobEvent`), made here and read by the operator and the sensor."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_maxwell.exceptions import MaxwellError
from airflow_provider_maxwell.outcome import Outcome, judge
from airflow_provider_maxwell.slurm.states import DEFAULT_SUCCESS_STATES
from airflow_provider_maxwell.watch import (
    USAGE_READ_PAUSES,
    JobWatch,
    Observation,
    WatchDeadlineExceeded,
    WatchSpec,
    usage_to_read,
)

if TYPE_CHECKING:
    from airflow_provider_maxwell.client.drivers import SlurmClient
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
    from airflow_provider_maxwell.live_output import OutputFollower
    from airflow_provider_maxwell.slurm.job import SlurmJob

EventStatus = Literal["success", "failed", "timeout", "error"]

# Usage reads at once per triggerer event loop: a wave of jobs ending together queues here rather than
# as hundreds of requests in httpx's pool (whose queue handling is quadratic, docs/waiting-at-scale.md).
USAGE_READS_AT_ONCE = 4
_usage_reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _usage_read_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    if loop not in _usage_reads:
        _usage_reads[loop] = asyncio.Semaphore(USAGE_READS_AT_ONCE)
    return _usage_reads[loop]


@dataclass(frozen=True)
class JobEvent:
    """What the trigger tells the task when it fires: the job's outcome, or why the wait ended without one."""

    status: EventStatus
    job_id: int
    message: str
    retryable: bool = True  # False: a user cancelled the job outside Airflow
    summary: dict[str, Any] = field(default_factory=dict)  # the XCom summary (success and failed only)

    @classmethod
    def of(cls, job_id: int, outcome: Outcome) -> JobEvent:
        """The event for a job that ended."""
        status: EventStatus = "success" if outcome.succeeded else "failed"
        return cls(status, job_id, outcome.message, outcome.retryable, outcome.summary)

    @property
    def outcome(self) -> Outcome | None:
        """The job's outcome when it ended; None when the wait ended otherwise (timeout, error)."""
        if self.status not in ("success", "failed"):
            return None
        return Outcome(self.status == "success", self.message, self.retryable, self.summary)

    def to_payload(self) -> dict[str, Any]:
        """The event as the plain dict Airflow stores and hands to `execute_complete`."""
        return {
            "status": self.status,
            "job_id": self.job_id,
            "message": self.message,
            "retryable": self.retryable,
            "summary": self.summary,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> JobEvent:
        """Read what `to_payload` wrote; an event without `retryable` or `summary` reads as retryable, with none."""
        return cls(
            status=payload["status"],
            job_id=int(payload["job_id"]),
            message=str(payload["message"]),
            retryable=bool(payload.get("retryable", True)),
            summary=dict(payload.get("summary") or {}),
        )


class MaxwellJobTrigger(BaseTrigger):
    """Fires one event when the job (every task of an array) has ended, as accounting records it.

    All triggers of one connection in a triggerer share one poller (triggers/poller.py): per
    interval one slurmctld request for the state of all their jobs, accounting by id for those that
    ended or changed; one token, one connection pool.

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
        live_output: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.maxwell_conn_id = maxwell_conn_id
        self.spec = WatchSpec(**spec)
        self.success_states = sorted(success_states or DEFAULT_SUCCESS_STATES)
        self.cancel_on_deadline = cancel_on_deadline
        # where the job's output file is, which files may be read as it (live_output.py), where the worker left it
        self.live_output = live_output

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The trigger's class path and kwargs, as stored (in plain text) in Airflow's database: no secrets."""
        return (
            "airflow_provider_maxwell.triggers.job.MaxwellJobTrigger",
            {
                "maxwell_conn_id": self.maxwell_conn_id,
                "spec": self.spec.to_kwargs(),
                "success_states": self.success_states,
                "cancel_on_deadline": self.cancel_on_deadline,
                "live_output": self.live_output,
            },
        )

    def _hook(self) -> MaxwellHook:
        """The trigger speaks to Slurm through the hook's async methods, as operators do through its sync
        ones; only the shared poller is handed the hook's client, since it serves many triggers at once."""
        from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

        return MaxwellHook(self.maxwell_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait through the shared poller and yield exactly one event: success, failed, timeout or error."""
        job_id = self.spec.job_id
        hook = self._hook()
        try:
            jobs = await self._wait(await hook.aclient())
        except WatchDeadlineExceeded as error:
            done = (
                ("; cancelled it" if await self._cancel() else "; could not cancel it")
                if self.cancel_on_deadline
                else ""
            )
            yield TriggerEvent(JobEvent("timeout", job_id, f"{error}{done}").to_payload())
            return
        except MaxwellError as error:
            yield TriggerEvent(JobEvent("error", job_id, str(error)).to_payload())
            return
        jobs = await self._with_usage(hook, jobs)
        outcome = judge(job_id, jobs, frozenset(self.success_states))
        yield TriggerEvent(JobEvent.of(job_id, outcome).to_payload())

    async def _wait(self, client: SlurmClient) -> list[SlurmJob]:
        """Feed this job's observations from the shared poller to its own JobWatch until it ends."""
        from airflow_provider_maxwell.live_output import follower_from_kwargs
        from airflow_provider_maxwell.triggers.poller import JobPoller

        poller = JobPoller.for_client(client)
        job_watch = JobWatch(self.spec, url=client.state.config.host)
        follower = follower_from_kwargs(self.live_output)
        async with poller.subscribe(job_watch) as inbox:
            while True:
                job_watch.check_deadline(time.time())
                try:
                    seen: Observation | None = await asyncio.wait_for(inbox.get(), self._wake_after(follower))
                except asyncio.TimeoutError:
                    seen = None  # the deadline check above ends the wait; a followed output file is read below
                if seen is not None:
                    notes, final = job_watch.step(seen, time.time())
                    for note in notes:
                        self.log.info("%s", note)
                    if final is not None:
                        return final
                if follower is not None and not follower.stopped:  # a slow shared filesystem must not stall the loop
                    for line in await asyncio.to_thread(follower.read):
                        self.log.info("Slurm job %s | %s", self.spec.job_id, line)

    def _wake_after(self, follower: OutputFollower | None) -> float | None:
        """Seconds to wait for the poller's news: until the deadline, and while an output file is followed
        no longer than the poll interval. The poller sends news only when the job's state changes; a job
        printing for hours in one state must still have its lines read."""
        wake = None if self.spec.deadline is None else max(self.spec.deadline - time.time(), 0.0) + 0.1
        if follower is not None and not follower.stopped:  # stopped: its budget spent, or its file refused
            wake = self.spec.poll_interval if wake is None else min(wake, self.spec.poll_interval)
        return wake

    async def _with_usage(self, hook: MaxwellHook, jobs: list[SlurmJob]) -> list[SlurmJob]:
        """The final records with what their steps measured: `watch.with_settled_usage`'s loop (the
        shared listing skips steps, and a job seen ending may not have its steps' ends written yet), with
        each read queued among this loop's triggers but no slot held while pausing. Usage is a report,
        not the verdict: a failed read is said and the records stay as they were."""
        from airflow_provider_maxwell.efficiency import with_measured_usage

        read_before = False  # the shared listing's records
        for pause in USAGE_READ_PAUSES:
            if not usage_to_read(jobs, read_before=read_before):
                break
            await asyncio.sleep(pause)
            try:
                async with _usage_read_slots():
                    detailed = await hook.aget_accounting_jobs(self.spec.job_id)
            except MaxwellError as error:
                self.log.warning("Could not read the resource usage of Slurm job %s: %s", self.spec.job_id, error)
                break
            jobs, read_before = with_measured_usage(jobs, detailed), True
        return jobs

    async def _cancel(self) -> bool:
        """Cancel the job; False (and a warning) when Slurm did not."""
        try:
            await self._hook().acancel_job(self.spec.job_id)
        except MaxwellError as error:
            self.log.warning("Could not cancel Slurm job %s: %s", self.spec.job_id, error)
            return False
        self.log.info("Cancelled Slurm job %s", self.spec.job_id)
        return True

    async def on_kill(self) -> None:
        """The user marked the task failed or cleared it: the job must not run on unattended."""
        await self._cancel()
