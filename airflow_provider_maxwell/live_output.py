"""Following a running job's output file, so that its new lines reach the task log while the job runs.

Where the file is readable (a shared filesystem, as Maxwell's workers and triggerer have), each read
returns the complete lines written since the last one; a line still being written waits for its end.
Every read is bounded (lines, bytes, line length) and so is the whole follow: a job printing a flood
must not flood the task log, the worker or the triggerer's event loop. A file that shrinks or is
replaced is followed again from its start, and said so. Not a secret boundary: the job's output is the
user's own, and the end-of-job tail shows it anyway.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_maxwell.effects import Protocol, Sleep

MAX_LINE_CHARS = 500  # longer lines are cut: a progress bar redrawn with \r makes one endless line
MAX_TOTAL_LINES = 2000  # per follow: beyond it, only the end-of-job tail
MAX_READ_BYTES = 256 * 1024  # per read: when a job writes more per interval, the older part is skipped
CUT_MARK = " [...cut]"


@dataclass
class OutputFollower:
    """The state of following one file: where the next read starts and what is left of an unfinished line.

    Plain values only (`to_kwargs`): the trigger carries it on from where the worker left off.
    """

    path: str
    lines_per_read: int = 20
    offset: int = 0
    emitted: int = 0
    max_line_chars: int = MAX_LINE_CHARS
    max_total_lines: int = MAX_TOTAL_LINES
    max_read_bytes: int = MAX_READ_BYTES
    _identity: tuple[int, int] | None = field(default=None, repr=False)
    _partial: bytes = field(default=b"", repr=False)
    _skipping: bool = field(default=False, repr=False)  # inside a line already cut or skipped: drop to its end

    @property
    def stopped(self) -> bool:
        """The total budget is spent: nothing more is read."""
        return self.emitted >= self.max_total_lines

    def to_kwargs(self) -> dict[str, Any]:
        """Where to go on from, as plain values (for trigger kwargs): the path, the offset, the limits."""
        return {
            "path": self.path,
            "lines_per_read": self.lines_per_read,
            "offset": self.offset,
            "emitted": self.emitted,
            "max_line_chars": self.max_line_chars,
            "max_total_lines": self.max_total_lines,
            "max_read_bytes": self.max_read_bytes,
        }

    def read(self) -> list[str]:
        """The complete lines written since the last read (bounded), with notes in [brackets] where lines were
        skipped; [] when there is nothing new or the file is not readable here (yet)."""
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
            # O_NONBLOCK: a FIFO in the output's place must not hang the worker or the event loop.
            descriptor = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None, notes
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                return None, notes
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
        text = piece.decode("utf-8", "replace").rstrip("\r")
        text = "".join(c if c.isprintable() or c == "\t" else "?" for c in text[: self.max_line_chars + 1])
        return text[: self.max_line_chars] + CUT_MARK if len(text) > self.max_line_chars else text


def follower_from_kwargs(kwargs: dict[str, Any] | None) -> OutputFollower | None:
    """The follower the worker handed on in trigger kwargs (None: live output is off)."""
    if not kwargs:
        return None
    with contextlib.suppress(TypeError):
        return OutputFollower(**kwargs)
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
