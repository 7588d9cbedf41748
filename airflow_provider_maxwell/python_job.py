"""A Python function as a Slurm batch job: the job script that carries it, and its return value.

The function's source and its pickled arguments travel inside the job script (as Airflow's
virtualenv decorator carries them to another interpreter), so nothing of the worker's environment is
needed on Maxwell beyond what the function itself imports. The job writes the return value into its
working directory, which on Maxwell the workers share (GPFS), sealed for this task instance
(return_values.py); the worker reads it once the job ended. No Airflow import here: the decorator
(decorators/maxwell.py) is the Airflow side.
"""

from __future__ import annotations

import ast
import base64
import inspect
import secrets
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.return_values import PICKLE_PROTOCOL, ReturnValues, job_writer, serializer_module

MAX_SCRIPT_BYTES = 4_000_000  # Slurm's default max_script_size (SchedulerParameters): larger scripts are refused


def function_source(function: Callable[..., Any]) -> str:
    """The function's own definition, dedented, without the decorators above it."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError) as error:
        raise MaxwellConfigError(
            f"@task.maxwell needs the source of {getattr(function, '__name__', function)!r} to send it to Slurm "
            f"({error}): define it with `def` in a file, not interactively or as a lambda"
        ) from None
    tree = ast.parse(source)
    definition = tree.body[0] if tree.body else None
    if not isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef) or definition.name != function.__name__:
        raise MaxwellConfigError(f"@task.maxwell takes a function defined with `def`, not {function!r}")
    if isinstance(definition, ast.AsyncFunctionDef):
        raise MaxwellConfigError(f"@task.maxwell runs plain functions: {function.__name__!r} is async")
    lines = source.splitlines()
    return "\n".join(lines[definition.lineno - 1 :]) + "\n"  # from the `def` line: decorators dropped


def job_script(
    function: Callable[..., Any],
    args: Iterable[Any],
    kwargs: Mapping[str, Any],
    *,
    python: str,
    setup: Sequence[str],
    serializer: str,
    returns: ReturnValues | None,
) -> str:
    """A bash job script that runs `function(*args, **kwargs)` with `python` after the `setup` lines.

    `returns` None: the return value is not written. The script carries the task's return key: it
    is readable by the job's owner and Slurm's administrators only, as the job's arguments are. An
    exception propagates: Python prints its traceback into the job's output and exits 1, so the job
    (and the task) fails showing it.
    """
    if not python.strip() or "\n" in python:
        raise MaxwellConfigError(f"python must be the interpreter's path or command on Maxwell, not {python!r}")
    if returns is not None and not returns.folder.startswith("/"):
        raise MaxwellConfigError(
            f"the job's working directory must be absolute to find its return value in, not {returns.folder!r}"
        )
    source = function_source(function)
    packed = base64.b64encode(
        serializer_module(serializer).dumps((tuple(args), dict(kwargs)), protocol=PICKLE_PROTOCOL)
    )
    end = f"MAXWELL_PYTHON_{secrets.token_hex(8)}"  # a heredoc end no source line can be
    write_back = job_writer(returns, "_result") if returns is not None else ""
    program = (
        # Annotations stay text: the names they use were imported on the worker, not here.
        "from __future__ import annotations\n"
        f"import base64 as _base64, os as _os\nimport {serializer} as _serializer\n\n"
        f"{source}\n"
        f'_args, _kwargs = _serializer.loads(_base64.b64decode("{packed.decode()}"))\n'
        f"_result = {function.__name__}(*_args, **_kwargs)\n"
        f"{write_back}"
    )
    lines = ["#!/bin/bash", "set -e", *setup, f"{python} - <<'{end}'", program.rstrip("\n"), end, ""]
    script = "\n".join(lines)
    if len(script.encode()) > MAX_SCRIPT_BYTES:
        raise MaxwellConfigError(
            f"the arguments of {function.__name__!r} make a job script of {len(script.encode()):,} bytes, more than "
            f"Slurm takes by default ({MAX_SCRIPT_BYTES:,}): pass large data as a path on the shared file system"
        )
    return script
