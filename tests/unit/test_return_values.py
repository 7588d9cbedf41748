"""@task.maxwell's return files in a folder other users can write (a group-writable beamtime folder on
GPFS, a sticky one like /tmp): the job runs as a real plain user, another real user attacks, and the
worker loads nothing that user wrote. The attacker's pickle would create a marker file when loaded."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.python_job import job_script
from airflow_provider_maxwell.return_values import ReturnValues, ReturnValueUnreadable, task_key
from tests.second_user import LocalUser

TASK = "airflow:beamtime/reduce/manual__2026-12-07/-1"
JOB_PYTHON = "/usr/bin/python3"  # Debian's: the job's user cannot enter the worker's /root/.pyenv


def reduce_run(run: int) -> dict[str, int]:
    return {"run": run, "frames": 10_000}


@pytest.fixture(params=[0o777, 0o1777], ids=["group-writable", "sticky"])
def shared_folder_mode(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def beamtime(shared_folder_mode: int) -> Iterator[Path]:
    """A folder every local user may write, as a beamtime folder or /tmp (under /tmp: the users can reach it)."""
    top = Path(tempfile.mkdtemp(prefix="maxwell-beamtime-"))
    top.chmod(0o755)
    folder = top / "raw"
    folder.mkdir()
    folder.chmod(shared_folder_mode)
    yield folder
    shutil.rmtree(top)


def returns_of(folder: Path, owner: LocalUser | None, secret: str = "portal-token", task: str = TASK) -> ReturnValues:
    return ReturnValues(str(folder), task_key([secret], task), "pickle", owner=owner.uid if owner else None)


def run_job(user: LocalUser, folder: Path, returns: ReturnValues, job_id: int) -> subprocess.CompletedProcess[str]:
    """The job script of `reduce_run(job_id)` run by bash as `user`, as slurmd runs a batch job."""
    script = job_script(reduce_run, [job_id], {}, python=JOB_PYTHON, setup=[], serializer="pickle", returns=returns)
    path = folder.parent / f"job-{job_id}.sh"
    path.write_text(script)
    path.chmod(0o644)
    env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": str(job_id), "HOME": str(folder.parent)}
    return user.run(["bash", str(path)], cwd=str(folder), env=env)


def hostile_pickle(marker: Path) -> bytes:
    """A pickle that, loaded, creates `marker`: what another user would plant to run code in the worker."""

    class Planted:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Planted())


def plant(attacker: LocalUser, path: Path, data: bytes) -> bool:
    """`data` written at `path` by the attacker (replacing what is there, as a rename in the folder);
    False where the folder refused the rename."""
    done = attacker.python(
        "import os, sys\n"
        "tmp = sys.argv[1] + '.planted'\n"
        "open(tmp, 'wb').write(bytes.fromhex(sys.argv[2]))\n"
        "os.chmod(tmp, 0o644)\n"
        "os.replace(tmp, sys.argv[1])\n",
        str(path),
        data.hex(),
    )
    assert done.returncode == 0 or "PermissionError" in done.stderr, done.stderr
    return done.returncode == 0


def test_a_value_replaced_by_another_user_is_never_loaded(
    beamtime: Path, shared_folder_mode: int, job_owner: LocalUser, attacker: LocalUser
):
    marker = beamtime.parent / "attacker-code-ran"
    returns = returns_of(beamtime, job_owner)
    done = run_job(job_owner, beamtime, returns, 4100)
    assert done.returncode == 0, done.stderr
    real = Path(returns.path(4100))
    assert real.stat().st_uid == job_owner.uid and stat.S_IMODE(real.stat().st_mode) == 0o600
    # The attacker sees the name in the folder and keeps the real first line (its HMAC) above their pickle.
    header = real.read_bytes().split(b"\n", 1)[0]
    replaced = plant(attacker, real, header + b"\n" + hostile_pickle(marker))
    if shared_folder_mode & stat.S_ISVTX:  # sticky: the rename over the job user's file is refused
        assert not replaced
        assert returns.read(4100) == {"run": 4100, "frames": 10_000}
        return
    assert replaced
    with pytest.raises(ReturnValueUnreadable, match=rf"belongs to uid {attacker.uid}, not to the job's user"):
        returns.read(4100)
    # Where the worker host does not know the job's user, the HMAC alone refuses it.
    with pytest.raises(ReturnValueUnreadable, match="does not carry this task's signature"):
        returns_of(beamtime, None).read(4100)
    assert not marker.exists()


def test_files_planted_ahead_for_the_next_job_ids_neither_block_the_job_nor_load(
    beamtime: Path, job_owner: LocalUser, attacker: LocalUser
):
    marker = beamtime.parent / "attacker-code-ran"
    for job_id in range(5000, 5100):  # every name the attacker can know: the plain name and its temp names
        assert plant(attacker, beamtime / f"maxwell-{job_id}.return", hostile_pickle(marker))
        os.symlink("/etc/passwd", beamtime / f"maxwell-{job_id}.return.{job_id}")
    returns = returns_of(beamtime, job_owner)
    done = run_job(job_owner, beamtime, returns, 5042)
    assert done.returncode == 0, done.stderr
    assert returns.read(5042) == {"run": 5042, "frames": 10_000}
    assert not marker.exists()


def test_the_job_writes_through_no_symlink(beamtime: Path, job_owner: LocalUser, attacker: LocalUser):
    """Even at the final name (were it known): the job replaces the link, and the job user's files stay."""
    bashrc = beamtime.parent / "home" / ".bashrc"
    bashrc.parent.mkdir()
    bashrc.write_text("# the job user's own\n")
    shutil.chown(bashrc, job_owner.uid, job_owner.gid)
    shutil.chown(bashrc.parent, job_owner.uid, job_owner.gid)
    returns = returns_of(beamtime, job_owner)
    linked = attacker.run(["ln", "-s", str(bashrc), returns.path(6001)])
    assert linked.returncode == 0, linked.stderr
    done = run_job(job_owner, beamtime, returns, 6001)
    assert bashrc.read_text() == "# the job user's own\n"
    if done.returncode == 0:  # group-writable folder: the link itself was replaced by the job's file
        assert not os.path.islink(returns.path(6001))
        assert returns.read(6001) == {"run": 6001, "frames": 10_000}
    else:  # sticky folder: the attacker's link cannot be replaced, the job fails saying so
        assert "PermissionError" in done.stderr
        with pytest.raises(ReturnValueUnreadable, match="symbolic link"):
            returns.read(6001)
    assert not [p for p in beamtime.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


@pytest.mark.parametrize("shared_folder_mode", [0o777], ids=["group-writable"], indirect=True)
def test_the_worker_reads_only_a_regular_file_no_one_else_may_write(beamtime: Path, job_owner: LocalUser):
    returns = returns_of(beamtime, job_owner)
    assert run_job(job_owner, beamtime, returns, 7001).returncode == 0
    path = Path(returns.path(7002))
    os.mkfifo(path)  # open() of a FIFO would wait for a writer: the worker must not hang
    with pytest.raises(ReturnValueUnreadable, match="not a regular file"):
        returns.read(7002)
    path.unlink()
    path.symlink_to(returns.path(7001))  # even a link to a genuine file
    with pytest.raises(ReturnValueUnreadable, match="symbolic link"):
        returns.read(7002)
    Path(returns.path(7001)).chmod(0o620)
    with pytest.raises(ReturnValueUnreadable, match="may be written by others"):
        returns.read(7001)


@pytest.mark.parametrize("shared_folder_mode", [0o777], ids=["group-writable"], indirect=True)
def test_a_genuine_file_cannot_stand_in_for_another_job_task_or_task_instance(beamtime: Path, job_owner: LocalUser):
    returns = returns_of(beamtime, job_owner)
    assert run_job(job_owner, beamtime, returns, 8001).returncode == 0
    genuine = Path(returns.path(8001)).read_bytes()
    for other_job, other_task in ((8002, None), (8001, 3)):  # another job's name; a task of an array
        target = Path(returns.path(other_job, other_task))
        target.write_bytes(genuine)
        shutil.chown(target, job_owner.uid, job_owner.gid)
        target.chmod(0o600)
        with pytest.raises(ReturnValueUnreadable, match="does not carry this task's signature"):
            returns.read(other_job, other_task)
    other_instance = returns_of(beamtime, job_owner, task=TASK.replace("/-1", "/0"))  # a mapped sibling
    os.replace(returns.path(8001), other_instance.path(8001))
    with pytest.raises(ReturnValueUnreadable, match="does not carry this task's signature"):
        other_instance.read(8001)


def test_the_key_is_the_task_instances_and_the_connection_secrets():
    key = task_key(["portal-token"], TASK)
    assert key == task_key(["portal-token"], TASK)  # every worker, every try: the same
    assert key != task_key(["portal-token"], TASK.replace("manual__", "scheduled__"))
    assert key != task_key(["another-token"], TASK)
    assert task_key([None, "portal-token"], TASK) == key  # absent secrets are skipped
    assert b"portal-token" not in key and len(key) == 32
    with pytest.raises(MaxwellConfigError, match=r"connection has none: .*do_xcom_push=False"):
        task_key([None, ""], TASK)
    assert "portal-token" not in repr(ReturnValues("/beamtime", key))
