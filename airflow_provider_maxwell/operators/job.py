"""MaxwellSubmitJobOperator: submit a Slurm batch job on Maxwell and wait for its final state.

Imports at the top are what a DAG file parse needs; everything execution needs is imported inside
the methods that run on a worker (DAG files import this module on every parse).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_maxwell.compat import conf
from airflow_provider_maxwell.links import SlurmJobLink
from airflow_provider_maxwell.reattach import JOB_ID_STATE_KEY, job_to_build_on, task_instance_tag
from airflow_provider_maxwell.slurm.submit import refuse_script_field

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
    from airflow_provider_maxwell.live_output import OutputAccess, OutputFollower
    from airflow_provider_maxwell.outcome import Outcome
    from airflow_provider_maxwell.slurm.job import SlurmJob
    from airflow_provider_maxwell.watch import WatchSpec


class MaxwellSubmitJobOperator(BaseOperator):
    """Submit a Slurm batch job through Maxwell's REST API and (by default) wait until it ends.

    :param script: the batch script, or a path to a ``.sh``/``.slurm``/``.sbatch`` template file.
        Templated. Must start with ``#!``.
    :param maxwell_conn_id: Airflow connection of type ``maxwell``.
    :param name: job name (default ``<dag_id>.<task_id>``). Templated.
    :param partition: Slurm partition, e.g. ``maxcpu`` or ``allcpu``. Templated.
    :param time_limit: minutes, or a ``timedelta``.
    :param environment: environment variables of the job (PATH is always set). Templated.
    :param current_working_directory: the job's working directory (default ``/home/<user>``). Templated.
    :param array: a job array specification such as ``0-99%10``; the task waits for every task. Templated.
    :param job_fields: any other job fields (``nodes``, ``ntasks``, ``cpus_per_task``,
        ``memory_per_node``, ``account``, ``qos``, ``constraints``, ``dependency``, ``comment``,
        ``standard_output``, ``standard_error`` or raw Slurm fields). Templated.
    :param wait_for_completion: wait for the job to end (default). If False, return once submitted.
    :param deferrable: wait in the triggerer instead of holding a worker slot
        (default: ``[operators] default_deferrable``).
    :param poll_interval: seconds between status checks.
    :param timeout: overall wait limit (seconds or timedelta); the job is cancelled when it passes.
    :param log_output_lines: how many last lines of the job's output file to copy into the task log
        at the end, when the worker can read it (shared filesystem); 0 turns it off. Only the job user's
        own file (no symlink) at an output path the task set is copied; any other is said and skipped.
    :param live_output_lines: while the job runs, copy its new output lines to the task log, at most this
        many per poll (lines of at most 500 characters, 2000 lines in all), from the worker or, deferred,
        from the triggerer, wherever the output file is readable (the same rule as the tail's); 0 turns
        it off. Not for arrays.
    :param durable: Airflow 3.3's durable execution (``ResumableJobMixin``'s meaning): a retry of the
        task instance re-attaches to its job instead of submitting another: by the job id saved in the
        task state store under ``external_id_key``, or, after a crash before it was saved, by the tag
        every job carries in its comment. False: every try submits a new job.
    :param rerun_failed_indices: for an array, a retry after a try in which some tasks failed submits
        only those indices (same script, ``array`` narrowed, throttle kept) and waits on them; the
        summary's ``array_results`` merges the tries (per index: state, exit_code, try, job_id). False:
        every retry reruns the whole array. Needs Airflow's task state store (3.3+).

    Returns the job id (XCom ``return_value``) and pushes a summary under the XCom key
    ``slurm_job``: state, exit_code, nodes, start, end, elapsed, output (and per-state counts and
    failed indices for arrays). With ``job_url_template`` in the connection, the task has a
    "Slurm job" button to the job's page from the moment the job is submitted.
    """

    template_fields: Sequence[str] = (
        "script",
        "name",
        "partition",
        "environment",
        "current_working_directory",
        "array",
        "job_fields",
    )
    template_ext: Sequence[str] = (".sh", ".slurm", ".sbatch")
    external_id_key = JOB_ID_STATE_KEY  # as ResumableJobMixin names it
    template_fields_renderers = {"script": "bash", "environment": "json", "job_fields": "json"}
    ui_color = "#e8f4fd"
    operator_extra_links = (SlurmJobLink(),)

    def __init__(
        self,
        *,
        script: str,
        maxwell_conn_id: str = "maxwell_default",
        name: str | None = None,
        partition: str | None = None,
        time_limit: int | float | timedelta | None = None,
        environment: dict[str, str] | None = None,
        current_working_directory: str | None = None,
        array: str | None = None,
        job_fields: dict[str, Any] | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        timeout: float | timedelta | None = None,
        log_output_lines: int = 50,
        live_output_lines: int = 20,
        durable: bool = True,
        rerun_failed_indices: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.script = script
        self.maxwell_conn_id = maxwell_conn_id
        self.name = name
        self.partition = partition
        self.time_limit = time_limit
        self.environment = environment
        self.current_working_directory = current_working_directory
        self.array = array
        self.job_fields = job_fields or {}
        if isinstance(self.job_fields, Mapping):  # a templated string is checked once rendered, at execute
            refuse_script_field(self.job_fields)
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        self.log_output_lines = log_output_lines
        self.live_output_lines = live_output_lines
        self.durable = durable
        self.rerun_failed_indices = rerun_failed_indices
        self.job_id: int | None = None

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Airflow's rendering, with a missing script file reported as such (not a bare TemplateNotFound)."""
        import jinja2

        try:
            super().render_template_fields(context, jinja_env)
        except jinja2.TemplateNotFound as missing:
            from airflow_provider_maxwell.exceptions import MaxwellConfigError

            if not (isinstance(self.script, str) and missing.name == self.script.strip()):
                raise
            dag = getattr(self, "dag", None)
            searched = [str(p) for p in (getattr(dag, "template_searchpath", None) or [])]
            if getattr(dag, "fileloc", None):
                searched.insert(0, str(Path(dag.fileloc).parent))  # type: ignore[union-attr]
            where = ", ".join(searched) or "the DAG folder"
            raise MaxwellConfigError(
                f"script: the file {self.script!r} does not exist (looked in {where}). Give a path relative to the "
                "DAG file or to template_searchpath, or the script's text starting with '#!'"
            ) from None

    # ------------------------------------------------------------------ execution

    def _hook(self) -> MaxwellHook:
        from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

        return MaxwellHook(self.maxwell_conn_id)

    def _fields(self, context: Context) -> dict[str, Any]:
        refuse_script_field(self.job_fields)  # as rendered (the hook's call would fail on it untyped)
        fields = dict(self.job_fields)
        ti = context["ti"]
        fields["name"] = self.name or f"{ti.dag_id}.{ti.task_id}"
        tag = task_instance_tag(ti)
        fields["comment"] = f"{tag} {fields['comment']}" if fields.get("comment") else tag
        for key in ("partition", "time_limit", "environment", "current_working_directory", "array"):
            value = getattr(self, key)
            # A template cannot render None: an optional field rendered empty means "not set".
            if value is not None and value != "":
                fields[key] = value
        return fields

    def execute(self, context: Context) -> int:
        """Submit the job (or re-attach to this task instance's job), then wait here or defer, as configured."""
        from airflow_provider_maxwell.array_retry import narrow_to_failed_indices
        from airflow_provider_maxwell.links import persist_job_link, show_job_link

        show_job_link(self, None)  # no job yet
        hook = self._hook()
        store = context.get("task_state_store")
        self.array = narrow_to_failed_indices(store, self.array, self.rerun_failed_indices, self.log)
        fields = self._fields(context)
        found = None
        if self.durable:
            found = job_to_build_on(
                hook,
                store,
                saved_id_key=self.external_id_key,
                try_number=getattr(context["ti"], "try_number", 1),
                name=fields["name"],
                tag=fields["comment"].split(" ", 1)[0],
                is_array=bool(self.array),
                log=self.log,
            )
        if (
            found is not None
            and found.is_terminal
            and found.is_success
            and not self._completed_job_serves(context, found)
        ):
            found = None  # its result is gone: this try runs the job anew
        if found is not None and found.is_terminal and found.is_success:
            self.job_id = found.job_id
            self.log.info("Slurm job %s of this task instance already COMPLETED: not submitting again", found.job_id)
            persist_job_link(self, context, hook.config, found.job_id)
            return self._finish(context, hook, self._spec(context, hook, found.job_id, found))
        if found is not None and not found.is_terminal:
            self.job_id = found.job_id
            self.log.info("Re-attaching to Slurm job %s of this task instance (%s)", found.job_id, found.state_text)
        else:
            self.job_id = hook.submit_job(self.script, **fields)
            self.log.info("Submitted Slurm job %s (%s) as %s", self.job_id, fields["name"], hook.config.login)
            if store is not None and self.durable:
                store.set(self.external_id_key, self.job_id)
            found = None
        persist_job_link(self, context, hook.config, self.job_id)  # before waiting: the button works meanwhile
        if not self.wait_for_completion:
            return self.job_id
        spec = self._spec(context, hook, self.job_id, found)
        if self.deferrable:
            return self._defer_unless_done(context, hook, spec)
        return self._finish(context, hook, spec, self._follower(hook, self.job_id, found))

    def _completed_job_serves(self, context: Context, job: SlurmJob) -> bool:
        """Whether an earlier try's COMPLETED job still gives this try what it needs (its job id does)."""
        return True

    def _spec(self, context: Context, hook: MaxwellHook, job_id: int, known: SlurmJob | None) -> WatchSpec:
        from airflow_provider_maxwell.watch import WatchSpec, array_size

        submitted = known.submit_time.timestamp() if known is not None and known.submit_time else time.time()
        return WatchSpec(
            job_id=job_id,
            user=hook.config.login,
            submitted_after=submitted,
            expected_tasks=array_size(self.array),
            poll_interval=self.poll_interval,
            deadline=time.time() + self.timeout if self.timeout else None,
        )

    def _follower(self, hook: MaxwellHook, job_id: int, known: SlurmJob | None) -> OutputFollower | None:
        """What follows the job's output file while it runs (None: off, an array, or a job that ended)."""
        if self.live_output_lines <= 0 or self.array or self.job_fields.get("array"):
            return None
        from airflow_provider_maxwell.exceptions import MaxwellError
        from airflow_provider_maxwell.live_output import OutputFollower

        if known is None or known.source != "slurmctld":  # slurmctld's record always names the file
            try:
                known = hook.get_job(job_id)
            except MaxwellError as error:  # the wait itself will say what is wrong
                self.log.info("Not following the output of Slurm job %s: %s", job_id, error)
                return None
        path = known.output_path()
        if known.is_terminal or not path:
            return None
        access = self._output_access(hook.config.login, known.user_id, known.submit_time)
        return OutputFollower(path, access, lines_per_read=self.live_output_lines)

    def _output_access(self, login: str, record_uid: int | None, submitted: datetime | None) -> OutputAccess:
        """Which files may be copied into the task log as the job's output (live_output.output_access)."""
        from airflow_provider_maxwell.live_output import output_access
        from airflow_provider_maxwell.slurm.submit import working_directory

        folder = working_directory(self.current_working_directory, self.job_fields, login)
        declared = [
            p for key in ("standard_output", "standard_error") if isinstance(p := self.job_fields.get(key), str)
        ]
        at = submitted.timestamp() if submitted else None
        return output_access(login, record_uid, folder, declared, self.script, at)

    def _log_live_output(self, job_id: int, follower: OutputFollower) -> None:
        for line in follower.read():
            self.log.info("Slurm job %s | %s", job_id, line)

    def _finish(
        self, context: Context, hook: MaxwellHook, spec: WatchSpec, follower: OutputFollower | None = None
    ) -> int:
        from airflow_provider_maxwell.outcome import judge
        from airflow_provider_maxwell.watch import WatchDeadlineExceeded

        try:
            between = (lambda: self._log_live_output(spec.job_id, follower)) if follower is not None else None
            jobs = hook.wait_for_job(spec, between)
        except WatchDeadlineExceeded as error:
            from airflow.sdk.exceptions import AirflowException

            done = "cancelled it" if self._cancel(hook, spec.job_id) else "could not cancel it (see above)"
            raise AirflowException(f"{error}; {done} (timeout={self.timeout} s)") from None
        return self._conclude(context, judge(spec.job_id, jobs))

    def _cancel(self, hook: MaxwellHook, job_id: int) -> bool:
        """Cancel the job; a failure is said in the task log (not as a traceback), the task's own error stays."""
        from airflow_provider_maxwell.exceptions import MaxwellError

        try:
            hook.cancel_job(job_id)
        except MaxwellError as error:
            self.log.error("Could not cancel Slurm job %s: %s", job_id, error)
            return False
        return True

    def _defer_unless_done(self, context: Context, hook: MaxwellHook, spec: WatchSpec) -> int:
        from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
        from airflow_provider_maxwell.watch import describe

        # A job that already ended never defers (a trigger firing right away can trip the scheduler).
        current = hook.get_job(spec.job_id)
        if current.is_terminal:
            return self._finish(context, hook, spec)
        self.log.info("Slurm job %s: %s", spec.job_id, describe([current]))  # the last word before the trigger's
        # The trigger mostly reads accounting, where a reused id has older records: pin the job now.
        spec = spec.pinned_to(current)
        follower = self._follower(hook, spec.job_id, current)
        self.defer(
            trigger=MaxwellJobTrigger(
                maxwell_conn_id=self.maxwell_conn_id,
                spec=spec.to_kwargs(),
                live_output=follower.to_kwargs() if follower is not None else None,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 60) if self.timeout else None,
        )
        raise AssertionError("defer() returns by raising")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any]) -> int:
        """Resume after the trigger's event: succeed, fail with the job's outcome, or report the wait's error."""
        from airflow.sdk.exceptions import AirflowException

        from airflow_provider_maxwell.array_retry import narrow_to_failed_indices
        from airflow_provider_maxwell.links import known_job_page, show_job_link
        from airflow_provider_maxwell.triggers.job import JobEvent

        job_event = JobEvent.from_payload(event)
        self.job_id = job_event.job_id
        show_job_link(self, known_job_page(lambda: self._hook().config, self.job_id))
        self.array = narrow_to_failed_indices(context.get("task_state_store"), self.array, self.rerun_failed_indices)
        outcome = job_event.outcome
        if outcome is not None:
            return self._conclude(context, outcome)
        raise AirflowException(f"Waiting for Slurm job {self.job_id} failed: {job_event.message}")

    def _conclude(self, context: Context, outcome: Outcome) -> int:
        from airflow.sdk.exceptions import AirflowException

        from airflow_provider_maxwell.array_retry import record_array_try
        from airflow_provider_maxwell.compat import AirflowFailException
        from airflow_provider_maxwell.outcome import SUMMARY_XCOM_KEY

        store = context.get("task_state_store")
        try_number = int(getattr(context["ti"], "try_number", 1))
        record_array_try(store, self.array, self.rerun_failed_indices, outcome.summary, try_number)
        context["ti"].xcom_push(key=SUMMARY_XCOM_KEY, value=outcome.summary)
        self._log_output_tail(outcome.summary)
        if "usage" in outcome.summary:
            from airflow_provider_maxwell.efficiency import usage_line

            self.log.info("%s", usage_line(int(outcome.summary["job_id"]), outcome.summary["usage"]))
        if outcome.succeeded:
            self.log.info("%s", outcome.message)
            # Downstream DAGs scheduled on this task's assets learn which job produced them.
            for outlet in self.outlets:
                if type(outlet).__name__ == "Asset":
                    context["outlet_events"][outlet].extra["slurm_job_id"] = int(outcome.summary["job_id"])
            return int(outcome.summary["job_id"])
        if not outcome.retryable:
            raise AirflowFailException(outcome.message)
        raise AirflowException(outcome.message)

    def _log_output_tail(self, summary: dict[str, Any]) -> None:
        """The job output's last lines in the task log, or why not (the login says whose the file must be)."""
        path = summary.get("output")
        if not path or self.log_output_lines <= 0:
            return
        from airflow_provider_maxwell.live_output import tail_text

        start = datetime.fromisoformat(summary["start"]) if summary.get("start") else None
        if text := tail_text(path, self.log_output_lines, self._output_access(self._hook().config.login, None, start)):
            self.log.info("%s", text)

    def on_kill(self) -> None:
        """The task is being killed (marked failed/cleared): cancel the job it started.

        Airflow calls this from a SIGTERM handler on the task's main thread, which may hold a lock (a log
        writer's, say): waiting on it would hang the task, so the cancel runs in a thread of its own, which
        finishes as soon as the interrupted code moves on if it cannot while the handler waits."""
        if self.job_id is None:
            return
        job_id = self.job_id

        def cancel() -> None:
            if self._cancel(self._hook(), job_id):
                self.log.info("Cancelled Slurm job %s", job_id)

        worker = threading.Thread(target=cancel, name=f"cancel-slurm-job-{job_id}", daemon=False)
        worker.start()
        worker.join(timeout=30)
