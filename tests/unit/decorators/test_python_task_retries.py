"""@task.maxwell across tries, against a fake slurmrestd and a real job script: a value is read once,
so a later try of the same task instance (after a failure past the read, or a clear) runs the function
again instead of failing for good on a file that is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from airflow_provider_maxwell.decorators.maxwell import MaxwellDecoratedOperator
from airflow_provider_maxwell.python_job import job_script
from tests.fake_slurm import META
from tests.unit.operators.test_array_retries import task_record
from tests.unit.operators.test_durable import SUBMIT, Store


class TaskInstance(SimpleNamespace):
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def context(store: Store, try_number: int) -> dict[str, Any]:
    ti = TaskInstance(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=try_number)
    return {"ti": ti, "task_state_store": store}


def double(x: int) -> dict[str, int]:
    return {"x": 2 * x}


def completed_job(job_id: int, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Job `job_id` as slurmctld and as accounting tell it: COMPLETED a moment ago."""
    now = int(time.time())
    controller = {
        "job_id": job_id,
        "user_name": user,
        "name": "d.t",
        "job_state": ["COMPLETED"],
        "submit_time": now - 100,
    }
    times = {"submission": now - 100, "start": now - 90, "end": now - 10}
    accounting = {"job_id": job_id, "name": "d.t", "user": user, "state": {"current": ["COMPLETED"]}, "time": times}
    return {**META, "jobs": [controller]}, {**META, "jobs": [{**accounting, "exit_code": {"return_code": 0}}]}


def completed_array(fake: Any, user: str, array_id: int, indices: tuple[int, ...]) -> None:
    """Array `array_id` as slurmctld and accounting tell it: its tasks at `indices` COMPLETED a moment ago."""
    tasks = [{**task_record(array_id, i, max(indices), "COMPLETED"), "user": user} for i in indices]
    controller = [
        {"job_id": t["job_id"], "array_job_id": array_id, "array_task_id": i, "user_name": user, "name": "d.t"}
        | {"job_state": ["COMPLETED"], "submit_time": t["time"]["submission"]}
        for i, t in zip(indices, tasks, strict=True)
    ]
    fake.script[f"/slurm/v0.0.44/job/{array_id}"] = [(200, {}, {**META, "jobs": controller})]
    fake.script[f"/slurmdb/v0.0.44/job/{array_id}"] = [(200, {}, {**META, "jobs": tasks})]


def test_a_value_read_by_an_earlier_try_is_computed_again_not_lost(fake, tmp_path: Path):
    task = MaxwellDecoratedOperator(
        task_id="t",
        python_callable=double,
        op_args=[21],
        maxwell_conn_id=fake.conn_id,
        current_working_directory=str(tmp_path),
        log_output_lines=0,
        live_output_lines=0,
        wait_for_completion=False,
        poll_interval=0.1,
    )
    store = Store({"maxwell_job_id": 41})
    # Job 41 was submitted by try 1 (whose worker died) and COMPLETED, leaving its sealed value.
    returns = task._return_values(context(store, 1))
    script = job_script(double, [21], {}, python=sys.executable, setup=[], serializer="pickle", returns=returns)
    (tmp_path.parent / "job.sh").write_text(script)
    env = {**os.environ, "SLURM_JOB_ID": "41"}
    assert subprocess.run(["bash", str(tmp_path.parent / "job.sh")], cwd=tmp_path, env=env).returncode == 0
    controller, accounting = completed_job(41, task._hook().config.login)
    fake.script["/slurm/v0.0.44/job/41"] = [(200, {}, controller)]
    fake.script["/slurmdb/v0.0.44/job/41"] = [(200, {}, accounting)]
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 42})]

    assert task.execute(context(store, try_number=2)) == {"x": 42}  # re-attached: read, not submitted again
    assert fake.count("POST", SUBMIT) == 0
    assert not os.path.exists(returns.path(41))  # read once
    # Try 3 (the try that read it failed later, or the task was cleared): the function runs again.
    assert task.execute(context(store, try_number=3)) == 42
    assert fake.count("POST", SUBMIT) == 1 and store.saved["maxwell_job_id"] == 42


