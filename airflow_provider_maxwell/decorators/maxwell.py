"""`@task.maxwell`: a Python function run as a Slurm batch job on Maxwell, its return value the task's XCom.

    @task.maxwell(partition="maxcpu", time_limit=30, setup=["module load anaconda3"], python="python3")
    def reduce(run: int) -> dict:
        ...

It takes MaxwellSubmitJobOperator's fields (partition, time_limit, array, environment,
current_working_directory, deferrable, ...) plus where Python lives on Maxwell: `python` (the
interpreter's path or command) and `setup` (shell lines run first: `module load ...`, `conda activate
...`, `source venv/bin/activate`). python_job.py builds the job script.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.decorator import DecoratedOperator, TaskDecorator, task_decorator_factory

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_maxwell.outcome import Outcome
    from airflow_provider_maxwell.return_values import ReturnValues
    from airflow_provider_maxwell.slurm.job import SlurmJob

BUILT_AT_RUN_TIME = "#!/bin/bash\n# built when the task runs, from the decorated function and its arguments\n"


class MaxwellDecoratedOperator(DecoratedOperator, MaxwellSubmitJobOperator):
    """Runs the decorated function as a Slurm job; its return value becomes the task's XCom.

    :param python: the interpreter on Maxwell (path or command), ``python3`` by default.
    :param setup: shell lines run before it (``module load ...``, ``conda activate ...``).
    :param serializer: ``pickle`` (default), ``dill`` or ``cloudpickle``, for arguments and return value.
    """

    custom_operator_name = "@task.maxwell"
    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *MaxwellSubmitJobOperator.template_fields)
    shallow_copy_attrs: Sequence[str] = ("python_callable",)

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        python: str = "python3",
        setup: Sequence[str] | str = (),
        serializer: str = "pickle",
        **kwargs: Any,
    ) -> None:
        from airflow_provider_maxwell.return_values import SERIALIZERS

        if serializer not in SERIALIZERS:
            from airflow_provider_maxwell.exceptions import MaxwellConfigError

            raise MaxwellConfigError(f"serializer must be one of {', '.join(SERIALIZERS)}, not {serializer!r}")
        kwargs.setdefault("name", None)
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            script=BUILT_AT_RUN_TIME,
            **kwargs,
        )
        self.python = python
        self.setup = [setup] if isinstance(setup, str) else list(setup)
        self.serializer = serializer

    def execute(self, context: Context) -> Any:
        """Build the job script from the function and its (rendered) arguments, then run as the operator."""
        from airflow.sdk.log import mask_secret

        from airflow_provider_maxwell.python_job import job_script

        returns = self._return_values(context) if self.do_xcom_push else None
        if returns is not None:
            mask_secret(returns.key_text)  # as the script carries it: never in a log line
        self.script = job_script(
            self.python_callable,
            self.op_args,
            self.op_kwargs,
            python=self.python,
            setup=self.setup,
            serializer=self.serializer,
            returns=returns,
        )
        try:
            return MaxwellSubmitJobOperator.execute(self, context)
        finally:
            # The script carries the task's return key: it goes to Slurm, never to what Airflow keeps of
            # the task (rendered fields are sent before execute; this keeps a later send from carrying it).
            self.script = BUILT_AT_RUN_TIME

    def _return_values(self, context: Context) -> ReturnValues:
        """Where the job leaves its value (its working directory; the submit default when none is set),
        sealed with this task instance's key."""
        from airflow_provider_maxwell.live_output import job_owner_uid
        from airflow_provider_maxwell.reattach import task_instance_tag
        from airflow_provider_maxwell.return_values import ReturnValues, task_key
        from airflow_provider_maxwell.slurm.submit import working_directory

        config = self._hook().config
        secrets = [config.password, config.keycloak_client_secret, config.signing_key]
        return ReturnValues(
            folder=working_directory(self.current_working_directory, self.job_fields, config.login),
            key=task_key(secrets, task_instance_tag(context["ti"])),
            serializer=self.serializer,
            owner=job_owner_uid(config.login, None),
        )

    def _completed_job_serves(self, context: Context, job: SlurmJob) -> bool:
        """An earlier try's COMPLETED job serves while its return value is there to read; a value is read
        once (its files deleted), so after a try that read it failed, or after a clear, the function runs
        again rather than the task failing for good."""
        if not self.do_xcom_push:
            return True
        import os

        returns = self._return_values(context)
        tasks: list[int | None] = [*self._submitted_tasks()] or [None]
        if all(os.path.lexists(returns.path(job.job_id, task)) for task in tasks):
            return True
        self.log.info(
            "Slurm job %s of this task instance COMPLETED, but its return value was read by an earlier try (a value "
            "is read once): running the function again",
            job.job_id,
        )
        return False

    def _submitted_tasks(self) -> list[int]:
        """The array indices this try submitted ([] for a single job): each value is read at its own name,
        never from a listing of a folder others may write (a planted "_01" would stand for task 1 again)."""
        from airflow_provider_maxwell.watch import array_indices

        return array_indices(self.array or self.job_fields.get("array"))

    def _conclude(self, context: Context, outcome: Outcome) -> Any:
        """The job's verdict as the operator's; on success, the function's return value (a list, one
        per array task in index order, for an array), read once: its files are deleted after."""
        job_id = super()._conclude(context, outcome)
        if not self.do_xcom_push:
            return None
        from airflow.sdk.exceptions import AirflowException

        from airflow_provider_maxwell.return_values import ReturnValueUnreadable

        returns = self._return_values(context)
        try:
            if "array_tasks" not in outcome.summary:
                tasks: list[int | None] = [None]
                value = returns.read(job_id)
            else:
                tasks = list(self._submitted_tasks())
                value = [returns.read(job_id, task) for task in tasks]
        except ReturnValueUnreadable as error:
            raise AirflowException(f"Slurm job {job_id} COMPLETED, but {error}") from None
        for path in returns.discard(job_id, tasks):
            self.log.warning("Could not delete the return value file %s once read: delete it by hand", path)
        return value


def maxwell_task(
    python_callable: Callable[..., Any] | None = None, multiple_outputs: bool | None = None, **kwargs: Any
) -> TaskDecorator:
    """Wrap a function into a MaxwellDecoratedOperator (registered as ``@task.maxwell``)."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=MaxwellDecoratedOperator,
        **kwargs,
    )
