"""The site's promises at length (`make site-test`, minutes; `make test` runs test_site.py's smoke): a
token folder shared by every host, and a worker killed while its tasks wait in it."""

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

pytestmark = pytest.mark.skipif(
    not os.environ.get("MAXWELL_SITE_FULL"), reason="minutes of site runs: `make site-test` runs them"
)
WORKERS = {"site-worker-1": "worker-1", "site-worker-2": "worker-2"}
PORT_BASE = 16950  # neither `make site`'s nor the smoke's


@pytest.fixture(scope="module")
def site(cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A site whose four hosts keep their token and version files in one folder, as on GPFS."""
    folder = tmp_path_factory.mktemp("site-full")
    site = Site(folder / "site", PORT_BASE)
    try:
        site.up(shared=folder / "shared-tokens")
        yield site
    finally:
        site.down()


@pytest.fixture(scope="module")
def maxwell(monkeypatch_module: pytest.MonkeyPatch) -> MaxwellHook:
    for name, value in connection_env().items():
        monkeypatch_module.setenv(name, value)
    return MaxwellHook("maxwell_default")


def run_to_end(site: Site, dag_id: str, run_id: str, timeout: float, watch=None) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while site.run_state(dag_id, run_id) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"{dag_id} did not end within {timeout:.0f} s"
        if watch:
            watch(site.task_instances(dag_id, run_id))
        time.sleep(1)
    return [ti for ti in site.task_instances(dag_id, run_id) if ti["task_id"] == "job"]


def jobs_per_task(maxwell: MaxwellHook, dag_id: str, run_id: str, since: float) -> tuple[Counter[str], list[int]]:
    jobs = [j for j in maxwell.find_jobs_by_name(f"{dag_id}.job", since=since) if run_id in (j.comment or "")]
    return Counter((j.comment or "").split(" ", 1)[0] for j in jobs), [j.job_id for j in jobs if not j.is_terminal]


def test_a_shared_folder_makes_one_token_and_one_probe_for_the_whole_site(site: Site, maxwell: MaxwellHook) -> None:
    site.wait_for_dag("maxwell_site_waits")
    run_id = site.trigger("maxwell_site_waits", {"tasks": 12, "seconds": 10})
    triggerers: dict[int, str] = {}

    def note(tis: list[dict[str, Any]]) -> None:
        triggerers.update({ti["triggerer_job"]["id"]: "site" for ti in tis if ti["triggerer_job"]})

    tis = run_to_end(site, "maxwell_site_waits", run_id, 240, note)
    assert {ti["state"] for ti in tis} == {"success"}, Counter(ti["state"] for ti in tis)
    hosts = {ti["hostname"] for ti in tis}
    assert hosts == set(WORKERS), f"the tasks ran on {hosts}: both hosts must take part"
    logs = {path: "site" for path in run_log_hosts(
        Path(site.settings["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]), "maxwell_site_waits", run_id, tis, triggerers
    )}  # fmt: skip
    logs |= {site.state / "logs" / f"triggerer-{n}.log": "site" for n in (1, 2)}
    use = token_use(logs)["site"]
    print(f"site-full: shared folder, 12 waits on 2 workers and 2 triggerers: {use}")
    assert use == {"tokens": 1, "probes": 1}, use


def test_a_worker_killed_mid_wait_leaves_its_jobs_to_the_retries_on_the_other(site: Site, maxwell: MaxwellHook) -> None:
    dag_id, tasks = "maxwell_site_worker_waits", 20
    site.wait_for_dag(dag_id)
    triggered = time.time()
    run_id = site.trigger(dag_id, {"tasks": tasks, "seconds": 60})
    deadline = time.monotonic() + 120
    while True:
        running = [
            ti for ti in site.task_instances(dag_id, run_id) if ti["task_id"] == "job" and ti["state"] == "running"
        ]
        submitted, _ = jobs_per_task(maxwell, dag_id, run_id, triggered - 5)
        if len(running) == tasks and len(submitted) == tasks:
            break
        assert time.monotonic() < deadline, f"{len(running)} running, {len(submitted)} submitted after 120 s"
        time.sleep(1)
    # kill -9 the host with the most waiting tasks: its worker, pool and task processes all at once
    host = Counter(ti["hostname"] for ti in running).most_common(1)[0][0]
    victims = {ti["map_index"] for ti in running if ti["hostname"] == host}
    family = tree_of(site.pids()[WORKERS[host]])
    for pid in family:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    tis = run_to_end(site, dag_id, run_id, 360)
    took = time.monotonic() - killed_at
    assert not alive(family)
    states = Counter(ti["state"] for ti in tis)
    assert states == {"success": tasks}, states
    retried = {ti["map_index"]: (ti["try_number"], ti["hostname"]) for ti in tis if ti["map_index"] in victims}
    survivor = next(h for h in WORKERS if h != host)
    assert all(t == (2, survivor) for t in retried.values()), f"the killed host's tasks: {retried}"
    per_task, left = jobs_per_task(maxwell, dag_id, run_id, triggered - 5)
    print(
        f"site-full: {host} killed with {len(victims)} of {tasks} tasks waiting in it; their retries on {survivor} "
        f"re-attached, run ended {took:.0f} s after the kill; jobs {sum(per_task.values())}"
    )
    assert sorted(per_task.values()) == [1] * tasks, f"jobs per task instance: {per_task}"
    assert not left, f"jobs left running: {left}"


def test_a_worker_killed_between_submit_and_saving_the_job_id_leaves_one_job(site: Site, maxwell: MaxwellHook) -> None:
    site.bring_back()  # both hosts again, after the test above killed one
    dag_id = "maxwell_site_kill_before_save"
    site.wait_for_dag(dag_id)
    triggered = time.time()
    run_id = site.trigger(dag_id, {})
    deadline = time.monotonic() + 120
    while True:
        submitted, _ = jobs_per_task(maxwell, dag_id, run_id, triggered - 5)
        tis = site.task_instances(dag_id, run_id)
        if submitted and tis[0]["state"] == "running" and tis[0]["hostname"]:
            break
        assert time.monotonic() < deadline, f"no job submitted within 120 s: {tis}"
        time.sleep(1)
    host = tis[0]["hostname"]
    time.sleep(2)  # well inside the operator's pause: submitted, not yet saved
    for pid in tree_of(site.pids()[WORKERS[host]]):
        os.kill(pid, signal.SIGKILL)
    (ti,) = run_to_end(site, dag_id, run_id, 240)
    per_task, left = jobs_per_task(maxwell, dag_id, run_id, triggered - 5)
    print(
        f"site-full: {host} killed before the job id was saved; try {ti['try_number']} on {ti['hostname']}: "
        f"{ti['state']}"
    )
    assert (ti["state"], ti["try_number"]) == ("success", 2), ti
    assert ti["hostname"] != host
    assert list(per_task.values()) == [1], f"jobs of the task instance: {per_task}"
    assert not left


def restart(site: Site, name: str, outage: float) -> None:
    """Stop one of the site's processes by its PID (as an admin's restart does), then start it
    again after `outage` seconds, and with it whatever fell over meanwhile."""
    pid = site.pids()[name]
    # PostgreSQL's SIGTERM waits for every client to leave; SIGINT is `pg_ctl restart -m fast`
    os.kill(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
    deadline = time.monotonic() + 60
    while alive({pid}):
        assert time.monotonic() < deadline, f"{name} (pid {pid}) still runs 60 s after SIGTERM"
        time.sleep(0.5)
    time.sleep(outage)
    site.bring_back()


def test_restarts_of_the_scheduler_database_broker_and_api_lose_no_wait_and_double_none(
    site: Site, maxwell: MaxwellHook
) -> None:
    site.bring_back()
    dag_id, tasks = "maxwell_site_waits", 20
    triggered = time.time()
    run_id = site.trigger(dag_id, {"tasks": tasks, "seconds": 100})
    deadline = time.monotonic() + 120
    while sum(ti["state"] == "deferred" for ti in site.task_instances(dag_id, run_id)) < tasks:
        assert time.monotonic() < deadline, "the waits were not all deferred within 120 s"
        time.sleep(1)
    done = []
    for name, outage in (("scheduler", 5), ("postgres", 5), ("redis", 5), ("api-server", 30)):
        began = time.monotonic()
        restart(site, name, outage)
        done.append(f"{name} {time.monotonic() - began:.0f} s")
    tis = run_to_end(site, dag_id, run_id, 300)
    per_task, left = jobs_per_task(maxwell, dag_id, run_id, triggered - 5)
    states = Counter(ti["state"] for ti in tis)
    print(f"site-full: {tasks} deferred waits through restarts ({', '.join(done)}): {dict(states)}, "
          f"jobs {sum(per_task.values())}")  # fmt: skip
    assert states == {"success": tasks}, states
    assert sorted(per_task.values()) == [1] * tasks, f"jobs per task instance: {per_task}"
    assert not left, f"jobs left running: {left}"


def test_a_task_marked_failed_through_the_api_cancels_its_job_on_the_workers_host(
    site: Site, maxwell: MaxwellHook
) -> None:
    site.bring_back()
    dag_id = "maxwell_site_worker_waits"
    triggered = time.time()
    run_id = site.trigger(dag_id, {"tasks": 1, "seconds": 300})
    deadline = time.monotonic() + 120
    while True:
        tis = [ti for ti in site.task_instances(dag_id, run_id) if ti["task_id"] == "job"]
        jobs = [
            j for j in maxwell.find_jobs_by_name(f"{dag_id}.job", since=triggered - 5) if run_id in (j.comment or "")
        ]
        if jobs and tis and tis[0]["state"] == "running":
            break
        assert time.monotonic() < deadline, f"no running task with a job within 120 s: {tis}"
        time.sleep(1)
    marked = time.monotonic()
    site.request("PATCH", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/job/0", json={"new_state": "failed"})
    while not (job := maxwell.get_job(jobs[0].job_id)).is_terminal:
        assert time.monotonic() - marked < 120, f"job {job.job_id} still {job.state_text} 120 s after the mark"
        time.sleep(1)
    print(f"site-full: task on {tis[0]['hostname']} marked failed; job {job.job_id} {job.state_text} "
          f"{time.monotonic() - marked:.0f} s later")  # fmt: skip
    assert "CANCELLED" in job.state_text, job.state_text
