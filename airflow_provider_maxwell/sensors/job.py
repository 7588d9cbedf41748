"""MaxwellJobSensor: wait on any Slurm job id (e.g. from another task's XCom) until it ends."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_maxwell.compat import conf

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook


class MaxwellJobSensor(BaseSensorOperator):
    """Succeeds when the Slurm job ends in one of `success_states` (as accounting records it);
    fails at once when it ends in any other state.

    :param job_id: the Slurm job id. Templated, e.g. ``"{{ ti.xcom_pull(task_ids='submit') }}"``.
    :param maxwell_conn_id: Airflow connection of type ``maxwell``.
    :param success_states: final states that count as success (default ``{"COMPLETED"}``; a COMPLETED
        job must also have exit code 0).
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("job_id",)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        job_id: int | str,
        maxwell_conn_id: str = "maxwell_default",
        success_states: set[str] | frozenset[str] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.job_id = job_id
        self.maxwell_conn_id = maxwell_conn_id
        self.success_states = frozenset(success_states or {"COMPLETED"})
        self.deferrable = deferrable

    def _hook(self) -> MaxwellHook:
        from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

        return MaxwellHook(self.maxwell_conn_id)

    def _check(self, hook: MaxwellHook) -> tuple[bool, Any]:
        """(done, first record seen): done once accounting has the job's final record; raises if it failed."""
        from airflow_provider_maxwell.exceptions import MaxwellConfigError
        from airflow_provider_maxwell.outcome import judge

        job = hook.get_job(self.job_id)  # type: ignore[arg-type]
        if job.user and job.user != hook.config.login:
            raise MaxwellConfigError(
                f"job_id {job.job_id} belongs to user {job.user!r}, not to {hook.config.login!r} of connection "
                f"{self.maxwell_conn_id!r}: check the job id, or use a connection of that user"
            )
        if not job.is_terminal:
            self.log.info("Slurm job %s: %s", job.job_id, job.state_text)
            return False, job
        final = job if job.source == "slurmdb" else hook.get_accounting_job(job.job_id)
        if final is not None and job.source == "slurmctld":
            from airflow_provider_maxwell.watch import WatchSpec, merge_live

            # After a state reset accounting may still show an older job under this id as the newest.
            ours = WatchSpec(job.job_id, job.user).pinned_to(job).belongs(final)
            final = merge_live([final], [job])[0] if ours else None
        if final is None or not final.is_terminal:
            self.log.info("Slurm job %s ended %s; waiting for its accounting record", job.job_id, job.state_text)
            return False, job
        self._raise_unless(judge(final.job_id, [final], self.success_states))
        return True, final

    def _raise_unless(self, outcome: Any) -> None:
        from airflow_provider_maxwell.compat import AirflowFailException, AirflowSkipException

        if outcome.succeeded:
            self.log.info("%s", outcome.message)
            return
        if self.soft_fail:
            raise AirflowSkipException(outcome.message)
        raise AirflowFailException(outcome.message)

    def poke(self, context: Context) -> bool:
        """One look at the job: True once accounting has its final record; raises if it did not succeed."""
        return self._check(self._hook())[0]

    def execute(self, context: Context) -> Any:
        """Poke, or check once and defer to the triggerer (a job already done never defers)."""
        if not self.deferrable:
            return super().execute(context)
        hook = self._hook()
        done, seen = self._check(hook)  # a job already done never defers
        if done:
            return seen.job_id
        from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
        from airflow_provider_maxwell.watch import WatchSpec

        spec = WatchSpec(
            job_id=seen.job_id,
            user=hook.config.login,
            submitted_after=seen.submit_time.timestamp() if seen.submit_time else None,
            poll_interval=self.poke_interval,
            deadline=time.time() + self.timeout if self.timeout else None,
        ).pinned_to(seen)
        self.defer(
            trigger=MaxwellJobTrigger(
                maxwell_conn_id=self.maxwell_conn_id,
                spec=spec.to_kwargs(),
                success_states=sorted(self.success_states),
                cancel_on_deadline=False,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 60) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> int:
        """Resume after the trigger's event: succeed, fail (or skip with soft_fail) with the job's outcome."""
        from airflow.sdk.exceptions import AirflowException

        from airflow_provider_maxwell.compat import AirflowSkipException
        from airflow_provider_maxwell.outcome import Outcome

        if event["status"] in ("success", "failed"):
            self._raise_unless(Outcome(event["status"] == "success", event["message"], True, event["summary"]))
            return int(event["job_id"])
        if self.soft_fail:
            raise AirflowSkipException(event["message"])
        raise AirflowException(f"Waiting for Slurm job {event['job_id']} failed: {event['message']}")
