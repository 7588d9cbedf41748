"""Following a running job's output file, so that its new lines reach the task log while the job runs.

Where the file is readable (a shared filesystem, as Maxwell's workers and triggerer have), each read
returns the complete lines written since the last one; a line still being written waits for its end.
Every read is bounded (lines, bytes, line length) and so is the whole follow: a job printing a flood
must not flood the task log, the worker or the triggerer's event loop. A file that shrinks or is
replaced is followed again from its start, and said so.

Which file may be read is decided in one place (`open_output`), for the worker, the end-of-job tail and
the triggerer alike: the path comes from Slurm's answer, so a hostile server, or the job's owner (another
user than the one running Airflow), could name or plant (a symlink) a file of the worker's host, such as
airflow.cfg. Only a regular file, not a symlink, of the job's own user, under the job's working
directory or at an output path the task set, is copied into the task log.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_maxwell.effects import Protocol, Sleep
from airflow_provider_maxwell.trigger_kwargs import as_kwargs

MAX_LINE_CHARS = 500  # longer lines are cut: a progress bar redrawn with \r makes one endless line
MAX_TOTAL_LINES = 2000  # per follow: beyond it, only the end-of-job tail
MAX_READ_BYTES = 256 * 1024  # per read: when a job writes more per interval, the older part is skipped
CUT_MARK = " [...cut]"
# Slurm's filename patterns (%j, %5a, %x, ...): each stands for one run of characters within a path component.
_PATTERN = re.compile(r"%%|%[0-9]*[A-Za-z]")


class OutputRefused(Exception):
    """A job's output file that is not copied into the task log; the message says why (never what it holds)."""


@dataclass(frozen=True)
class OutputAccess:
    """Which files may be read as one job's output on this host: regular files of the job's user (`owner_uid`),
    at an output path the task set or Slurm's default name in the job's working directory (`patterns`,
    absolute, with Slurm's %-patterns), written since the job was submitted (`written_after`, seconds since
    the epoch; None: not checked). Plain values (`to_kwargs`): the trigger carries it."""

    owner_uid: int | None  # None: the job's user is not known on this host, so no file can be told to be theirs
    patterns: tuple[str, ...] = ()
    written_after: float | None = None

    def to_kwargs(self) -> dict[str, Any]:
        """The rule as plain values (lists, not tuples: trigger kwargs are stored as JSON)."""
        return as_kwargs(self)

    @classmethod
    def from_kwargs(cls, kwargs: object) -> OutputAccess | None:
        """What `to_kwargs` wrote; None for anything else (nothing is then read)."""
        if not isinstance(kwargs, Mapping):
            return None
        owner, patterns, after = kwargs.get("owner_uid"), kwargs.get("patterns"), kwargs.get("written_after")
        if not (owner is None or (isinstance(owner, int) and not isinstance(owner, bool))):
            return None
        if not (isinstance(patterns, list) and all(isinstance(p, str) for p in patterns)):
            return None
        if not (after is None or (isinstance(after, int | float) and not isinstance(after, bool))):
            return None
        return cls(owner, tuple(patterns), None if after is None else float(after))


# Where a job's output goes: the task's job fields, #SBATCH lines in its script, else Slurm's own names.
_SBATCH_OUTPUT = re.compile(r"^#SBATCH[ \t]+(?:--output|--error|-o|-e)(?:=|[ \t]+)(\S+)", re.MULTILINE)
SLURM_DEFAULT_OUTPUTS = ("slurm-%j.out", "slurm-%A_%a.out")
CLOCK_SLACK = 120.0  # seconds: the file server's clock (a file's mtime) may disagree with slurmctld's


def output_access(
    login: str,
    record_uid: int | None,
    working_directory: str,
    declared: Iterable[str] = (),
    script: str = "",
    submitted_at: float | None = None,
) -> OutputAccess:
    """The rule for the output of a job of `login` that the task sent to `working_directory`: the output paths
    it declared (`standard_output`/`standard_error`, and `#SBATCH --output/--error` in `script`; relative
    ones under the working directory) and Slurm's default names there, never a path the server names
    elsewhere (a file of the job's user under its home, say, such as airflow.cfg); written since
    `submitted_at` (a file moved into the output's place keeps its older mtime)."""
    folder = os.path.normpath(working_directory)
    named = [*declared, *(path.strip("'\"") for path in _SBATCH_OUTPUT.findall(script))]
    patterns = tuple(
        dict.fromkeys(os.path.normpath(os.path.join(folder, p)) for p in [*named, *SLURM_DEFAULT_OUTPUTS] if p)
    )
    after = submitted_at - CLOCK_SLACK if submitted_at is not None else None
    return OutputAccess(job_owner_uid(login, record_uid), patterns, after)


