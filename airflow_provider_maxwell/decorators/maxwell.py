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
        from airflow_provider_maxwell.python_job import SERIALIZERS

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
        from airflow_provider_maxwell.python_job import job_script

        self.script = job_script(
            self.python_callable,
            self.op_args,
            self.op_kwargs,
            python=self.python,
            setup=self.setup,
            serializer=self.serializer,
            return_folder=self._return_folder(context) if self.do_xcom_push else None,
        )
        return MaxwellSubmitJobOperator.execute(self, context)

    def _return_folder(self, context: Context) -> str:
        """The job's working directory (the submit default when none is set), where it leaves its value."""
        return self.current_working_directory or f"/home/{self._hook().config.login}"

    def _conclude(self, context: Context, outcome: Outcome) -> Any:
        """The job's verdict as the operator's; on success, the function's return value (a list, one
        per array task in index order, for an array)."""
        job_id = super()._conclude(context, outcome)
        if not self.do_xcom_push:
            return None
        from airflow.sdk.exceptions import AirflowException

        from airflow_provider_maxwell.python_job import (
            ReturnValueUnreadable,
            array_return_files,
            read_return_value,
            return_file,
        )

        folder = self._return_folder(context)
        try:
            if "array_tasks" not in outcome.summary:
                return read_return_value(return_file(folder, job_id), self.serializer)
            files = array_return_files(folder, job_id, int(outcome.summary["array_tasks"]))
            return [read_return_value(path, self.serializer) for path in files]
        except ReturnValueUnreadable as error:
            raise AirflowException(f"Slurm job {job_id} COMPLETED, but {error}") from None


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
