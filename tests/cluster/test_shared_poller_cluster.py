"""Triggers of one connection share one poller, against the real slurmrestd + slurmdbd of every release
(24.11 and 26.05 list by user and time window, 22.05 by job ids)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from airflow_provider_maxwell.poll_round import REASON_LOOKS
from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
from airflow_provider_maxwell.triggers.poller import JobPoller
from airflow_provider_maxwell.watch import WatchSpec

JOBS = 12
POLL = 2.0


def test_many_triggers_one_poller_right_outcomes_few_requests(stack, cluster, users, make_connection, signing_key_b64):
    user = users[0]["name"]
    conn_id = make_connection(stack["rest_url"], user, auth_method="signing_key", signing_secret=signing_key_b64)
    hook = MaxwellHook(conn_id)
    submitted_after = time.time()
    exits = {}
    for i in range(JOBS):
        job_id = hook.submit_job(
            f"#!/bin/bash\nsleep {10 + i % 4}\nexit {i % 3}\n",
            name=f"shared-poller-{i}",
            partition="maxcpu",
            time_limit=5,
            current_working_directory=cluster["jobs_dir"],
        )
        exits[job_id] = i % 3
    sent_before = hook.state.requests_sent

    async def wait_all() -> tuple[list[dict[str, Any]], int]:
        poller = JobPoller.for_client(await MaxwellHook(conn_id).aclient())
        triggers = [
            MaxwellJobTrigger(
                maxwell_conn_id=conn_id,
                spec=WatchSpec(job_id, user, submitted_after=submitted_after, poll_interval=POLL).to_kwargs(),
            )
            for job_id in exits
        ]

        async def first(t: MaxwellJobTrigger) -> dict[str, Any]:
            async for event in t.run():
                return event.payload
            raise AssertionError("no event")

        events = await asyncio.wait_for(asyncio.gather(*(first(t) for t in triggers)), timeout=240)
        assert poller._task is None and not JobPoller._pollers[asyncio.get_running_loop()]
        return events, poller.rounds

    events, rounds = asyncio.run(wait_all())
    for event in events:
        expected = exits[event["job_id"]]
        assert event["status"] == ("success" if expected == 0 else "failed"), event
        if expected:
            assert f"exit code {expected}" in event["message"], event
    sent = hook.state.requests_sent - sent_before
    # Jobs of 10 to 13 s, so that the rounds, not each job's few reads of its own, make the cost.
    # Polling each job on its own would send at least JOBS requests per round; the shared poller one
    # listing per round plus a bounded number of one-by-one lookups (accounting lag right after
    # submission; 22.05's lost exit codes; each ended job's own record once, for its usage; a started
    # or newly pending job's own record, for its progress line), each job at most a few times.
    assert rounds >= 2
    assert sent <= rounds + (6 + REASON_LOOKS) * JOBS, f"{sent} requests in {rounds} rounds"
    assert sent < JOBS * rounds / 2, f"{sent} requests in {rounds} rounds: no better than per-job polling"
