"""Running the `airflow` command line against the local Maxwell, for the tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

from ..conftest import PROJECT, STATE

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
EXAMPLES = PROJECT / "example_dags"
TEST_DAGS = PROJECT / "tests" / "dags"


def connection_env() -> dict[str, str]:
    env = {}
    for line in (STATE / "connections.env").read_text().splitlines():
        if line.startswith("export AIRFLOW_CONN_"):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
    return env


def make_airflow_env(cluster: dict[str, Any], home: Path) -> dict[str, str]:
    """An environment for `airflow` commands: its own home and database, the local Maxwell's connections."""
    env = {
        **os.environ,
        **connection_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW_VAR_MAXWELL_WORKDIR": cluster["jobs_dir"],
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


def dags_test(
    env: dict[str, str], folder: Path, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 300
) -> tuple[int, str]:
    args = [AIRFLOW, "dags", "test", dag_id] + (["-c", json.dumps(conf)] if conf else [])
    run_env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(folder)}
    result = subprocess.run(args, env=run_env, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def task_sections(output: str) -> dict[str, str]:
    """The output of `airflow dags test`, split by task: each task's part starts at the line
    "[DAG TEST] starting task_id=..." and runs to the next one (dags test writes no task log files)."""
    parts = re.split(r"\[DAG TEST\] starting task_id=(\S+)", output)
    sections: dict[str, str] = {}
    for task_id, text in zip(parts[1::2], parts[2::2], strict=True):
        sections[task_id] = sections.get(task_id, "") + text
    return sections


def noisy_task_lines(output: str) -> list[str]:
    """The lines at warning level or above in the tasks' part of `airflow dags test`'s output. The CLI's
    own lines are not a task's: those before the first task (graphviz), and the warning of starlette's
    test client, through which `dags test` runs the Execution API in its own process (a worker does not)."""
    return [
        f"{task}: {line}"
        for task, text in task_sections(output).items()
        for line in text.splitlines()
        if re.search(r"\[(warning|error|critical)\s*\]", line) and "starlette.testclient" not in line
    ]


def task_state(env: dict[str, str], dag_id: str, task_id: str) -> str | None:
    """The state Airflow's database holds for the newest run of a task (after `airflow dags test`)."""
    database = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    with closing(database):
        row = database.execute(
            "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = ? ORDER BY start_date DESC LIMIT 1",
            (dag_id, task_id),
        ).fetchone()
    return row[0] if row else None


def xcom_value(env: dict[str, str], dag_id: str, task_id: str, key: str) -> Any:
    """An XCom of the newest run of a task, as Airflow 3 stores it (JSON), after `airflow dags test`."""
    database = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    with closing(database):
        row = database.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ? ORDER BY timestamp DESC LIMIT 1",
            (dag_id, task_id, key),
        ).fetchone()
    if row is None:
        return None
    value = json.loads(row[0])
    return json.loads(value) if isinstance(value, str) else value


def submitted_ids(output: str) -> list[int]:
    """Slurm job ids a DAG run's output says it submitted."""
    return [int(x) for x in re.findall(r"Submitted Slurm job (\d+)", output)]


def start_until_running(
    env: dict[str, str], dag_id: str, spawned: list[subprocess.Popen], script: str = "#!/bin/bash\nsleep 120\n"
) -> tuple[subprocess.Popen, str, int]:
    """Start `airflow dags test` of a test DAG in the background; return once its job runs
    (the process, its output so far, the job id)."""
    proc = subprocess.Popen(
        [AIRFLOW, "dags", "test", dag_id, "-c", json.dumps({"script": script})],
        env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    spawned.append(proc)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        # "RUNNING on maxwn26", from the worker's wait or the trigger's.
        if re.search(r"Slurm job \d+: RUNNING\b", line):
            break
    return proc, "".join(lines), submitted_ids("".join(lines))[0]


# ------------------------------------------------------------------ airflow standalone


def free_ports(count: int) -> list[int]:
    """Ports of 127.0.0.1 nothing listens on (held together while chosen, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def standalone_env(cluster: dict[str, Any], home: Path, dags_folder: Path, parallelism: int = 4) -> dict[str, str]:
    """The environment of an `airflow standalone` (scheduler, triggerer, API server) of the tests' own,
    on ports free right now (another standalone, e.g. a second checkout's tests, may hold the usual ones)."""
    api, worker_logs, trigger_logs = free_ports(3)
    return {
        **os.environ,
        **connection_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW_VAR_MAXWELL_WORKDIR": cluster["jobs_dir"],
        # standalone starts its scheduler, triggerer, ... as `airflow` from PATH
        "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def states(db: Path, dag_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT task_id, COALESCE(state, '') FROM task_instance WHERE dag_id = ?", (dag_id,)
        ).fetchall()


def dag_parsed(db: Path, dag_id: str) -> bool:
    try:
        with sqlite3.connect(db) as conn:
            return bool(conn.execute("SELECT 1 FROM dag WHERE dag_id = ?", (dag_id,)).fetchall())
    except sqlite3.Error:
        return False


def triggerer_child_of(parent: int) -> int:
    """The PID of the `airflow triggerer` process that our standalone (PID `parent`) started."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == parent and b"triggerer" in cmdline:
            return int(stat.parent.name)
    raise AssertionError(f"no triggerer child of {parent}")


def process_table() -> dict[int, tuple[int, int, str]]:
    """Every process: pid -> (parent pid, process group, state letter)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def tree_of(root: int) -> set[int]:
    """`root` and every process it started, however deep (some start sessions of their own)."""
    table = process_table()
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, (parent, _, _) in table.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def alive(pids: set[int]) -> set[int]:
    table = process_table()
    return {pid for pid in pids if pid in table and table[pid][2] != "Z"}


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process this test started and every process under it, by PID: its process group, and the
    children that left it (airflow standalone's triggerer starts a log server in a session of its own)."""
    tree = tree_of(proc.pid)
    os.killpg(proc.pid, signal.SIGTERM)
    for pid in alive(tree - {proc.pid}):
        with suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in alive(tree):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
