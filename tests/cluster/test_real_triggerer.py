"""One run through Airflow's real scheduler and triggerer (airflow standalone), not dag.test():
the task is seen `deferred` in the metadata database and ends `success`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

from .airflow_cli import (
    AIRFLOW,
    TEST_DAGS,
    dag_parsed,
    standalone_env,
    states,
    stop_group,
)
from .test_secrets import leaks, secrets_of

DAG_ID = "maxwell_outcome"


def test_deferred_task_finishes_through_scheduler_and_triggerer(cluster, users, tmp_path, spawned):
    seen, stored_triggers = run_through_standalone(cluster, tmp_path, spawned)
    assert "deferred" in seen, f"states seen: {seen}"
    # The scheduler's, triggerer's and API server's logs, every file they wrote, and the metadata DB
    # (trigger kwargs among them) hold no credential and no Slurm token the run minted.
    found = [
        f"{path.relative_to(tmp_path)}: {hit}"
        for path in sorted(tmp_path.rglob("*"))
        if path.is_file() and path.suffix != ".db"
        for hit in leaks(path.read_bytes(), secrets_of(cluster, users))
    ]
    with sqlite3.connect(tmp_path / "airflow" / "airflow.db") as db:
        dump = "\n".join(db.iterdump()).encode()
    found += [f"metadata DB: {hit}" for hit in leaks(dump, secrets_of(cluster, users))]
    # The trigger's row is gone once it fired: its kwargs were read while the task was deferred.
    found += [f"trigger kwargs: {hit}" for hit in leaks(stored_triggers, secrets_of(cluster, users))]
    assert not found, "\n".join(found)
    assert b"MaxwellJobTrigger" in stored_triggers and b"submitted_after" in stored_triggers
    assert list(tmp_path.rglob("*.log.trigger.*.log")), "the triggerer's log of the trigger was not among the files"


def stored_triggers(db: Path) -> bytes:
    with sqlite3.connect(db) as conn:
        return repr(conn.execute("SELECT classpath, kwargs FROM trigger").fetchall()).encode()


def run_through_standalone(cluster, tmp_path, spawned) -> tuple[list[str], bytes]:
    """Run the DAG once through `airflow standalone`: the task states seen, and the trigger table's
    rows as they were while the task was deferred."""
    home = tmp_path / "airflow"
    env = standalone_env(cluster, home, TEST_DAGS)
    log = open(tmp_path / "standalone.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    db = home / "airflow.db"
    try:
        deadline = time.monotonic() + 180
        while not dag_parsed(db, DAG_ID):
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the DAG was not parsed within 180 s"
            time.sleep(2)
        conf = json.dumps({"script": "#!/bin/bash\nsleep 12\necho through the triggerer\n"})
        for command in (["dags", "unpause", DAG_ID], ["dags", "trigger", DAG_ID, "-c", conf]):
            subprocess.run([AIRFLOW, *command], env=env, check=True, capture_output=True, timeout=120)
        seen: list[str] = []
        triggers = b""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            current = dict(states(db, DAG_ID)).get("job", "")
            if current and (not seen or seen[-1] != current):
                seen.append(current)
            if current == "deferred" and b"Maxwell" not in triggers:
                triggers = stored_triggers(db)
            if current in ("success", "failed", "upstream_failed"):
                break
            time.sleep(0.5)
        assert seen and seen[-1] == "success", (
            f"states seen: {seen}\n{(tmp_path / 'standalone.log').read_text()[-3000:]}"
        )
        return seen, triggers
    finally:
        stop_group(proc)
        log.close()
