"""The return values of `@task.maxwell` jobs: a file the job writes into its working directory, sealed
so that the worker loads only what this task's job wrote.

The working directory is shared (GPFS beamtime folders are writable by a whole group, a sticky folder
by everyone), and loading a pickle runs code. So each task instance has a key that only its job (in
its script, readable by the job's owner and Slurm's administrators) and the Airflow workers (derived
from the connection's secret) know. The job writes the value under a name derived from the key and the job id, with
an HMAC-SHA256 of the job id, the array task and the bytes on the first line. The worker opens the
file without following a symlink, checks it is a regular file of the job's user that no one else may
write, checks the HMAC, and only then unpickles it; then it deletes the file.

The job's side is Python text run on Maxwell (`job_writer`); no Airflow import here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_maxwell.exceptions import MaxwellConfigError, MaxwellError

SERIALIZERS = ("pickle", "dill", "cloudpickle")  # as Airflow's virtualenv decorator offers them
FORMAT = b"maxwell-return-1"  # the first line: this, a space, the HMAC in hex
PICKLE_PROTOCOL = 4  # readable by every Python from 3.4 on: Maxwell's interpreter may be older than the worker's
_KEY_PURPOSE = b"airflow-provider-maxwell return value key\0"
_NAME_PURPOSE = b"file name "


class ReturnValueUnreadable(MaxwellError):
    """The job ended, but the value its function returned cannot be read from this worker."""


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


def task_key(secrets: Iterable[str | bytes | None], task_instance: str) -> bytes:
    """The key of one task instance's return values, from the connection's secrets and the task
    instance's identity (`reattach.comment_tag`): the same on every worker and every try, unknown
    to anyone without the connection's secret, and different for every task instance."""
    material = [s.decode("latin-1") if isinstance(s, bytes) else s for s in secrets if s]
    if not material:
        raise MaxwellConfigError(
            "@task.maxwell signs its return values with a key derived from the connection's secret, and this "
            "connection has none: give it a password, Keycloak client secret or signing key, or set "
            "do_xcom_push=False"
        )
    secret = hashlib.sha256(json.dumps(material).encode()).digest()
    return hmac.new(secret, _KEY_PURPOSE + task_instance.encode(), hashlib.sha256).digest()


