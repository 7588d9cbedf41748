"""Asset watchers on ended Slurm jobs through Airflow's real scheduler and triggerer (airflow standalone):
jobs submitted outside Airflow by plain REST, some matching the watcher's name glob and some not, become
exactly one asset event each for the matching ones, also those that ended while Airflow was stopped (the
watcher's cursor kept in the asset's state store), consumed by runs of the watching DAG. Also measured:
the delay from a job's end (accounting's end time) to its asset event and to the DAG run it triggered."""

from __future__ import annotations

import json
import os
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
# Airflow stopped and started again while jobs end (about 75 s more): `make test-events`; `make test` runs without.
RESTART = os.environ.get("MAXWELL_EVENTS_RESTART") == "1"

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


def start_standalone(env: dict[str, str], log_path: Path, spawned: list[subprocess.Popen]) -> subprocess.Popen:
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()  # the child holds its own descriptor
    spawned.append(proc)
    return proc


def wait_for_events(db: Path, count: int, within: float) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and len(rows(db, "SELECT 1 FROM asset_event")) < count:
        time.sleep(1)
    time.sleep(3 * POLL)  # rounds more: nothing else may fire, and the scheduler makes its runs
    return rows(db, "SELECT timestamp, extra FROM asset_event")


def job_ids(events: list[tuple[Any, ...]]) -> list[int]:
    return sorted(json.loads(extra)["payload"]["job_id"] for _, extra in events)


def test_matching_jobs_become_one_asset_event_each_also_those_ending_while_no_triggerer_runs(
    cluster, users, tmp_path, spawned, mint_slurm_token
):
    if "s26" not in cluster["stacks"]:
        import pytest

        pytest.skip("the 26.05 stack is not up")
    stack = {"name": "s26", **cluster["stacks"]["s26"]}
    user = users[0]["name"]
    tag = f"ev{uuid.uuid4().hex[:8]}"

    def submit_jobs(first: int, matching: int, others: int) -> set[int]:
        token = mint_slurm_token(user)
        ids = set()
        for i in range(first, first + matching):
            script = f"#!/bin/bash\nsleep {1 + i % 2}\n"
            ids.add(submit(stack, user, token, cluster["jobs_dir"], f"{tag}.beamtime-{i}", script))
        for i in range(first, first + others):
            submit(stack, user, token, cluster["jobs_dir"], f"{tag}.calibration-{i}", "#!/bin/bash\nsleep 1\n")
        return ids

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "job_ended_test.py").write_text(DAG_FILE.format(tag=tag, poll=POLL, dag_id=DAG_ID))
    home = tmp_path / "airflow"
    env = standalone_env(cluster, home, dags)
    log_path = tmp_path / "standalone.log"
    proc = start_standalone(env, log_path, spawned)
    db = home / "airflow.db"
    try:
        deadline = time.monotonic() + 180
        while not dag_parsed(db, DAG_ID):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the DAG was not parsed within 180 s"
            time.sleep(2)
        subprocess.run([AIRFLOW, "dags", "unpause", DAG_ID], env=env, check=True, capture_output=True, timeout=120)
        # The watcher has read its first window once its cursor is stored: jobs ending from now on are
        # not history to it (a first start replays none).
        deadline = time.monotonic() + 120
        while not rows(db, "SELECT 1 FROM asset_state_store WHERE key LIKE 'maxwell_job_events.%'"):
            assert time.monotonic() < deadline, "the watcher stored no cursor within 120 s"
            time.sleep(1)

        expected = submit_jobs(0, MATCHING, OTHERS)
        events = wait_for_events(db, MATCHING, within=300)  # a queue busy with others' jobs delays them
        assert job_ids(events) == sorted(expected), f"one asset event per matching job: {job_ids(events)}"
        cursor = rows(db, "SELECT value FROM asset_state_store WHERE key LIKE 'maxwell_job_events.%'")
        assert set(json.loads(cursor[0][0])["fired"]) <= {str(i) for i in expected}, "only fired ids are in the cursor"
        report_delays(db, events, expected)

        if RESTART:
            # No triggerer runs while two more matching jobs (and one other) end; a new one carries on from
            # the asset's stored cursor: those two fire, none of the earlier ones again.
            stop_group(proc)
            later = submit_jobs(MATCHING, 2, 1)
            time.sleep(8)  # they have ended (on an idle cluster) before Airflow is back
            proc = start_standalone(env, log_path, spawned)
            events = wait_for_events(db, MATCHING + 2, within=300)
            assert job_ids(events) == sorted(expected | later), f"each once, across the restart: {job_ids(events)}"

        # The watcher's kwargs (stored in plain text), its events and its cursor hold no credential.
        kept = rows(db, "SELECT kwargs FROM trigger") + rows(db, "SELECT value FROM asset_state_store")
        assert not leaks(repr(kept + events).encode(), secrets_of(cluster, users))
    finally:
        if proc.poll() is None:
            stop_group(proc)


def report_delays(db: Path, events: list[tuple[Any, ...]], expected: set[int]) -> None:
    """Airflow's part, reported rather than asserted: it may gather events in one run, and (SQLite,
    MySQL) an event stored while the scheduler creates a run may wait for the next event to be consumed."""
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
