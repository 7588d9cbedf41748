"""Long-running processes of the local Maxwell and the local site, started and stopped by PID only:
each one's PID (with its start time, so a reused PID is never taken for it) in <state>/pids/<name>.pid,
its output in <state>/logs/<name>.log. Standard library only."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (field 3 on), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None


def tree_of(root: int) -> set[int]:
    """`root` and every process it started, however deep (some start sessions of their own)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(int(stat.parent.name))
        if fields:
            parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def living(pids: set[int]) -> set[int]:
    """Those of `pids` that run (neither gone nor a zombie)."""
    return {pid for pid in pids if (fields := _stat_fields(pid)) and fields[0] != "Z"}


class Processes:
    """The processes recorded under one state folder."""

    def __init__(self, state: Path) -> None:
        self.state = state

    def pid_file(self, name: str) -> Path:
        return self.state / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"

    def running_pid(self, name: str) -> int | None:
        """The PID recorded for `name` if that process still lives (and is not a reused PID)."""
        path = self.pid_file(name)
        if not path.exists():
            return None
        pid, _, started = path.read_text().partition(" ")
        fields = _stat_fields(int(pid))
        # Field 22 of /proc/PID/stat is the start time: a reused PID has another one.
        if fields is None or (started.strip() and fields[19] != started.strip()) or fields[0] == "Z":
            return None
        return int(pid)

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None, cwd: str = "/") -> int:
        """Start a long-running process in the background, logging to <state>/logs, and record its PID."""
        existing = self.running_pid(name)
        if existing:
            return existing
        self.pid_file(name).parent.mkdir(parents=True, exist_ok=True)
        self.log_file(name).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(name), "ab") as logfile:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=cwd,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        fields = _stat_fields(proc.pid)
        self.pid_file(name).write_text(f"{proc.pid} {fields[19] if fields else ''}")
        return proc.pid

    def stop(self, name: str, timeout: float = 20, tree: bool = False) -> None:
        """SIGTERM the process, SIGKILL after `timeout`; with `tree`, also every process it started
        that outlived it (a Celery worker's pool, a task's supervisor)."""
        pid = self.running_pid(name)
        if pid:
            family = tree_of(pid) if tree else {pid}
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while living(family) and time.monotonic() < deadline:
                if tree and not living({pid}):
                    for child in living(family):  # orphans of a stopped parent get its signal too
                        with suppress(ProcessLookupError):
                            os.kill(child, signal.SIGTERM)
                time.sleep(0.2)
            for left in living(family):
                print(f"{name}: pid {left} ignored SIGTERM for {timeout:.0f} s: SIGKILL", flush=True)
                with suppress(ProcessLookupError):
                    os.kill(left, signal.SIGKILL)
        self.pid_file(name).unlink(missing_ok=True)

    def wait_for(self, what: str, check: Callable[[], object], timeout: float = 60, name: str | None = None) -> None:
        """Until `check()` is true; fails at once with the end of its log when process `name` exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception:
                pass
            if name and not self.running_pid(name):
                tail = self.log_file(name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited while waiting for {what}; its log ends:\n{tail}")
            time.sleep(0.25)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
