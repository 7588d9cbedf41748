"""Which files reach the task log as a job's output: the job's own output file does, on the worker and in
the triggerer; a file a hostile server names outside the job's working directory, a symlink the job's
owner (another local user) plants in its working directory, and another user's file there do not.

The job's user here is the real second local user (`attacker`): Airflow runs as root, as the tests do,
and the job's owner is someone else, who controls its working directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from tests.fake_slurm import META, connection_as
from tests.second_user import LocalUser

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

JOB_ID = 41
SUBMIT = "/slurm/v0.0.44/job/submit"
SECRET = "SECRET-LINE-root-only-7f3a"  # what must never reach the task log
OWN = "own output line of the job"

Run = Callable[[str], str]  # the job's output path as the server answers it -> what the task logged


@pytest.fixture
def job_folder(attacker: LocalUser) -> Iterator[Path]:
    """The job's working directory, owned by the job's user (who can reach it: tmp_path's parents may be
    closed to that uid)."""
    folder = Path(tempfile.mkdtemp(prefix="mx-output-", dir="/tmp"))
    os.chown(folder, attacker.uid, attacker.gid)
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def root_only_file(tmp_path: Path) -> Path:
    """A file only root may read, such as /etc/shadow or the worker's airflow.cfg."""
    secret = tmp_path / "private" / "airflow.cfg"
    secret.parent.mkdir(mode=0o700)
    secret.write_text(f"{SECRET}\n")
    secret.chmod(0o600)
    return secret


@pytest.fixture
def conn_id(fake: Any, attacker: LocalUser, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fake server's connection, logged in as the job's user."""
    return connection_as(fake, attacker.name, monkeypatch)


def controller(user: str, uid: int, state: str, output: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    job = {
        "job_id": JOB_ID,
        "user_name": user,
        "user_id": uid,
        "name": "d.t",
        "partition": "p",
        "job_state": [state],
        "standard_output": output,
        "submit_time": int(time.time()),
    }
    return (200, {}, {**META, "jobs": [job]})


def accounting(user: str, state: str, output: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    now = int(time.time())
    times = {"submission": now, "start": now, "end": now + 1}
    job = {"job_id": JOB_ID, "name": "d.t", "user": user, "state": {"current": [state]}, "time": times}
    return (200, {}, {**META, "jobs": [{**job, "stdout_expanded": output, "exit_code": {"return_code": 0}}]})


class TaskInstance(SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def operator(conn_id: str, folder: Path, deferrable: bool) -> MaxwellSubmitJobOperator:
    return MaxwellSubmitJobOperator(
        task_id="t",
        script="#!/bin/bash\ntrue\n",
        maxwell_conn_id=conn_id,
        current_working_directory=str(folder),
        poll_interval=0.1,
        deferrable=deferrable,
        durable=False,
    )


@pytest.fixture(params=["worker", "triggerer"])
def run(request: pytest.FixtureRequest, fake: Any, conn_id: str, job_folder: Path, attacker: LocalUser, capsys) -> Run:
    """Run the task to the job's end, waiting on the worker or deferred to the triggerer, with the server
    naming `output` as the job's output file; what the task (and the trigger) logged."""

    def on_the_worker(output: str) -> str:
        fake.script[SUBMIT] = [(200, {}, {**META, "job_id": JOB_ID})]
        running = controller(attacker.name, attacker.uid, "RUNNING", output)
        fake.script[f"/slurm/v0.0.44/job/{JOB_ID}"] = [running] * 4 + [
            controller(attacker.name, attacker.uid, "COMPLETED", output)
        ]
        fake.script[f"/slurmdb/v0.0.44/job/{JOB_ID}"] = [accounting(attacker.name, "COMPLETED", output)]
        assert operator(conn_id, job_folder, deferrable=False).execute({"ti": TaskInstance()}) == JOB_ID
        return str(capsys.readouterr().out)

    def in_the_triggerer(output: str) -> str:
        fake.script[SUBMIT] = [(200, {}, {**META, "job_id": JOB_ID})]
        fake.script[f"/slurm/v0.0.44/job/{JOB_ID}"] = [controller(attacker.name, attacker.uid, "RUNNING", output)]
        with pytest.raises(TaskDeferred) as deferred:
            operator(conn_id, job_folder, deferrable=True).execute({"ti": TaskInstance()})
        _, kwargs = deferred.value.trigger.serialize()
        json.dumps(kwargs)  # stored as plain values in Airflow's database
        from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger

        trigger = MaxwellJobTrigger(**kwargs)  # as the triggerer makes it from what was stored
        fake.script["/slurmdb/v0.0.44/jobs"] = [accounting(attacker.name, "RUNNING", output)]

        async def wait() -> dict[str, Any]:
            waiting = asyncio.create_task(anext(aiter(trigger.run())))
            await asyncio.sleep(0.5)  # a few polls while the job runs: its output is followed
            fake.script["/slurmdb/v0.0.44/jobs"] = [accounting(attacker.name, "COMPLETED", output)]
            return (await asyncio.wait_for(waiting, 30)).payload

        event = asyncio.run(wait())
        assert event["status"] == "success"
        resumed = operator(conn_id, job_folder, deferrable=True)  # a new instance, as Airflow resumes
        assert resumed.execute_complete({"ti": TaskInstance()}, event) == JOB_ID
        return str(capsys.readouterr().out)

    return on_the_worker if request.param == "worker" else in_the_triggerer


def test_the_jobs_own_output_file_is_copied_while_it_runs_and_at_its_end(
    run: Run, job_folder: Path, attacker: LocalUser
):
    out = job_folder / f"slurm-{JOB_ID}.out"
    out.write_text(f"{OWN}\n")
    os.chown(out, attacker.uid, attacker.gid)
    logged = run(str(out))
    assert f"Slurm job {JOB_ID} | {OWN}" in logged  # live, while the job runs
    assert f"Last 1 line of {out}:\n{OWN}" in logged  # the end-of-job tail
    assert "not copied" not in logged


def test_a_file_the_server_names_outside_the_working_directory_is_not_read(
    run: Run, attacker: LocalUser, tmp_path: Path
):
    # Even a file of the job's own user: the server does not choose where the task's output is.
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text(f"{SECRET}\n")
    os.chown(elsewhere, attacker.uid, attacker.gid)
    logged = run(str(elsewhere))
    assert SECRET not in logged
    assert "is no output path the task set" in logged  # said why, not what it holds
    assert logged.count("not copied here") == 2  # once while following, once for the tail: not every poll
    assert f"Last 1 line of {elsewhere}" not in logged


def test_a_symlink_the_jobs_owner_plants_in_the_working_directory_is_not_followed(
    run: Run, job_folder: Path, root_only_file: Path, attacker: LocalUser
):
    planted = job_folder / f"slurm-{JOB_ID}.out"
    made = attacker.run(["ln", "-s", str(root_only_file), str(planted)])
    assert made.returncode == 0, made.stderr
    assert planted.is_symlink() and os.lstat(planted).st_uid == attacker.uid
    logged = run(str(planted))
    assert SECRET not in logged
    assert "symbolic link" in logged
    assert logged.count("not copied here") == 2


def test_another_users_file_in_the_working_directory_is_not_read(run: Run, job_folder: Path):
    # A file the job's user did not write (root's here: the worker's own user's, say), though in its folder.
    theirs = job_folder / f"slurm-{JOB_ID}.out"
    theirs.write_text(f"{SECRET}\n")
    theirs.chmod(0o644)
    logged = run(str(theirs))
    assert SECRET not in logged
    assert "belongs to uid 0, not to the job's user" in logged
    assert logged.count("not copied here") == 2
