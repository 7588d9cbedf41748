"""What a job used, measured by the real daemons: a job that holds ~300 MB for a few seconds and keeps a CPU
busy reports about that, on every Slurm release (the local Maxwell gathers with jobacct_gather/linux)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from airflow_provider_maxwell.efficiency import usage_line, usage_summary
from airflow_provider_maxwell.exceptions import MaxwellError
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from airflow_provider_maxwell.outcome import judge
from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
from airflow_provider_maxwell.watch import WatchSpec

# 300 MiB held by `tail` (it keeps input without a newline in memory) while the pipe stays open 6 s,
# then 4 s of busy loop: the sampler (every second) sees both.
HOLD_AND_SPIN = """#!/bin/bash
(head -c 300M /dev/zero; sleep 6) | tail > /dev/null
end=$((SECONDS + 4))
while [ $SECONDS -lt $end ]; do :; done
echo done
"""


def measures(stack: dict[str, Any]) -> bool:
    return "jobacct_gather/none" not in Path(stack["slurm_conf"]).read_text()


def submit_hold_and_spin(hook: MaxwellHook, cluster: dict[str, Any], name: str) -> int:
    """HOLD_AND_SPIN with 2 GiB and an hour asked for: far more than it uses, so both hints are due."""
    return hook.submit_job(
        HOLD_AND_SPIN,
        name=name,
        partition="maxcpu",
        time_limit=60,
        memory_per_node="2G",
        current_working_directory=cluster["jobs_dir"],
        standard_output=f"{cluster['jobs_dir']}/%x-%j.out",
    )


def test_a_job_holding_300_mb_and_spinning_reports_about_that(
    stack: dict[str, Any], cluster: dict[str, Any], users: list[dict[str, Any]], make_connection, signing_key_b64: str
):
    assert measures(stack), (
        f"stack {stack['name']} still runs jobacct_gather/none: restart the local Maxwell "
        "(make cluster-down cluster-up) so it picks up devcluster/slurm.conf.in's jobacct_gather/linux"
    )
    user = users[0]["name"]
    conn_id = make_connection(stack["rest_url"], user, auth_method="signing_key", signing_secret=signing_key_b64)
    hook = MaxwellHook(conn_id)
    submitted = time.time()
    job_id = submit_hold_and_spin(hook, cluster, f"usage-{stack['name']}")
    try:
        jobs = hook.wait_for_job(
            WatchSpec(job_id=job_id, user=user, submitted_after=submitted, poll_interval=2, deadline=time.time() + 180)
        )
    finally:
        with contextlib.suppress(MaxwellError):
            hook.cancel_job(job_id)  # a no-op once it ended; stops it when the wait failed
    usage = usage_summary(jobs)
    assert usage is not None, "accounting recorded no usage"
    print(usage_line(job_id, usage))
    assert jobs[0].is_success
    assert usage["measured"] is True
    assert 250 <= usage["memory_peak_mib"] <= 600, usage
    assert usage["memory_requested_mib"] == 2048
    assert 0.1 <= usage["memory_used"] <= 0.3
    assert usage["cpu_time_s"] >= 3, usage  # the 4 s busy loop (and head/tail's own work)
    assert usage["elapsed_s"] >= 9 and usage["time_limit_s"] == 3600  # 6 s held + 4 s spinning, whole seconds
    assert 0.2 <= usage["cpu_efficiency"] <= 1.0
    # Under 25 % of its memory and of its hour: both hints, with sizes that fit what it used.
    assert any("memory_per_node=" in hint for hint in usage["hints"]), usage["hints"]
    assert any("time_limit=5 (minutes)" in hint for hint in usage["hints"]), usage["hints"]


def test_a_deferred_wait_reports_the_figures_a_wait_in_the_worker_reports(
    stack: dict[str, Any], cluster: dict[str, Any], users: list[dict[str, Any]], make_connection, signing_key_b64: str
):
    # One job waited on both ways at once: the trigger (the shared poller sees the job end, often while
    # it is COMPLETING, before accounting has its steps' ends) and the worker's own polling. Each must
    # report what accounting measured, not "peak not measured".
    assert measures(stack), f"stack {stack['name']} runs jobacct_gather/none"
    user = users[0]["name"]
    conn_id = make_connection(stack["rest_url"], user, auth_method="signing_key", signing_secret=signing_key_b64)
    submitted = time.time()
    job_id = submit_hold_and_spin(MaxwellHook(conn_id), cluster, f"usage-deferred-{stack['name']}")
    spec = WatchSpec(job_id=job_id, user=user, submitted_after=submitted, poll_interval=1, deadline=time.time() + 180)

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        async def deferred() -> dict[str, Any]:
            async for event in MaxwellJobTrigger(maxwell_conn_id=conn_id, spec=spec.to_kwargs()).run():
                return event.payload
            raise AssertionError("no event")

        def in_the_worker() -> dict[str, Any]:
            return judge(job_id, MaxwellHook(conn_id).wait_for_job(spec)).summary

        return await asyncio.gather(deferred(), asyncio.to_thread(in_the_worker))

    try:
        event, worker_summary = asyncio.run(both())
    finally:
        with contextlib.suppress(MaxwellError):
            MaxwellHook(conn_id).cancel_job(job_id)  # a no-op once it ended; stops it when a wait failed
    assert event["status"] == "success", event
    deferred_usage, worker_usage = event["summary"]["usage"], worker_summary["usage"]
    print("deferred:", usage_line(job_id, deferred_usage))
    print("worker:  ", usage_line(job_id, worker_usage))
    assert deferred_usage["measured"] is True, deferred_usage
    assert 250 <= deferred_usage["memory_peak_mib"] <= 600, deferred_usage
    assert any("memory_per_node=" in hint for hint in deferred_usage["hints"]), deferred_usage
    assert deferred_usage == worker_usage
