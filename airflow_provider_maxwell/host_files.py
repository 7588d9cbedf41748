"""The per-user folder in which the task processes of one host share what they may share.

Airflow runs every task in a process of its own; without this folder each one would mint its own
Slurm token and discover the API version anew. Only the Unix user that runs the tasks can enter
the folder (0700) or read its files (0600); token files in it are encrypted besides
(auth/shared.py). Anything unexpected (a folder of another owner, open to others, a symlink)
means: share nothing, work as a lone process does, and say so once in the log.

The folder is checked once, through a descriptor held open, and every file in it is then reached
relative to that descriptor (`dir_fd`), never by its path again: whoever may write the folder's
parent (a careless $TMPDIR) can rename the folder or put a symlink in its place, but the files go
to the folder that was checked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

FOLDER_ENV = "MAXWELL_SHARED_DIR"  # overrides where the folder is (tests; hosts whose /run is odd)
FOLDER_NAME = "airflow-provider-maxwell"
PRUNE_AFTER = 2 * 86400.0  # seconds: a file untouched this long belongs to a connection no longer used
LOCK_POLL = 0.05  # seconds between attempts to take a lock another process holds
MAX_FILE = 1 << 20  # bytes read of a shared file at most

# The names this provider gives its files (own_name, then a suffix; temporaries while written): only
# these are ever pruned, since MAXWELL_SHARED_DIR may name a folder that holds the user's own files too.
OWN_NAME = re.compile(
    r"(?:token|api)-[0-9a-f]{40}\.(?:token|json|lock)|\.(?:token|api)-[0-9a-f]{40}\.[0-9a-f]{16}\.part"
)

log = logging.getLogger(__name__)


def own_name(kind: str, identity: str) -> str:
    """The stem of one of this provider's files: its kind ("token", "api") and a hash of what it belongs to.

    Anyone who may list the folder sees the name: `identity` must hold nothing secret.
    """
    return f"{kind}-{hashlib.sha256(identity.encode()).hexdigest()[:40]}"


class HostFolder:
    """The checked folder, held open: files are read, written, locked and pruned relative to it."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path  # where it was found: for messages and tests, never opened by again
        self.descriptor = descriptor
        # Closed only when no one holds this object any more: a number closed while still in use
        # could be reused by another open file, and dir_fd would then point there.
        weakref.finalize(self, os.close, descriptor)

    def vanished(self) -> bool:
        """Whether the folder was removed since it was opened (/run/user/<uid> at the last logout)."""
        try:
            return os.fstat(self.descriptor).st_nlink == 0
        except OSError:
            return True

    def read(self, name: str) -> bytes | None:
        """The content of a file of this user's that no one else can read; None if missing or not so."""
        try:
            descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self.descriptor)
        except OSError:
            return None
        with os.fdopen(descriptor, "rb") as file:
            return file.read(MAX_FILE) if private_file(os.fstat(descriptor)) else None

    def write(self, name: str, content: bytes) -> None:
        """Replace a file atomically with `content`, readable by this user only (readers never see half a file)."""
        temporary = f".{name.rsplit('.', 1)[0]}.{secrets.token_hex(8)}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(temporary, flags, 0o600, dir_fd=self.descriptor)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(content)
            os.replace(temporary, name, src_dir_fd=self.descriptor, dst_dir_fd=self.descriptor)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=self.descriptor)
            raise

    def prune(self, now: float | None = None) -> None:
        """Remove this provider's files nobody has written for PRUNE_AFTER (connections changed or gone);
        any other file in the folder is left alone."""
        limit = (time.time() if now is None else now) - PRUNE_AFTER
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.descriptor):
                with contextlib.suppress(OSError):
                    if _due(entry, limit):
                        os.unlink(entry.name, dir_fd=self.descriptor)

    def lock(self, name: str) -> HostLock:
        """The host-wide lock kept in the file `name` of this folder."""
        return HostLock(self, name)


def _due(entry: os.DirEntry[str], limit: float) -> bool:
    if not entry.is_file(follow_symlinks=False):
        return False
    return bool(OWN_NAME.fullmatch(entry.name)) and entry.stat(follow_symlinks=False).st_mtime < limit


def private_file(info: os.stat_result) -> bool:
    """Whether a file is a plain file of this user's that no one else may read or write."""
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


_opened: dict[Path, HostFolder] = {}  # per process: each folder checked and opened once
_warned: set[Path] = set()  # folders already reported refused by this process
_guard = threading.Lock()


def shared_folder() -> HostFolder | None:
    """This user's folder for shared files, made and checked on first use; None when none can be had
    safely (said once per process and folder in the log, with the fix).

    $XDG_RUNTIME_DIR (a per-user tmpfs that is gone at logout) when the host has one, else the
    system's temporary folder with the user's id in the name.
    """
    configured = os.environ.get(FOLDER_ENV)
    if configured:
        path = Path(configured)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / FOLDER_NAME
    else:
        path = Path(tempfile.gettempdir()) / f"{FOLDER_NAME}-{os.getuid()}"
    with _guard:
        folder = _opened.get(path)
        if folder is None or folder.vanished():
            folder = _open_checked(path, parents=bool(configured))
            if folder is None:
                _opened.pop(path, None)
                return None
            _opened[path] = folder
        return folder


def _open_checked(path: Path, parents: bool) -> HostFolder | None:
    try:
        path.mkdir(mode=0o700, parents=parents, exist_ok=True)
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        _refused(path, _why_not_opened(path, error))
        return None
    # Checked on what was opened, not on the path: a swap after this check changes nothing.
    info = os.fstat(descriptor)
    if info.st_uid != os.getuid():
        why = f"belongs to another owner (uid {info.st_uid})"
    elif info.st_mode & 0o077:
        why = f"is open to others (mode {stat.S_IMODE(info.st_mode):04o})"
    else:
        return HostFolder(path, descriptor)
    os.close(descriptor)
    _refused(path, why)
    return None


def _why_not_opened(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symlink"
    if error.errno == errno.ENOTDIR:
        return "is not a folder"
    return f"cannot be made or opened ({error.strerror})"


def _refused(path: Path, why: str) -> None:
    if path in _warned:
        return
    _warned.add(path)
    log.warning(
        "Maxwell shared folder %s %s: not used, so every task process of this host mints its own Slurm "
        "token (each valid up to 24 h) and discovers the API version anew. Fix: remove it so that it is "
        "made afresh, or make it yours and private (chown, chmod 700), or set %s to a folder of your own.",
        path,
        why,
        FOLDER_ENV,
    )


class HostLock:
    """An exclusive lock between the processes of this host (flock: released by the kernel if the holder dies)."""

    def __init__(self, folder: HostFolder, name: str) -> None:
        self.folder = folder
        self.name = name
        self._descriptor: int | None = None

    @property
    def path(self) -> Path:
        """Where the lock file was found (for messages and tests; it is opened through its folder)."""
        return self.folder.path / self.name

    def acquire(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the lock; False if another process still holds it then, if
        the lock file cannot be opened (its folder vanished, e.g. /run/user/<uid> at the last logout),
        or if it is not this user's private file (planted: its owner could hold it at will)."""
        descriptor = self._open()
        if descriptor is None:
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

    def _open(self) -> int | None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            descriptor = os.open(self.name, flags, 0o600, dir_fd=self.folder.descriptor)
        except OSError:
            return None
        if private_file(os.fstat(descriptor)):
            return descriptor
        os.close(descriptor)
        return None

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
