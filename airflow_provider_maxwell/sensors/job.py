"""MaxwellJobSensor: wait on any Slurm job id (e.g. from another task's XCom) until it ends."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_maxwell.compat import conf
from airflow_provider_maxwell.links import SlurmJobLink
from airflow_provider_maxwell.slurm.states import DEFAULT_SUCCESS_STATES

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
    from airflow_provider_maxwell.outcome import Outcome
    from airflow_provider_maxwell.watch import JobWatch


class MaxwellJobSensor(BaseSensorOperator):
    """Succeeds when the Slurm job ends in one of `success_states` (as accounting records it);
    fails at once when it ends in any other state.

    :param job_id: the Slurm job id. Templated, e.g. ``"{{ ti.xcom_pull(task_ids='submit') }}"``.
    :param maxwell_conn_id: Airflow connection of type ``maxwell``.
    :param success_states: final states that count as success (default ``{"COMPLETED"}``; a COMPLETED
        job must also have exit code 0).
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).

    With ``job_url_template`` in the connection, the task has a "Slurm job" button to the job's page
    while it waits and after.
    """

    template_fields: Sequence[str] = ("job_id",)
    ui_color = "#e8f4fd"
    operator_extra_links = (SlurmJobLink(),)

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
        self.success_states = frozenset(success_states or DEFAULT_SUCCESS_STATES)
        self.deferrable = deferrable
        self._watch: JobWatch | None = None  # kept across pokes of one process
        self._claimed = False  # whether a look has checked the id names a job, and whose

    def _hook(self) -> MaxwellHook:
        from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

        return MaxwellHook(self.maxwell_conn_id)

    def _check(self, hook: MaxwellHook, context: Context | None = None) -> tuple[bool, JobWatch]:
        """One look through the same JobWatch the operator and the trigger use: done once accounting has
        the job's final record (raises if it did not succeed); the watch is kept for the next poke."""
        from airflow_provider_maxwell.exceptions import MaxwellConfigError, SlurmJobNotFound
        from airflow_provider_maxwell.outcome import judge
        from airflow_provider_maxwell.slurm.job import parse_job_id
        from airflow_provider_maxwell.watch import JobWatch, WatchSpec, observe, with_settled_usage

        client = hook.client
        login = client.state.config.login
        if self._watch is None:
            spec = WatchSpec(
                job_id=parse_job_id(self.job_id),
                user=login,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout if self.timeout else None,
            )
            self._watch = JobWatch(spec, url=client.state.config.host)
        job_watch = self._watch
        seen = client.run(observe(client.ops, job_watch))
        if not self._claimed and seen.error is None:  # the first look that got an answer
            self._claimed = True
            newest = job_watch.claim(seen)
            if newest is None:
                raise SlurmJobNotFound(job_watch.spec.job_id, status=None, url=job_watch.url)
            if newest.user and newest.user != login:
                raise MaxwellConfigError(
                    f"job_id {newest.job_id} belongs to user {newest.user!r}, not to {login!r} of connection "
                    f"{self.maxwell_conn_id!r}: check the job id, or use a connection of that user"
                )
        notes, final = job_watch.step(seen, time.time())
        for note in notes:
            self.log.info("%s", note)
        if final is None:
            return False, job_watch
        final = client.run(with_settled_usage(client.ops, job_watch.spec.job_id, final))
        self._raise_unless(judge(job_watch.spec.job_id, final, self.success_states), context)
        return True, job_watch

    def _raise_unless(self, outcome: Outcome, context: Context | None = None) -> None:
        from airflow_provider_maxwell.compat import AirflowFailException, AirflowSkipException
        from airflow_provider_maxwell.efficiency import usage_line
        from airflow_provider_maxwell.outcome import SUMMARY_XCOM_KEY

        ti = context.get("ti") if context is not None else None
        if ti is not None:  # the same summary the operator pushes, usage included
            ti.xcom_push(key=SUMMARY_XCOM_KEY, value=outcome.summary)
        if "usage" in outcome.summary:
            self.log.info("%s", usage_line(int(outcome.summary["job_id"]), outcome.summary["usage"]))

        if outcome.succeeded:
            self.log.info("%s", outcome.message)
            return
        if self.soft_fail:
            raise AirflowSkipException(outcome.message)
        raise AirflowFailException(outcome.message)

    def poke(self, context: Context) -> bool:
        """One look at the job: True once accounting has its final record; raises if it did not succeed."""
        return self._check(self._hook(), context)[0]

    def execute(self, context: Context) -> Any:
        """Poke, or check once and defer to the triggerer (a job already done never defers)."""
        from airflow_provider_maxwell.links import persist_job_link, show_job_link
        from airflow_provider_maxwell.slurm.job import parse_job_id

        show_job_link(self, None)  # until the connection says where the job's page is
        hook = self._hook()
        # First: the button works while the task waits (here or deferred), and for a job that failed.
        persist_job_link(self, context, hook.config, parse_job_id(self.job_id))
        if not self.deferrable:
            return super().execute(context)
        done, job_watch = self._check(hook, context)
        if done:
            return job_watch.spec.job_id
        from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger

        self.defer(
            trigger=MaxwellJobTrigger(
                maxwell_conn_id=self.maxwell_conn_id,
                spec=job_watch.spec.to_kwargs(),  # pinned to the job seen, by Slurm's submit time
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
        from airflow_provider_maxwell.links import known_job_page, show_job_link
        from airflow_provider_maxwell.triggers.job import JobEvent

        job_event = JobEvent.from_payload(event)
        show_job_link(self, known_job_page(lambda: self._hook().config, job_event.job_id))
        outcome = job_event.outcome
        if outcome is not None:
            self._raise_unless(outcome, context)
            return job_event.job_id
        if self.soft_fail:
            raise AirflowSkipException(job_event.message)
        raise AirflowException(f"Waiting for Slurm job {job_event.job_id} failed: {job_event.message}")
