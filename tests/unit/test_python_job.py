"""@task.maxwell's job script, run for real by bash and this machine's Python (as slurmd would run it,
with the SLURM_* variables it sets): arguments in, return value out, exceptions and arrays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.python_job import function_source, job_script
from airflow_provider_maxwell.return_values import ReturnValues, ReturnValueUnreadable, task_key


def decorated(fn: Any) -> Any:
    return fn


@decorated
def reduce_run(run: int, label: str, *, data: dict[str, Any]) -> dict[str, Any]:
    import os as inner_os

    return {
        "run": run,
        "label": label.upper(),
        "size": len(data["blob"]),
        "task": inner_os.environ.get("SLURM_ARRAY_TASK_ID"),
    }


def fails(run: int) -> None:
    raise ValueError(f"run {run} has no frames")


def returns_in(folder: Path) -> ReturnValues:
    """The return values of one task instance of a connection whose secret is 'portal-token'."""
    key = task_key(["portal-token"], "airflow:dag/reduce/manual__1/-1")
    return ReturnValues(str(folder), key, "pickle", owner=os.getuid())


def run_script(script: str, folder: Path, job_id: int, task: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLURM_JOB_ID": str(job_id + (task or 0))}
    if task is not None:
        env |= {"SLURM_ARRAY_JOB_ID": str(job_id), "SLURM_ARRAY_TASK_ID": str(task)}
    path = folder.parent / f"job-script-{job_id}-{task}"  # slurmd too runs the script from a file
    path.write_text(script)
    return subprocess.run(["bash", str(path)], cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def test_the_function_runs_with_its_arguments_and_its_value_comes_back(tmp_path: Path):
    blob = "ßπ漢" * 300_000  # non-ASCII, 2.4 MB in UTF-8
    script = job_script(
        reduce_run,
        [7, "tür"],
        {"data": {"blob": blob, "nested": [1, {"a": (2, 3)}]}},
        python=sys.executable,
        setup=["export MAXWELL_SETUP_RAN=yes"],
        serializer="pickle",
        returns=returns_in(tmp_path),
    )
    assert script.startswith("#!/bin/bash\nset -e\nexport MAXWELL_SETUP_RAN=yes\n")
    assert "@decorated" not in script  # the worker's decorators are not needed on Maxwell
    done = run_script(script, tmp_path, 4242)
    assert done.returncode == 0, done.stderr
    value = returns_in(tmp_path).read(4242)
    assert value == {"run": 7, "label": "TÜR", "size": len(blob), "task": None}
    written = list(tmp_path.iterdir())
    assert [p.name for p in written] == [Path(returns_in(tmp_path).path(4242)).name]  # no temporary file left
    assert oct(written[0].stat().st_mode & 0o777) == "0o600"  # the job's user alone reads it
    assert returns_in(tmp_path).discard(4242) == []
    assert not list(tmp_path.iterdir())  # read once, then gone


def test_an_exception_fails_the_job_with_its_traceback_in_the_output(tmp_path: Path):
    script = job_script(
        fails, [3], {}, python=sys.executable, setup=[], serializer="pickle", returns=returns_in(tmp_path)
    )
    done = run_script(script, tmp_path, 5)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: run 3 has no frames" in done.stderr
    assert "in fails" in done.stderr
    assert not list(tmp_path.iterdir())  # no value for a failed function


def small_run_script(returns: ReturnValues | None) -> str:
    return job_script(
        reduce_run, [1, "a"], {"data": {"blob": ""}}, python=sys.executable, setup=[], serializer="pickle",
        returns=returns,
    )  # fmt: skip


def test_array_tasks_each_leave_their_value_read_in_index_order(tmp_path: Path):
    returns = returns_in(tmp_path)
    script = small_run_script(returns)
    for task in (10, 2, 0):
        assert run_script(script, tmp_path, 900, task).returncode == 0
    assert [returns.read(900, task)["task"] for task in (0, 2, 10)] == ["0", "2", "10"]
    with pytest.raises(ReturnValueUnreadable, match="does not exist on this worker"):
        returns.read(900, 4)  # a task that left no value
    # Every job's files have a name of their own: seeing this job's names tells nothing of the next one's.
    assert returns.name_tag(900) != returns.name_tag(901)


def test_no_return_folder_writes_nothing(tmp_path: Path):
    script = small_run_script(None)
    assert run_script(script, tmp_path, 6).returncode == 0
    assert not list(tmp_path.iterdir())


def test_a_missing_value_says_where_it_was_written_and_how_to_do_without(tmp_path: Path):
    returns = returns_in(tmp_path)
    with pytest.raises(ReturnValueUnreadable) as missing:
        returns.read(1)
    assert returns.path(1) in str(missing.value) and "do_xcom_push=False" in str(missing.value)


def returns_a_frame() -> Any:
    import only_on_maxwell  # type: ignore[import-not-found]  # a module the job's Python has, the worker's not

    return only_on_maxwell.Frame()


def test_a_signed_value_the_worker_cannot_unpickle_says_so(tmp_path: Path):
    lib = tmp_path.parent / "maxwell-lib"
    lib.mkdir()
    (lib / "only_on_maxwell.py").write_text("class Frame:\n    pass\n")
    returns = returns_in(tmp_path)
    script = job_script(
        returns_a_frame, [], {}, python=sys.executable, setup=[f"export PYTHONPATH={lib}"], serializer="pickle",
        returns=returns,
    )  # fmt: skip
    assert run_script(script, tmp_path, 2).returncode == 0
    with pytest.raises(ReturnValueUnreadable, match=r"could not be read with pickle \(ModuleNotFoundError.*Maxwell's"):
        returns.read(2)


def test_what_cannot_travel_is_refused_before_anything_is_sent(tmp_path: Path):
    with pytest.raises(MaxwellConfigError, match="serializer must be one of pickle, dill, cloudpickle"):
        job_script(fails, [], {}, python="python3", setup=[], serializer="json", returns=None)
    with pytest.raises(MaxwellConfigError, match="working directory must be absolute"):
        job_script(fails, [], {}, python="python3", setup=[], serializer="pickle", returns=returns_in(Path("rel/dir")))
    with pytest.raises(MaxwellConfigError, match="a function defined with `def`"):
        function_source(lambda: 1)
    with pytest.raises(MaxwellConfigError, match="python must be"):
        job_script(fails, [], {}, python="python3\nrm -rf ~", setup=[], serializer="pickle", returns=None)


def test_arguments_too_large_for_slurm_are_refused_before_sending():
    with pytest.raises(MaxwellConfigError, match=r"more than Slurm takes by default .*shared file system"):
        job_script(fails, ["x" * 5_000_000], {}, python="python3", setup=[], serializer="pickle", returns=None)
