"""What a scientist reads in the logs of healthy Maxwell tasks, run by Airflow's real scheduler and
triggerer (airflow standalone): the operator, the sensor and @task.maxwell, each waiting in the worker
and deferred. Their progress lines name why a job is pending and where it runs, and no line is at
warning or error level. The connection is the local Maxwell's as Airflow's form saves it (every
field, its default included)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.unit.config.test_form import form_saved_extra

from .airflow_cli import AIRFLOW, TEST_DAGS, dag_parsed, standalone_env, states, stop_group

DAG_ID = "maxwell_task_logs"
WAITS = ("operator", "python", "sensor")
TASKS = ("first", "watched", *(f"{kind}_{where}" for kind in WAITS for where in ("worker", "deferred")))
NOISY = ("warning", "error", "critical", "exception")


def test_healthy_task_logs_name_reason_and_node_and_hold_no_warning(cluster, tmp_path, spawned):
    home = tmp_path / "airflow"
    logs = run_dag(cluster, tmp_path, home)
    noisy = [f"{task}: {line}" for task, lines in logs.items() for level, line in lines if level in NOISY]
    assert not noisy, "\n".join(noisy)
    text = {task: "\n".join(line for _, line in lines) for task, lines in logs.items()}
    for kind in ("operator", "python"):
        for where in ("worker", "deferred"):
            said = text[f"{kind}_{where}"]
            # The job waits for the first one to end: slurmctld says so, and the log says what slurmctld said
            # (deferred: the worker's last word before the triggerer's, or the trigger's first).
            assert re.search(r"Slurm job \d+: PENDING \(Dependency\)", said), said
    for kind in WAITS:
        assert re.search(r"Slurm job \d+: RUNNING on \S+", text[f"{kind}_worker"]), text[f"{kind}_worker"]
        # Deferred: the trigger itself names the node (slurmctld's jobs/state, which it polls, does not).
        said = "\n".join(line for _, line in log_lines(home / "logs", f"{kind}_deferred", ".log.trigger.*"))
        assert re.search(r"Slurm job \d+: RUNNING on \S+", said), said
    # What users meet in every task otherwise: the token line as it is, no masking or XCom complaint.
    everything = "\n".join(text.values())
    assert "too short" not in everything and "XCom not found" not in everything
    assert "Last 0 lines" not in everything


def run_dag(cluster: dict[str, Any], tmp_path: Path, home: Path) -> dict[str, list[tuple[str, str]]]:
    """Run the DAG once through `airflow standalone`; each task's log lines (worker and triggerer) as
    (level, text)."""
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(TEST_DAGS / "maxwell_log_dags.py", dags)  # only this DAG: parsed in seconds
    env = standalone_env(cluster, home, dags, parallelism=8)  # the six waits at once: each sees the first job run
    conn = json.loads(env["AIRFLOW_CONN_MAXWELL_DEFAULT"])
    env["AIRFLOW_CONN_MAXWELL_FORM"] = json.dumps({**conn, "extra": form_saved_extra(**conn["extra"])})
    env["MAXWELL_LOG_CONN"] = "maxwell_form"
    log = open(tmp_path / "standalone.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    db = home / "airflow.db"
    try:
        deadline = time.monotonic() + 120
        while not dag_parsed(db, DAG_ID):
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the DAG was not parsed within 120 s"
            time.sleep(1)
        for command in (["dags", "unpause", DAG_ID], ["dags", "trigger", DAG_ID]):
            subprocess.run([AIRFLOW, *command], env=env, check=True, capture_output=True, timeout=120)
        deadline = time.monotonic() + 240  # about 70 s on a quiet cluster
        while time.monotonic() < deadline:
            seen = dict(states(db, DAG_ID))
            if len(seen) == len(TASKS) and all(s in ("success", "failed", "upstream_failed") for s in seen.values()):
                break
            time.sleep(1)
        assert seen == dict.fromkeys(TASKS, "success"), f"{seen}\n{(tmp_path / 'standalone.log').read_text()[-3000:]}"
    finally:
        stop_group(proc)
        log.close()
    return {task: log_lines(home / "logs", task) for task in TASKS}


def log_lines(folder: Path, task: str, files_like: str = ".log*") -> list[tuple[str, str]]:
    """A task's log lines, its worker's and its triggerer's (or the files named `*{files_like}`): Airflow
    writes them as JSON, one per line."""
    files = sorted(folder.rglob(f"dag_id={DAG_ID}/*/task_id={task}/*{files_like}"))
    assert files, f"no log of {task} under {folder}"
    lines = []
    for path in files:
        for raw in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                lines.append(("", raw))
                continue
            lines.append((str(entry.get("level", "")).lower(), str(entry.get("event", raw))))
    return lines