def seal(key: bytes, job_id: str, array_task: str, payload: bytes) -> str:
    """The HMAC-SHA256 (hex) of one return file's value: bound to its job and array task, so a file
    cannot stand in for another job's or another task's."""
    signed = f"{job_id}:{array_task}\n".encode() + payload
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ReturnValues:
    """Where one task instance's job leaves its return values, and how the worker reads them back.

    :param folder: the job's working directory (absolute), shared with the workers.
    :param key: `task_key(...)` of the task instance.
    :param serializer: ``pickle``, ``dill`` or ``cloudpickle``.
    :param owner: the uid the files must belong to (the job's user), None where this host does not
        know the user: then the HMAC alone decides.
    """

    folder: str
    key: bytes = field(repr=False)
    serializer: str = "pickle"
    owner: int | None = None

    @property
    def key_text(self) -> str:
        """The key as the job script carries it (base64)."""
        return base64.b64encode(self.key).decode()

    def name_tag(self, job_id: int | str) -> str:
        """A part of a job's file names no one can guess without the key, different for every job: no
        one can plant files for a future job (which would block the job's own), even after seeing the
        names of this task's earlier jobs."""
        return hmac.new(self.key, _NAME_PURPOSE + str(job_id).encode(), hashlib.sha256).hexdigest()[:16]

    def path(self, job_id: int, array_task: int | None = None) -> str:
        """The file of one job (or of one task of an array)."""
        suffix = f"_{array_task}" if array_task is not None else ""
        return os.path.join(self.folder, f"maxwell-{job_id}{suffix}.{self.name_tag(job_id)}.return")

    def read(self, job_id: int, array_task: int | None = None) -> Any:
        """The value the job's function returned, once the file proved to be its job's."""
        path = self.path(job_id, array_task)
        payload = self._verified(path, self._owned_bytes(path), job_id, array_task)
        module = serializer_module(self.serializer)
        try:
            return module.loads(payload)
        except Exception as error:  # unpickling runs the serializer's code: anything may go wrong in it
            raise ReturnValueUnreadable(
                f"the job's return value in {path} could not be read with {self.serializer} "
                f"({type(error).__name__}: {error}); is the worker's Python or the modules of the returned objects "
                "different from Maxwell's?"
            ) from None

    def discard(self, job_id: int, array_tasks: Iterable[int | None] = (None,)) -> list[str]:
        """Delete the files once read (a value is read once); the paths that could not be deleted."""
        left = []
        for task in array_tasks:
            try:
                os.unlink(self.path(job_id, task))
            except FileNotFoundError:
                pass
            except OSError:
                left.append(self.path(job_id, task))
        return left

    def _owned_bytes(self, path: str) -> bytes:
        """The file's bytes, if it is a regular file (not a symlink, FIFO or device) that belongs to the
        job's user and that no one else may write."""
        try:
            # O_NONBLOCK: a FIFO planted under the name must not hang the worker in open().
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ReturnValueUnreadable(
                f"the job's return value should be in {path}, which does not exist on this worker: the job's "
                "working directory must be on a file system the Airflow workers share (as GPFS on Maxwell), or set "
                "do_xcom_push=False on the task if its value is not needed"
            ) from None
        except OSError as error:
            why = "it is a symbolic link" if os.path.islink(path) else error.strerror
            raise ReturnValueUnreadable(
                f"the job's return value in {path} is not readable on this worker ({why}); set "
                "do_xcom_push=False on the task if its value is not needed"
            ) from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ReturnValueUnreadable(f"the job's return value in {path} is not a regular file: not read")
            if self.owner is not None and info.st_uid != self.owner:
                raise ReturnValueUnreadable(
                    f"the job's return value in {path} belongs to uid {info.st_uid}, not to the job's user "
                    f"(uid {self.owner}): someone else wrote it; not read"
                )
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise ReturnValueUnreadable(
                    f"the job's return value in {path} may be written by others (mode {stat.S_IMODE(info.st_mode):o}): "
                    "not read"
                )
            return f.read()

    def _verified(self, path: str, data: bytes, job_id: int, array_task: int | None) -> bytes:
        """The value's bytes, if the first line's HMAC is this task's key's for this job and task."""
        first, _, payload = data.partition(b"\n")
        form, _, mac = first.partition(b" ")
        expected = seal(self.key, str(job_id), "" if array_task is None else str(array_task), payload)
        if form != FORMAT or not hmac.compare_digest(mac, expected.encode()):
            raise ReturnValueUnreadable(
                f"the job's return value in {path} does not carry this task's signature: it was written by "
                "someone else, or the connection's secret changed while the job ran; not read"
            )
        return payload


def job_writer(values: ReturnValues, result_name: str) -> str:
    """Python text, run by the job after its function returned `result_name`, that writes the sealed file.

    mkstemp creates the file exclusively (O_EXCL, mode 0600) in the folder, so no planted name or
    symlink is written through; os.replace then puts it in place whole (the worker never reads half a
    file) and replaces a symlink planted under the final name rather than following it.
    """
    return f"""
import hashlib as _hashlib, hmac as _hmac, tempfile as _tempfile
_job = _os.environ.get("SLURM_ARRAY_JOB_ID") or _os.environ["SLURM_JOB_ID"]
_task = _os.environ.get("SLURM_ARRAY_TASK_ID") or ""
_key = _base64.b64decode("{values.key_text}")
_data = _serializer.dumps({result_name}, protocol={PICKLE_PROTOCOL})
_mac = _hmac.new(_key, (_job + ":" + _task + "\\n").encode() + _data, _hashlib.sha256).hexdigest()
_tag = _hmac.new(_key, {_NAME_PURPOSE!r} + _job.encode(), _hashlib.sha256).hexdigest()[:16]
_name = "maxwell-" + _job + ("_" + _task if _task else "") + "." + _tag + ".return"
_fd, _tmp = _tempfile.mkstemp(prefix=".maxwell-" + _job + "-", suffix=".tmp", dir={values.folder!r})
try:
    with _os.fdopen(_fd, "wb") as _out:
        _out.write({FORMAT!r} + b" " + _mac.encode() + b"\\n")
        _out.write(_data)
    _os.replace(_tmp, _os.path.join({values.folder!r}, _name))
except BaseException:
    _os.unlink(_tmp)
    raise
"""
