"""The per-user folder in which the task processes of one host share what they may share.

Airflow runs every task in a process of its own; without this folder each one would mint its own
Slurm token and discover the API version anew. Only the Unix user that runs the tasks can enter
the folder (0700) or read its files (0600); token files in it are encrypted besides
(auth/shared.py). Anything unexpected (a folder of another owner, open to others, a symlink)
means: share nothing, work as a lone process does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

FOLDER_ENV = "MAXWELL_SHARED_DIR"  # overrides where the folder is (tests; hosts whose /run is odd)
FOLDER_NAME = "airflow-provider-maxwell"
PRUNE_AFTER = 2 * 86400.0  # seconds: a file untouched this long belongs to a connection no longer used
LOCK_POLL = 0.05  # seconds between attempts to take a lock another process holds


def shared_folder() -> Path | None:
    """This user's folder for shared files, made on first use; None when none can be had safely.

    $XDG_RUNTIME_DIR (a per-user tmpfs that is gone at logout) when the host has one, else the
    system's temporary folder with the user's id in the name.
    """
    configured = os.environ.get(FOLDER_ENV)
    if configured:
        folder = Path(configured)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / FOLDER_NAME
    else:
        folder = Path(tempfile.gettempdir()) / f"{FOLDER_NAME}-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, parents=bool(configured), exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    return folder if private else None


def read_private(path: Path) -> bytes | None:
    """The content of a file of this user's that no one else can read; None if missing or not so."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o077 or not stat.S_ISREG(info.st_mode):
            return None
        return file.read(1 << 20)


def write_private(path: Path, content: bytes) -> None:
    """Replace a file atomically with `content`, readable by this user only (readers never see half a file)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def prune(folder: Path, now: float | None = None) -> None:
    """Remove files nobody has written for PRUNE_AFTER (connections changed or gone)."""
    limit = (time.time() if now is None else now) - PRUNE_AFTER
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(entry.path)


class HostLock:
    """An exclusive lock between the processes of this host (flock: released by the kernel if the holder dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor: int | None = None

    def acquire(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the lock; False if another process still holds it then, or if
        the lock file cannot be opened (its folder vanished, e.g. /run/user/<uid> at the last logout)."""
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() >= deadline:
                    os.close(descriptor)
                    return False
                time.sleep(LOCK_POLL)
                continue
            self._descriptor = descriptor
            return True

    def release(self) -> None:
        """Let the next process in."""
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the only descriptor releases the flock
            self._descriptor = None

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[bool]:
        """`with lock.held(t) as got:` got tells whether the lock is held inside the block."""
        got = self.acquire(timeout)
        try:
            yield got
        finally:
            if got:
                self.release()
