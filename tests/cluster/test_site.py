"""Airflow as a site runs it (devcluster/site.py): PostgreSQL, Redis, Celery workers and triggerers on
hosts of their own. The smoke (in `make test`): the site comes up, a run of deferred Maxwell jobs goes
through both hosts' workers and a triggerer, one triggerer is killed mid-wait and the other takes its
waits over, each task instance has exactly one job, and `site.py down` leaves no process behind."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

from .airflow_cli import alive, connection_env, tree_of
from .site_api import Site, run_log_hosts, token_use

DAG_ID = "maxwell_site_waits"
WORKERS = {"site-worker-1", "site-worker-2"}
TRIGGERERS = {"site-triggerer-1": "triggerer-1", "site-triggerer-2": "triggerer-2"}
PORT_BASE = 16930  # not `make site`'s: the tests' site runs beside a user's


@pytest.fixture(scope="module")
def site(cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A site of the tests' own (its data folders in a temporary folder), up for the module."""
    site = Site(tmp_path_factory.mktemp("site") / "site", PORT_BASE)
    began = time.monotonic()
    try:
        site.up()
        print(f"site: up in {time.monotonic() - began:.0f} s (fresh PostgreSQL, migrated)")
        yield site
    finally:
        site.command("down")


@pytest.fixture(scope="module")
def maxwell(monkeypatch_module: pytest.MonkeyPatch) -> MaxwellHook:
    """A hook on the connection the site's DAGs use, in this test process (to count the jobs)."""
    for name, value in connection_env().items():
        monkeypatch_module.setenv(name, value)
    return MaxwellHook("maxwell_default")


def test_deferred_jobs_run_through_both_hosts_and_survive_a_triggerer_killed(site: Site, maxwell: MaxwellHook) -> None:
    site.wait_for_dag(DAG_ID)
    triggered = time.time()
    run_id = site.trigger(DAG_ID, {"tasks": 6, "seconds": 25})
    held: dict[int, set[str]] = {}  # map index -> triggerer hosts seen holding its wait
    ran_on: dict[int, str] = {}
    killed = ""
    triggerers: dict[int, str] = {}  # triggerer job id -> its host
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and site.run_state(DAG_ID, run_id) not in ("success", "failed"):
        jobs = [ti for ti in site.task_instances(DAG_ID, run_id) if ti["task_id"] == "job"]
        for ti in jobs:
            if ti["hostname"]:
                ran_on[ti["map_index"]] = ti["hostname"]
            if ti["triggerer_job"]:
                triggerers[ti["triggerer_job"]["id"]] = ti["triggerer_job"]["hostname"]
            if ti["state"] == "deferred" and ti["triggerer_job"]:
                held.setdefault(ti["map_index"], set()).add(ti["triggerer_job"]["hostname"])
        deferred = [ti for ti in jobs if ti["state"] == "deferred" and ti["triggerer_job"]]
        if not killed and len(jobs) == 6 and len(deferred) == 6:
            # kill -9 the triggerer holding the most waits, as a host dies
            killed = Counter(ti["triggerer_job"]["hostname"] for ti in deferred).most_common(1)[0][0]
            os.kill(site.pids()[TRIGGERERS[killed]], signal.SIGKILL)
        time.sleep(1)
    tis = site.task_instances(DAG_ID, run_id)
    final = {ti["map_index"]: ti["state"] for ti in tis if ti["task_id"] == "job"}
    assert final == dict.fromkeys(range(6), "success"), f"task states: {final}"
    assert killed, f"the waits were never all deferred at once; held: {held}"
    assert set(ran_on.values()) <= WORKERS, f"tasks ran on {ran_on}"
    survivor = next(host for host in TRIGGERERS if host != killed)
    taken_over = [index for index, hosts in held.items() if hosts == {killed, survivor}]
    assert taken_over, f"no wait was seen moving from {killed} to {survivor}: {held}"
    # Exactly one Slurm job per task instance (by the tag in its comment), none left running.
    jobs = maxwell.find_jobs_by_name(f"{DAG_ID}.job", since=triggered - 5)
    per_task = Counter((job.comment or "").split(" ", 1)[0] for job in jobs if run_id in (job.comment or ""))
    assert sorted(per_task.values()) == [1] * 6, f"jobs per task instance: {per_task}"
    assert all(job.is_terminal for job in jobs), [job.job_id for job in jobs if not job.is_terminal]
    # One token and one version probe per host, whichever of its processes came first: each triggerer's,
    # and the two workers' together (a deferred task resumes on either, so its log holds both hosts' lines).
    logs = run_log_hosts(Path(site.settings["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]), DAG_ID, run_id, tis, triggerers)
    logs |= {site.state / "logs" / f"{name}.log": host for host, name in TRIGGERERS.items()}
    use = token_use(logs)
    limits = {"workers": len(WORKERS), **dict.fromkeys(TRIGGERERS, 1)}
    assert all(n["tokens"] <= limits[who] and n["probes"] <= limits[who] for who, n in use.items()), use
    print(f"site: per host {use}")
    print(
        f"site: 6 waits, {killed} killed, {len(taken_over)} taken over by {survivor}; ran on {Counter(ran_on.values())}"
    )


def test_down_leaves_no_process(site: Site) -> None:
    pids = site.pids()
    core = {"postgres", "redis", "api-server", "scheduler", "dag-processor", "worker-1", "worker-2"}
    assert core <= set(pids), f"site.py pids: {pids}"
    everything = set().union(*(tree_of(pid) for pid in pids.values()))
    began = time.monotonic()
    site.down()
    print(f"site: down in {time.monotonic() - began:.0f} s, {len(everything)} processes")
    assert not alive(everything), f"left running: {sorted(alive(everything))}"
    assert site.pids() == {}
