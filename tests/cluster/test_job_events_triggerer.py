"""Asset watchers on ended Slurm jobs through Airflow's real scheduler and triggerer (airflow standalone):
jobs submitted outside Airflow by plain REST, some matching the watcher's name glob and some not, become
exactly one asset event each for the matching ones, each consumed by a run of the watching DAG, the
watcher's cursor kept in the asset's state store. Also measured: the delay from a job's end (accounting's
end time) to the creation of the DAG run it triggered."""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .airflow_cli import AIRFLOW, dag_parsed, standalone_env, stop_group
from .test_job_events import submit
from .test_secrets import leaks, secrets_of

DAG_ID = "maxwell_job_ended_test"
MATCHING = 4
OTHERS = 3
POLL = 2.0

DAG_FILE = """
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_maxwell.triggers.events import MaxwellJobEventTrigger

trigger = MaxwellJobEventTrigger(maxwell_conn_id="maxwell_s26", name="{tag}.beamtime-*", poll_interval={poll})
ended = Asset("maxwell_ended_{tag}", watchers=[AssetWatcher(name="ended_{tag}", trigger=trigger)])

with DAG(dag_id="{dag_id}", schedule=[ended], catchup=False, max_active_runs=16):

    @task
    def analyse(triggering_asset_events=None):
        jobs = [e.extra["payload"] for events in triggering_asset_events.values() for e in events]
        print("analysing", [(j["job_id"], j["state"], j["output"]) for j in jobs])
        return [j["job_id"] for j in jobs]

    analyse()
"""


def seconds(stamp: str) -> float:
    """Epoch seconds of a timestamp as SQLite holds Airflow's (naive UTC) or as the payload writes it."""
    moment = datetime.fromisoformat(str(stamp))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def rows(db: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query, args).fetchall()


def test_matching_jobs_become_one_asset_event_each_and_dag_runs(cluster, users, tmp_path, spawned, mint_slurm_token):
    if "s26" not in cluster["stacks"]:
        import pytest

        pytest.skip("the 26.05 stack is not up")
    stack = {"name": "s26", **cluster["stacks"]["s26"]}
    tag = f"ev{uuid.uuid4().hex[:8]}"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "job_ended_test.py").write_text(DAG_FILE.format(tag=tag, poll=POLL, dag_id=DAG_ID))
    home = tmp_path / "airflow"
    env = standalone_env(cluster, home, dags)
    log = open(tmp_path / "standalone.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    spawned.append(proc)
    db = home / "airflow.db"
    try:
        deadline = time.monotonic() + 180
        while not dag_parsed(db, DAG_ID):
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the DAG was not parsed within 180 s"
            time.sleep(2)
        subprocess.run([AIRFLOW, "dags", "unpause", DAG_ID], env=env, check=True, capture_output=True, timeout=120)
        deadline = time.monotonic() + 120
        while not rows(db, "SELECT 1 FROM trigger WHERE classpath LIKE '%MaxwellJobEventTrigger'"):
            assert time.monotonic() < deadline, "the watcher's trigger was not created within 120 s"
            time.sleep(1)
        time.sleep(3 * POLL)  # the triggerer has picked it up and read a first window

        user = users[0]["name"]
        token = mint_slurm_token(user)
        expected = set()
        for i in range(MATCHING):
            expected.add(
                submit(
                    stack, user, token, cluster["jobs_dir"], f"{tag}.beamtime-{i}", f"#!/bin/bash\nsleep {1 + i % 2}\n"
                )
            )
        for i in range(OTHERS):
            submit(stack, user, token, cluster["jobs_dir"], f"{tag}.calibration-{i}", "#!/bin/bash\nsleep 1\n")

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(rows(db, "SELECT 1 FROM asset_event")) < MATCHING:
            time.sleep(1)
        time.sleep(3 * POLL)  # rounds more: nothing else may fire, and the scheduler makes its runs
        events = rows(db, "SELECT timestamp, extra FROM asset_event")
        fired = sorted(json.loads(extra)["payload"]["job_id"] for _, extra in events)
        assert fired == sorted(expected), f"one asset event per matching job: {fired} vs {sorted(expected)}"
        # The watcher's kwargs (stored in plain text), its events and its cursor hold no credential.
        kept = rows(db, "SELECT kwargs FROM trigger") + rows(db, "SELECT value FROM asset_state_store")
        assert not leaks(repr(kept + events).encode(), secrets_of(cluster, users))
        stored = rows(db, "SELECT key FROM asset_state_store")
        assert [key for (key,) in stored if key.startswith("maxwell_job_events.")], "the cursor is in the store"

        # Airflow's part, reported rather than asserted: an event stored while the scheduler creates a
        # run (milliseconds apart) may wait for the next event to be consumed.
        runs = rows(
            db,
            "SELECT r.queued_at, e.extra FROM dag_run r JOIN dagrun_asset_event d ON d.dag_run_id = r.id "
            "JOIN asset_event e ON e.id = d.event_id WHERE r.dag_id = ?",
            DAG_ID,
        )
        assert runs, "the watching DAG ran"
        assert {json.loads(extra)["payload"]["job_id"] for _, extra in runs} <= expected
        to_event = [seconds(stamp) - seconds(json.loads(extra)["payload"]["end"]) for stamp, extra in events]
        to_run = [seconds(queued) - seconds(json.loads(extra)["payload"]["end"]) for queued, extra in runs]
        print(
            f"{len(events)} events, {len(rows(db, 'SELECT 1 FROM dag_run'))} DAG runs consuming {len(runs)}; "
            f"job end -> asset event: max {max(to_event):.1f} s; job end -> DAG run queued: median "
            f"{statistics.median(to_run):.1f} s, max {max(to_run):.1f} s (poll {POLL} s; ends in whole seconds)"
        )
    finally:
        stop_group(proc)
        log.close()
