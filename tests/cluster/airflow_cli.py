"""Running the `airflow` command line against the local Maxwell, for the tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from contextlib import closing
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


def task_state(env: dict[str, str], dag_id: str, task_id: str) -> str | None:
    """The state Airflow's database holds for the newest run of a task (after `airflow dags test`)."""
    database = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    with closing(database):
        row = database.execute(
            "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = ? ORDER BY start_date DESC LIMIT 1",
            (dag_id, task_id),
        ).fetchone()
    return row[0] if row else None


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
        if "RUNNING on" in line:
            break
    return proc, "".join(lines), submitted_ids("".join(lines))[0]