def job_owner_uid(login: str, record_uid: int | None) -> int | None:
    """The uid of the job's user on this host: the connection's login as this host names it (Slurm runs the
    job as the token's user); where the host does not know the login, the uid in the job record, but only
    if this host gives that uid to no other name (a record naming root's or Airflow's own uid is no proof)."""
    try:
        uid = pwd.getpwnam(login).pw_uid
    except (KeyError, ValueError):  # ValueError: a NUL in the name
        uid = None
    if uid is not None:
        return uid if record_uid is None or record_uid == uid else None
    if record_uid is None or record_uid < 0:
        return None
    try:
        pwd.getpwuid(record_uid)
    except KeyError:
        return record_uid
    return None  # the host knows this uid, under another name than the job's user


def path_refusal(path: str, access: OutputAccess) -> str | None:
    """Why `path` is not one of the job's output files by name alone (None: it may be opened)."""
    if access.owner_uid is None:
        return "the job's user is not known on this host, so the file's owner cannot be checked"
    if not os.path.isabs(path):
        return "it is not an absolute path"
    normal = os.path.normpath(path)
    if any(_matches(pattern, normal) for pattern in access.patterns):
        return None
    return "it is no output path the task set, nor Slurm's default name in the job's working directory"


def _matches(pattern: str, path: str) -> bool:
    """`path` is what the output path `pattern` expands to: each %-pattern stands for characters within one
    path component (never a '/', and `path` is normalized, so never '..')."""
    parts, last = [], 0
    for found in _PATTERN.finditer(pattern):
        parts.append(re.escape(pattern[last : found.start()]))
        parts.append("%" if found.group() == "%%" else "[^/]+")
        last = found.end()
    parts.append(re.escape(pattern[last:]))
    return re.fullmatch("".join(parts), path) is not None


def open_output(path: str, access: OutputAccess) -> int:
    """A descriptor of the job's output file at `path`, opened for reading, if `access` lets it be read: the
    one rule for the worker, the tail and the triggerer. OutputRefused (with the reason) if not; OSError if
    it is not there (yet) or not readable from this host."""
    refusal = path_refusal(path, access)
    if refusal is not None:
        raise OutputRefused(refusal)
    try:
        # O_NOFOLLOW: a symlink planted in the output's place is not followed.
        # O_NONBLOCK: a FIFO in the output's place must not hang the worker or the event loop.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OutputRefused("it is a symbolic link") from None
        raise
    try:
        info = os.fstat(descriptor)  # of what was opened: no swap between a check and the open
        if not stat.S_ISREG(info.st_mode):
            raise OutputRefused("it is not a regular file")
        if info.st_uid != access.owner_uid:
            raise OutputRefused(f"it belongs to uid {info.st_uid}, not to the job's user (uid {access.owner_uid})")
        if access.written_after is not None and info.st_mtime < access.written_after:
            raise OutputRefused("it was last written before the job was submitted (moved into the output's place?)")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def tail(path: str, count: int, access: OutputAccess) -> list[str]:
    """The last `count` lines of the job's output file, from at most its last MAX_READ_BYTES (output files can
    be large, and a progress bar redrawn with \r makes lines of any length), each made printable and cut as
    live output does. OutputRefused or OSError as `open_output` raises them."""
    descriptor = open_output(path, access)
    try:
        size = os.fstat(descriptor).st_size
        data = os.pread(descriptor, MAX_READ_BYTES, max(0, size - MAX_READ_BYTES))
    finally:
        os.close(descriptor)
    return [printable_line(line) for line in data.split(b"\n")[-count - 1 :] if line][-count:]


def tail_text(path: str, count: int, access: OutputAccess) -> str:
    """What the task log says of the job's output at its end: its last lines, why they are not copied, or
    nothing for a file without a visible character (never a reason to fail the task)."""
    try:
        lines = tail(path, count, access)
    except OutputRefused as refused:
        return f"Job output {path} is not copied here: {refused}"
    except OSError:
        return f"Job output {path} is not readable from this worker"
    if not any(line.strip() for line in lines):  # no output, or only blank lines: nothing worth a heading
        return ""
    return f"Last {len(lines)} line{'s' if len(lines) > 1 else ''} of {path}:\n" + "\n".join(lines)


def printable_line(piece: bytes, max_chars: int = MAX_LINE_CHARS) -> str:
    """One line of output as the task log shows it: decoded, control characters as '?', cut at `max_chars`."""
    text = piece.decode("utf-8", "replace").rstrip("\r")
    text = "".join(c if c.isprintable() or c == "\t" else "?" for c in text[: max_chars + 1])
    return text[:max_chars] + CUT_MARK if len(text) > max_chars else text


