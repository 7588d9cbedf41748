"""A Python function as a Slurm batch job: the job script that carries it, and its return value.

The function's source and its pickled arguments travel inside the job script (as Airflow's
virtualenv decorator carries them to another interpreter), so nothing of the worker's environment is
needed on Maxwell beyond what the function itself imports. The job writes the return value into its
working directory, which on Maxwell the workers share (GPFS); the worker reads it once the job ended.
No Airflow import here: the decorator (decorators/maxwell.py) is the Airflow side.
"""

from __future__ import annotations

import ast
import base64
import importlib
import inspect
import os
import secrets
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_maxwell.exceptions import MaxwellConfigError, MaxwellError

SERIALIZERS = ("pickle", "dill", "cloudpickle")  # as Airflow's virtualenv decorator offers them
MAX_SCRIPT_BYTES = 4_000_000  # Slurm's default max_script_size (SchedulerParameters): larger scripts are refused
PICKLE_PROTOCOL = 4  # readable by every Python from 3.4 on: Maxwell's interpreter may be older than the worker's


class ReturnValueUnreadable(MaxwellError):
    """The job ended, but the value its function returned cannot be read from this worker."""


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


def serializer_module(name: str) -> Any:
    """The module that (de)serializes arguments and return values (`pickle`, `dill` or `cloudpickle`)."""
    if name not in SERIALIZERS:
        raise MaxwellConfigError(f"serializer must be one of {', '.join(SERIALIZERS)}, not {name!r}")
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MaxwellConfigError(
            f"serializer {name!r} is not installed on this worker: pip install {name}, or use 'pickle'"
        ) from None


def return_file(folder: str, job_id: int, array_task: int | None = None) -> str:
    """Where the job (or one task of an array) leaves its function's return value."""
    suffix = f"_{array_task}" if array_task is not None else ""
    return os.path.join(folder, f"maxwell-{job_id}{suffix}.return")


def array_return_files(folder: str, job_id: int, expected: int) -> list[str]:
    """The return files of an array job's tasks, in task index order; all `expected` of them, or an error."""
    prefix = f"maxwell-{job_id}_"
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(".return")]
    except OSError as error:
        raise ReturnValueUnreadable(
            f"the array's return values should be in {folder}, which this worker cannot list ({error.strerror}): "
            "the job's working directory must be shared with the Airflow workers, or set do_xcom_push=False"
        ) from None
    indices = sorted(int(n[len(prefix) : -len(".return")]) for n in names if n[len(prefix) : -len(".return")].isdigit())
    if len(indices) != expected:
        raise ReturnValueUnreadable(
            f"{len(indices)} of the array's {expected} tasks left a return value in {folder} "
            f"({prefix}<index>.return): the others' working directory is not shared with this worker, or set "
            "do_xcom_push=False"
        )
    return [return_file(folder, job_id, index) for index in indices]


def job_script(
    function: Callable[..., Any],
    args: Iterable[Any],
    kwargs: Mapping[str, Any],
    *,
    python: str,
    setup: Sequence[str],
    serializer: str,
    return_folder: str | None,
) -> str:
    """A bash job script that runs `function(*args, **kwargs)` with `python` after the `setup` lines.

    `return_folder` None: the return value is not written. An exception propagates: Python prints its
    traceback into the job's output and exits 1, so the job (and the task) fails showing it.
    """
    if not python.strip() or "\n" in python:
        raise MaxwellConfigError(f"python must be the interpreter's path or command on Maxwell, not {python!r}")
    if return_folder is not None and not os.path.isabs(return_folder):
        raise MaxwellConfigError(
            f"the job's working directory must be absolute to find its return value in, not {return_folder!r}"
        )
    source = function_source(function)
    packed = base64.b64encode(
        serializer_module(serializer).dumps((tuple(args), dict(kwargs)), protocol=PICKLE_PROTOCOL)
    )
    end = f"MAXWELL_PYTHON_{secrets.token_hex(8)}"  # a heredoc end no source line can be
    write_back = (
        f"""
_job = _os.environ.get("SLURM_ARRAY_JOB_ID") or _os.environ["SLURM_JOB_ID"]
_task = _os.environ.get("SLURM_ARRAY_TASK_ID")
_path = _os.path.join({return_folder!r}, "maxwell-" + _job + ("_" + _task if _task else "") + ".return")
with open(_path + "." + str(_os.getpid()), "wb") as _out:
    _serializer.dump(_result, _out, protocol={PICKLE_PROTOCOL})
_os.replace(_path + "." + str(_os.getpid()), _path)  # whole or absent: the worker never reads half a file
"""
        if return_folder is not None
        else ""
    )
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


def read_return_value(path: str, serializer: str) -> Any:
    """The value the job's function returned, from the file it wrote."""
    module = serializer_module(serializer)
    try:
        with open(path, "rb") as f:
            return module.load(f)
    except FileNotFoundError:
        raise ReturnValueUnreadable(
            f"the job's return value should be in {path}, which does not exist on this worker: the job's working "
            "directory must be on a file system the Airflow workers share (as GPFS on Maxwell), or set "
            "do_xcom_push=False on the task if its value is not needed"
        ) from None
    except OSError as error:
        raise ReturnValueUnreadable(
            f"the job's return value in {path} is not readable on this worker ({error.strerror}); set "
            "do_xcom_push=False on the task if its value is not needed"
        ) from None
    except Exception as error:  # unpickling runs the serializer's code: anything may go wrong in it
        raise ReturnValueUnreadable(
            f"the job's return value in {path} could not be read with {serializer} ({type(error).__name__}: "
            f"{error}); is the worker's Python or the modules of the returned objects different from Maxwell's?"
        ) from None
