"""What the shared poller's rounds cost on the real slurmrestd, slurmctld and slurmdbd (24.11, 26.05):
a handful of waits plus one declared a day earlier (a sensor's case). Per round: slurmctld's jobs/state
for the waited ids, accounting by id only for jobs that changed or ended; never a listing of the user's
history or of the cluster's queue. The jobs' final states and exit codes come out right. s24 carries
Maxwell's background while this module runs (`devcluster/cluster.py load s24`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.client.drivers import SlurmClient
from airflow_provider_maxwell.effects import HttpCall
from airflow_provider_maxwell.exceptions import MaxwellError
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from airflow_provider_maxwell.poll_round import DETAIL_READS, REASON_LOOKS
from airflow_provider_maxwell.slurm import dialects
from airflow_provider_maxwell.slurm.dialects import Route, Service
from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
from airflow_provider_maxwell.triggers.poller import JobPoller
from airflow_provider_maxwell.watch import WatchSpec

POLL = 2.0
EXITS = (0, 1, 2, 0, 3)  # five fresh waits; a sixth is declared a day old
RECORD_BUDGET = 8_000  # bytes: one accounting record without steps is ~2-5 KB; a jobs/state entry ~230 B
PROGRESS_RECORD = 16_000  # bytes: one job's slurmctld record (~8-12 KB on 24.11 and 26.05)
JOB_RECORD = re.compile(r"/slurm/v0\.0\.\d+/job/\d+$")  # one job's slurmctld record: read for a progress line
CLUSTER_PY = [sys.executable, str(Path(__file__).resolve().parents[2] / "devcluster" / "cluster.py")]

pytestmark = pytest.mark.usefixtures("busy_s24")


@pytest.fixture(scope="module")
def busy_s24(
    cluster: dict[str, Any], users: list[dict[str, Any]], signing_key_b64: str, monkeypatch_module: pytest.MonkeyPatch
) -> Iterator[None]:
    """s24 with a busy Maxwell's background (issue 14): 10,000 finished records of the user over 3 days
    and 2,000 queued jobs of another user, removed afterwards. `load` copies a completed job of the
    user, so one runs first."""
    user = users[0]["name"]
    conn = {
        "conn_type": "maxwell",
        "host": cluster["stacks"]["s24"]["rest_url"],
        "login": user,
        "extra": {"auth_method": "signing_key", "signing_secret": signing_key_b64},
    }
    monkeypatch_module.setenv("AIRFLOW_CONN_MAXWELL_BUSY_S24", json.dumps(conn))
    hook = MaxwellHook("maxwell_busy_s24")
    began = time.time()
    job_id = hook.submit_job(
        "#!/bin/bash\ntrue\n",
        name="busy-template",
        partition="maxcpu",
        time_limit=1,
        current_working_directory=cluster["jobs_dir"],
    )
    hook.wait_for_job(WatchSpec(job_id, user, submitted_after=began, poll_interval=1.0, deadline=began + 120))
    subprocess.run([*CLUSTER_PY, "load", "s24"], check=True, capture_output=True, timeout=300)
    try:
        yield
    finally:
        subprocess.run([*CLUSTER_PY, "unload", "s24"], check=True, capture_output=True, timeout=300)


@pytest.mark.parametrize("stack", ["s24", "s26"], indirect=True)
def test_poll_rounds_cost_the_waited_jobs_not_the_users_history(stack, cluster, users, signed_conn_id):
    user, conn_id = users[0]["name"], signed_conn_id
    hook = MaxwellHook(conn_id)
    client = hook.client
    dialect = client.run(client.ops.dialect())
    # What the old round asked each interval once a wait was a day old: the user's day of records.
    before = client.state.bytes_received
    history = client.run(
        client.ops._call(
            "GET",
            Route(Service.SLURMDB, f"/slurmdb/{dialect.version}/jobs", dialect.version),
            params={"users": user, "start_time": str(int(time.time() - 86400)), "skip_steps": "true"},
        )
    )
    history_bytes = client.state.bytes_received - before
    history_records = len((history.document or {}).get("jobs", []))
    now = time.time()
    specs: dict[int, tuple[int, float]] = {}
    try:
        for i, (job_id, code) in enumerate(submit_exiting(hook, cluster["jobs_dir"], "poll-cost", (*EXITS, 0), 8)):
            specs[job_id] = (code, now - 86400 if i == len(EXITS) else now)
        events, rounds = asyncio.run(_wait(conn_id, user, specs))
    finally:
        for job_id in specs:
            with contextlib.suppress(MaxwellError):  # the cancel is a safety net: most have ended
                hook.cancel_job(job_id)
    for event in events:
        code = specs[event["job_id"]][0]
        assert event["status"] == ("success" if code == 0 else "failed"), event
        assert event["summary"]["exit_code"] == code, event
    calls = [call for round_ in rounds for call in round_["calls"]]
    assert not [c for c in calls if "start_time" in (c.params or {})], "a round asked a time window"
    assert not [c for c in calls if c.url.endswith(("/jobs", "/jobs/")) and "/slurm/" in c.url], "the whole queue"
    waited = len(specs)
    steady = rounds[2:-1] or rounds  # after accounting caught up with the submissions
    per_round = [len(r["calls"]) - len(progress_reads(r["calls"])) for r in steady]
    bytes_ = [r["bytes"] - r["progress_bytes"] for r in rounds]  # the progress reads are bounded apart
    progress_bytes = [r["progress_bytes"] for r in rounds]
    report = (
        f"{stack['name']}: {len(rounds)} rounds, requests/round {per_round}, bytes/round {bytes_} "
        f"(+ progress reads {progress_bytes}), "
        f"server ms/round {[round(r['seconds'] * 1000) for r in rounds]}; "
        f"the old round's listing: {history_records} records, {history_bytes} B"
    )
    print(report)
    if stack["name"] == "s24":  # the background is there: a day of it is ~3,300 records, ~16 MB
        assert history_records >= 3_000, report
    assert statistics.median(per_round) <= 2, report
    assert max(bytes_) <= waited * RECORD_BUDGET, report
    # A started or newly pending job's own record, for the pending reason and the node in its progress
    # line: a bounded number a round, a few per job in all.
    assert all(len(progress_reads(r["calls"])) <= DETAIL_READS for r in rounds), report
    assert len(progress_reads(calls)) <= waited * (2 + REASON_LOOKS), report
    assert sum(progress_bytes) <= len(progress_reads(calls)) * PROGRESS_RECORD, report
    quiet = [r for r in steady if all("/slurmdb/" not in c.url for c in r["calls"]) and not progress_reads(r["calls"])]
    assert quiet, f"no round asked slurmctld alone while the jobs ran: {report}"
    assert all(r["bytes"] <= waited * 1_000 for r in quiet), report  # jobs/state: ~230 B per job
    # Accounting once per ended job (and again only while it lags behind slurmctld's end).
    accounting = [c for c in calls if "/slurmdb/" in c.url]
    assert len(accounting) <= waited + 3, report


@pytest.mark.parametrize("stack", ["s24", "s26"], indirect=True)
def test_an_array_wait_reads_accounting_once_its_tasks_have_ended_not_every_round(
    stack, cluster, users, signed_conn_id
):
    # Four tasks ending 6-12 s after they start, task 2 with exit code 3. Before, each round read every
    # task's accounting record (~4.4 KB each): an array of 1,000 tasks cost ~4.4 MB per interval.
    user, conn_id = users[0]["name"], signed_conn_id
    hook = MaxwellHook(conn_id)
    array_id = hook.submit_job(
        '#!/bin/bash\nsleep $((6 + 2 * SLURM_ARRAY_TASK_ID))\n[ "$SLURM_ARRAY_TASK_ID" = 2 ] && exit 3\nexit 0\n',
        name="poll-cost-array",
        partition="maxcpu",
        array="0-3",
        time_limit=5,
        current_working_directory=cluster["jobs_dir"],
    )
    try:
        (event,), rounds = asyncio.run(_wait(conn_id, user, {array_id: (3, time.time())}, expected_tasks=4))
    finally:
        with contextlib.suppress(MaxwellError):
            hook.cancel_job(array_id)
    assert event["status"] == "failed", event
    assert event["summary"]["array_tasks"] == 4, event
    assert event["summary"]["failed_tasks"] == [{"index": 2, "state": "FAILED", "exit_code": 3}], event
    report = f"{stack['name']}: " + "; ".join(
        f"{[c.url.split('/v0.0.')[0].rsplit('/', 1)[-1] for c in r['calls']]} {r['bytes']} B" for r in rounds
    )
    print(report)
    calls = [call for round_ in rounds for call in round_["calls"]]
    assert all(c.params and c.params.get("job_id") == [str(array_id)] for c in calls if "/jobs/state" in c.url)
    # Accounting when the round before the end saw all tasks gone or ended, and again only while it lags.
    with_accounting = [r for r in rounds if any("/slurmdb/" in c.url for c in r["calls"])]
    assert len(rounds) >= 5 and len(with_accounting) <= 3, report
    assert with_accounting and with_accounting[-1] is rounds[-1], report


@pytest.mark.parametrize("stack", ["s24", "s26"], indirect=True)
def test_waits_taking_turns_get_their_ends_from_accounting_windows(stack, cluster, users, signed_conn_id, monkeypatch):
    # N = 10,000 in miniature: a query of 60 characters names two ids, so six waits take turns on
    # jobs/state and their ends come from the window of the user's jobs that ended (one request).
    monkeypatch.setattr(dialects, "ID_QUERY_CHARS", 60)
    user, conn_id = users[0]["name"], signed_conn_id
    hook = MaxwellHook(conn_id)
    now = time.time()
    specs: dict[int, tuple[int, float]] = {}
    try:
        for job_id, code in submit_exiting(hook, cluster["jobs_dir"], "poll-turns", (*EXITS, 4), 6):
            specs[job_id] = (code, now)
        events, rounds = asyncio.run(_wait(conn_id, user, specs))
    finally:
        for job_id in specs:
            with contextlib.suppress(MaxwellError):
                hook.cancel_job(job_id)
    for event in events:
        code = specs[event["job_id"]][0]
        assert event["status"] == ("success" if code == 0 else "failed"), event
        assert event["summary"]["exit_code"] == code, event
    report = f"{stack['name']}: " + "; ".join(
        f"{[c.url.rsplit('/', 1)[-1] + ('(window)' if 'state' in (c.params or {}) else '') for c in r['calls']]}"
        for r in rounds
    )
    print(report)
    calls = [call for round_ in rounds for call in round_["calls"]]
    windows = [c for c in calls if "state" in (c.params or {})]
    assert windows, report
    for window in windows:  # a window reaches back seconds, never over the user's history
        assert float(window.params["start_time"]) >= now - 120, window.params
    assert max(len(r["calls"]) - len(progress_reads(r["calls"])) for r in rounds[1:]) <= 3, report


def submit_exiting(
    hook: MaxwellHook, jobs_dir: str, name: str, codes: tuple[int, ...], seconds: int
) -> Iterator[tuple[int, int]]:
    """Submit job i to sleep `seconds + 2 * i` and exit with codes[i]; each id is yielded before the next
    submission, so a caller's cleanup knows every job even when a later submission fails."""
    for i, code in enumerate(codes):
        job_id = hook.submit_job(
            f"#!/bin/bash\nsleep {seconds + 2 * i}\nexit {code}\n",
            name=f"{name}-{i}",
            partition="maxcpu",
            time_limit=5,
            current_working_directory=jobs_dir,
        )
        yield job_id, code


