"""Under faults, at length (issue 15): deferred waits through Airflow's real scheduler and triggerer
while slurmctld, slurmrestd, slurmdbd and the triggerer are stopped and brought back at random moments.
Every task must end with its job's true outcome, no task instance may have two jobs in Slurm, and no
job may be left running.

In `make test` a smoke: 6 jobs, 2 restarts. `make soak` runs ~200 jobs and a dozen restarts (about 15
minutes); MAXWELL_SOAK_JOBS, MAXWELL_SOAK_RESTARTS and MAXWELL_SOAK_SEED set the size and the draw.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

from ..conftest import PROJECT, STATE
from .airflow_cli import AIRFLOW, connection_env, dag_parsed, standalone_env, stop_group, triggerer_child_of
from .conftest import stop_pid

SOAK_DAGS = PROJECT / "tests" / "dags_soak"
DAG_ID = "maxwell_soak"
JOBS = int(os.environ.get("MAXWELL_SOAK_JOBS", "6"))
RESTARTS = int(os.environ.get("MAXWELL_SOAK_RESTARTS", "2"))
SEED = int(os.environ.get("MAXWELL_SOAK_SEED", str(int(time.time()))))
# The smoke's two come first: the triggerer (a new one takes the deferred tasks over from their stored
# kwargs) and slurmctld.
FAULTS = ("triggerer", "slurmctld", "slurmrestd", "slurmdbd")
CLUSTER = [sys.executable, str(PROJECT / "devcluster" / "cluster.py")]


def expected_state(index: int) -> str:
    """What tests/dags_soak/maxwell_soak.py's job `index` does: every fifth exits 3."""
    return "failed" if index % 5 == 4 else "success"


def task_states(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT map_index, COALESCE(state, '') FROM task_instance WHERE dag_id = ?", (DAG_ID,)
        ).fetchall()
    return dict(rows)


def run_id_of(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (DAG_ID,)).fetchone()[0]


def stop_daemon(name: str) -> None:
    pid, _, _ = (STATE / "pids" / f"{name}.pid").read_text().partition(" ")
    assert stop_pid(int(pid), timeout=30), f"{name} (pid {pid}) did not stop"


def test_every_wait_ends_with_its_jobs_true_outcome_through_restarts(cluster, tmp_path, spawned, monkeypatch):
    for name, value in connection_env().items():
        monkeypatch.setenv(name, value)
    draw = random.Random(SEED)
    # Faults spread over the time the jobs take (8 run at once, 5-24 s each, plus task start-up).
    span = 30 + JOBS * 15 / 8
    moments = sorted(draw.uniform(10, span) for _ in range(RESTARTS))
    faults = [FAULTS[i % len(FAULTS)] if i < 2 else draw.choice(FAULTS) for i in range(RESTARTS)]
    # The last job lasts past the last planned fault (each takes up to 10 s of outage and ~15 s to come
    # back), so every fault happens while a wait is in flight even when the other jobs end early (the
    # smoke's 6 jobs once all ended before its second fault). Under the jobs' 5-minute time limit.
    hold = min(int(moments[-1] + 25 * RESTARTS), 240) if moments else 0
    home = tmp_path / "airflow"
    env = {
        **standalone_env(cluster, home, SOAK_DAGS, parallelism=8),
        "MAXWELL_SOAK_JOBS": str(JOBS),
        "MAXWELL_SOAK_HOLD": str(hold),
    }
    log_path = tmp_path / "standalone.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    triggerer: subprocess.Popen | None = None  # ours once the first triggerer was replaced
    hook = MaxwellHook("maxwell_s26")
    done: list[str] = []
    began = time.monotonic()
    db = home / "airflow.db"
    try:
        deadline = time.monotonic() + 240
        while not dag_parsed(db, DAG_ID):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the soak DAG was not parsed within 240 s"
            time.sleep(2)
        for command in (["dags", "unpause", DAG_ID], ["dags", "trigger", DAG_ID]):
            subprocess.run([AIRFLOW, *command], env=env, check=True, capture_output=True, timeout=120)
        triggered = time.time()
        started = time.monotonic()
        deadline = started + 600 + JOBS * 10
        states: dict[int, str] = {}
        while time.monotonic() < deadline:
            states = task_states(db)
            if len(states) == JOBS and all(s in ("success", "failed", "upstream_failed") for s in states.values()):
                break
            # A fault counts while waits are in flight: it fires at its moment once a task is deferred.
            if moments and time.monotonic() - started >= moments[0] and "deferred" in states.values():
                moments.pop(0)
                fault = faults[len(done)]
                outage = draw.uniform(2, 10)
                if fault == "triggerer":
                    if triggerer is None:
                        stop_pid(triggerer_child_of(proc.pid), timeout=60)
                    else:
                        stop_group(triggerer)
                    time.sleep(outage)
                    triggerer = subprocess.Popen(
                        [AIRFLOW, "triggerer"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                    spawned.append(triggerer)
                else:
                    stop_daemon(f"s26-{fault}")
                    time.sleep(outage)
                    subprocess.run([*CLUSTER, "up"], check=True, capture_output=True, timeout=600)
                deferred = sum(state == "deferred" for state in states.values())
                done.append(f"{fault} at {time.monotonic() - started:.0f} s for {outage:.0f} s, {deferred} deferred")
            time.sleep(1)
        took = time.monotonic() - began
        run_id = run_id_of(db)
        jobs = hook.find_jobs_by_name(f"{DAG_ID}.job", since=triggered - 60)
        per_task = Counter((j.comment or "").split(" ", 1)[0] for j in jobs)
        live = [j.job_id for j in jobs if not j.is_terminal]
        wrong = {i: (states.get(i), expected_state(i)) for i in range(JOBS) if states.get(i) != expected_state(i)}
        twice = {tag: n for tag, n in per_task.items() if n > 1}
        missing = [i for i in range(JOBS) if per_task[f"airflow:{DAG_ID}/job/{run_id}/{i}"] != 1]
        print(
            f"soak: {JOBS} deferred waits, seed {SEED}, {len(done)} restarts ({'; '.join(done)}), {took:.0f} s; "
            f"outcomes {dict(Counter(states.values()))}; wrong {len(wrong)}, jobs submitted twice {len(twice)}, "
            f"task instances without exactly one job {len(missing)}, jobs left running {len(live)}"
        )
        assert len(done) == RESTARTS, f"only {len(done)} of {RESTARTS} restarts happened before the end: {done}"
        assert not wrong, f"tasks whose state is not their job's outcome (seen, expected): {wrong}"
        assert not twice and not missing, f"submitted twice: {twice}; without exactly one job: {missing}"
        assert not live, f"jobs left running: {live}"
    finally:
        if triggerer is not None:
            stop_group(triggerer)
        stop_group(proc)
        log.close()
        subprocess.run([*CLUSTER, "up"], check=False, capture_output=True, timeout=600)
        for job in hook.find_jobs_by_name(f"{DAG_ID}.job", since=time.time() - 3600):
            if not job.is_terminal:
                hook.cancel_job(job.job_id)