def test_an_array_an_earlier_try_left_only_some_values_of_runs_again(fake, tmp_path: Path):
    # A try read every task's value, deleted task 0's file, could not delete task 1's, and failed later:
    # a COMPLETED array serves only while every task's value is there, else its values are read as missing.
    task = MaxwellDecoratedOperator(
        task_id="t",
        python_callable=double,
        op_args=[21],
        maxwell_conn_id=fake.conn_id,
        array="0-1",
        current_working_directory=str(tmp_path),
        log_output_lines=0,
        live_output_lines=0,
        wait_for_completion=False,
        poll_interval=0.1,
    )
    store = Store({"maxwell_job_id": 41})
    returns = task._return_values(context(store, 1))
    script = job_script(double, [21], {}, python=sys.executable, setup=[], serializer="pickle", returns=returns)
    (tmp_path.parent / "job.sh").write_text(script)
    for index in (0, 1):
        env = {**os.environ, "SLURM_JOB_ID": str(41 + index), "SLURM_ARRAY_JOB_ID": "41"}
        env["SLURM_ARRAY_TASK_ID"] = str(index)
        assert subprocess.run(["bash", str(tmp_path.parent / "job.sh")], cwd=tmp_path, env=env).returncode == 0
    os.remove(returns.path(41, 0))
    assert os.path.exists(returns.path(41, 1))
    completed_array(fake, task._hook().config.login, 41, (0, 1))
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 50})]

    assert task.execute(context(store, try_number=2)) == 50  # the function runs again, not a missing value
    assert fake.count("POST", SUBMIT) == 1 and store.saved["maxwell_job_id"] == 50


def scaled(x: int, factor: int = 1) -> dict[str, int]:
    return {"x": factor * x}


def own_index() -> str:
    import os

    return os.environ["SLURM_ARRAY_TASK_ID"]


def decorated(fake: Any, tmp_path: Path, python_callable: Any, **kwargs: Any) -> MaxwellDecoratedOperator:
    return MaxwellDecoratedOperator(
        task_id="t",
        python_callable=python_callable,
        maxwell_conn_id=fake.conn_id,
        python=sys.executable,
        current_working_directory=str(tmp_path),
        log_output_lines=0,
        live_output_lines=0,
        wait_for_completion=False,
        poll_interval=0.1,
        **kwargs,
    )


def test_the_submitted_script_leaves_the_value_the_task_returns(fake, tmp_path: Path):
    # Try 1 submits and stops (its worker died, say); the job runs the script Slurm was given; try 2
    # finds the job COMPLETED and returns the function's value, computed from the task's arguments.
    task = decorated(fake, tmp_path, scaled, op_args=[21], op_kwargs={"factor": 3}, setup="export STEP=setup")
    store = Store({})
    fake.script[SUBMIT] = [(200, {}, {**META, "job_id": 41})]
    assert task.execute(context(store, try_number=1)) == 41
    (submitted,) = [body["job"]["script"] for path, body in fake.bodies if path == SUBMIT]
    assert "export STEP=setup" in submitted.splitlines()  # one setup line given as a string
    (tmp_path.parent / "job.sh").write_text(submitted)
    env = {**os.environ, "SLURM_JOB_ID": "41"}
    assert subprocess.run(["bash", str(tmp_path.parent / "job.sh")], cwd=tmp_path, env=env).returncode == 0
    controller, accounting = completed_job(41, task._hook().config.login)
    fake.script["/slurm/v0.0.44/job/41"] = [(200, {}, controller)]
    fake.script["/slurmdb/v0.0.44/job/41"] = [(200, {}, accounting)]

    assert task.execute(context(store, try_number=2)) == {"x": 63}
    assert fake.count("POST", SUBMIT) == 1


def test_an_arrays_values_are_returned_in_index_order_and_read_once(fake, tmp_path: Path):
    task = decorated(fake, tmp_path, own_index, job_fields={"array": "0,3"})
    store = Store({"maxwell_job_id": 41})
    returns = task._return_values(context(store, 1))
    script = job_script(own_index, [], {}, python=sys.executable, setup=[], serializer="pickle", returns=returns)
    (tmp_path.parent / "job.sh").write_text(script)
    for index in (3, 0):
        env = {**os.environ, "SLURM_JOB_ID": str(41 + index), "SLURM_ARRAY_JOB_ID": "41"}
        env["SLURM_ARRAY_TASK_ID"] = str(index)
        assert subprocess.run(["bash", str(tmp_path.parent / "job.sh")], cwd=tmp_path, env=env).returncode == 0
    completed_array(fake, task._hook().config.login, 41, (0, 3))

    assert task.execute(context(store, try_number=2)) == ["0", "3"]  # re-attached: one value per index
    assert fake.count("POST", SUBMIT) == 0
    assert not os.path.exists(returns.path(41, 0)) and not os.path.exists(returns.path(41, 3))