async def _wait(
    conn_id: str, user: str, specs: dict[int, tuple[int, float]], expected_tasks: int = 1
) -> tuple[list[dict[str, Any]], list]:
    client: SlurmClient = await MaxwellHook(conn_id).aclient()
    poller = JobPoller.for_client(client)
    rounds: list[dict[str, Any]] = []
    send, round_ = client._asend, poller._round

    async def counted_send(call: HttpCall) -> Any:
        rounds[-1]["calls"].append(call)
        answer = await send(call)
        if progress_reads([call]):
            rounds[-1]["progress_bytes"] += len(getattr(answer, "body", b"") or b"")
        return answer

    async def counted_round(subscribers: Any) -> None:
        before = (client.state.bytes_received, client.state.server_seconds)
        rounds.append({"calls": [], "progress_bytes": 0})
        try:
            await round_(subscribers)
        finally:
            rounds[-1]["bytes"] = client.state.bytes_received - before[0]
            rounds[-1]["seconds"] = client.state.server_seconds - before[1]

    client._asend = counted_send  # type: ignore[method-assign]
    poller._round = counted_round  # type: ignore[method-assign]
    triggers = [
        MaxwellJobTrigger(
            maxwell_conn_id=conn_id,
            spec=WatchSpec(
                job_id, user, submitted_after=after, poll_interval=POLL, expected_tasks=expected_tasks
            ).to_kwargs(),
        )
        for job_id, (_, after) in specs.items()
    ]

    async def first(t: MaxwellJobTrigger) -> dict[str, Any]:
        async for event in t.run():
            return event.payload
        raise AssertionError("no event")

    events = await asyncio.wait_for(asyncio.gather(*(first(t) for t in triggers)), timeout=240)
    return events, rounds


def progress_reads(calls: list[HttpCall]) -> list[HttpCall]:
    """The reads of one job's slurmctld record a round made for progress lines (jobs/state names no reason or node)."""
    return [c for c in calls if JOB_RECORD.search(c.url.split("?")[0])]