@dataclass
class OutputFollower:
    """The state of following one file: where the next read starts and what is left of an unfinished line.

    Plain values only (`to_kwargs`): the trigger carries it on from where the worker left off. A file that
    `access` does not let be read is said once, and the follow ends there.
    """

    path: str
    access: OutputAccess
    lines_per_read: int = 20
    offset: int = 0
    emitted: int = 0
    max_line_chars: int = MAX_LINE_CHARS
    max_total_lines: int = MAX_TOTAL_LINES
    max_read_bytes: int = MAX_READ_BYTES
    refused: bool = False  # the file was refused (and that said): nothing more is read
    _identity: tuple[int, int] | None = field(default=None, repr=False)
    _partial: bytes = field(default=b"", repr=False)
    _skipping: bool = field(default=False, repr=False)  # inside a line already cut or skipped: drop to its end

    @property
    def stopped(self) -> bool:
        """The total budget is spent, or the file was refused: nothing more is read."""
        return self.refused or self.emitted >= self.max_total_lines

    def to_kwargs(self) -> dict[str, Any]:
        """Where to go on from, as plain values (for trigger kwargs): the path, the rule, the offset, the limits."""
        return as_kwargs(self)

    def read(self) -> list[str]:
        """The complete lines written since the last read (bounded), with notes in [brackets] where lines were
        skipped or the file is refused; [] when there is nothing new or the file is not readable here (yet)."""
        if self.stopped or self.lines_per_read <= 0:
            return []
        data, notes = self._read_bytes()
        if data is None:
            return notes
        lines = self._split(data)
        if len(lines) > self.lines_per_read:
            skipped = len(lines) - self.lines_per_read
            notes.append(f"[{skipped} lines skipped: at most {self.lines_per_read} per poll]")
            lines = lines[-self.lines_per_read :]
        out = notes + lines
        room = self.max_total_lines - self.emitted
        if len(lines) >= room:
            out = notes + lines[:room]
            out.append(f"[live output stops after {self.max_total_lines} lines; the end-of-job tail follows]")
        self.emitted += min(len(lines), room)
        return out

    def _read_bytes(self) -> tuple[bytes | None, list[str]]:
        notes: list[str] = []
        try:
            descriptor = open_output(self.path, self.access)
        except OutputRefused as refused:
            self.refused = True
            return None, [f"[the output file is not copied here: {refused}]"]
        except OSError:
            return None, notes
        try:
            info = os.fstat(descriptor)
            identity = (info.st_dev, info.st_ino)
            if (self._identity is not None and identity != self._identity) or info.st_size < self.offset:
                notes.append("[the output file was truncated or replaced: following it from its start]")
                self.offset, self._partial, self._skipping = 0, b"", False
            self._identity = identity
            if info.st_size - self.offset > self.max_read_bytes:
                skipped = info.st_size - self.max_read_bytes - self.offset
                notes.append(f"[{skipped} bytes of output skipped: at most {self.max_read_bytes} per poll]")
                self.offset, self._partial, self._skipping = info.st_size - self.max_read_bytes, b"", True
            data = os.pread(descriptor, self.max_read_bytes, self.offset)
        except OSError:
            return None, notes
        finally:
            os.close(descriptor)
        self.offset += len(data)
        return data, notes

    def _split(self, data: bytes) -> list[str]:
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()  # no newline yet: the job is still writing this line
        if self._skipping and pieces:
            pieces.pop(0)  # the end of a line already cut or skipped
            self._skipping = False
        lines = [self._text(piece) for piece in pieces]
        if len(self._partial) > self.max_line_chars * 4:  # an endless line: show its start, drop the rest
            if not self._skipping:
                lines.append(self._text(self._partial))
            self._partial, self._skipping = b"", True
        return lines

    def _text(self, piece: bytes) -> str:
        return printable_line(piece, self.max_line_chars)


def follower_from_kwargs(kwargs: dict[str, Any] | None) -> OutputFollower | None:
    """The follower the worker handed on in trigger kwargs (None: live output is off, or the kwargs carry no
    readable rule for which file may be read: then nothing is read)."""
    if not kwargs:
        return None
    access = OutputAccess.from_kwargs(kwargs.get("access"))
    if access is None:
        return None
    with contextlib.suppress(TypeError):
        return OutputFollower(**{**kwargs, "access": access})
    return None


def before_each_sleep(protocol: Protocol[Any], action: Callable[[], None]) -> Protocol[Any]:
    """The same protocol, with `action` run each time it is about to wait (between polls of a job)."""
    result: Any = None
    try:
        while True:
            effect = protocol.send(result)
            if isinstance(effect, Sleep):
                action()
            result = yield effect
    except StopIteration as done:
        return done.value
