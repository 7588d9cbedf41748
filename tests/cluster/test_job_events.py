"""The ended-job event trigger against the real slurmrestd and slurmdbd of each release: jobs submitted
outside Airflow (plain REST with the user's token, as `sbatch` would), some matching the watcher's name
glob and some not; the trigger, stopped half way and started again from its saved cursor, fires exactly
the matching ones, each once."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import aclosing, suppress
from typing import Any

import requests

from airflow_provider_maxwell.triggers.events import MaxwellJobEventTrigger
from tests.unit.triggers.test_job_event_trigger import Store

MATCHING = 4  # jobs named <tag>.beamtime-<i>; one of them exits 2 (FAILED)
OTHERS = 2  # jobs named <tag>.calibration-<i>
POLL = 1.0
WITHIN = 240  # seconds for the events: ~10 on an idle cluster; others' jobs may hold ours pending


def submit(stack: dict[str, Any], user: str, token: str, jobs_dir: str, name: str, script: str) -> int:
    """A job submitted by plain REST, in the body shape the stack's newest version takes."""
    version = stack["api_versions"][-1]
    job: dict[str, Any] = {"name": name, "current_working_directory": jobs_dir}
    if version == "v0.0.38":
        body: dict[str, Any] = {"job": {**job, "environment": {"PATH": "/usr/bin:/bin"}}, "script": script}
    else:
        body = {"job": {**job, "environment": ["PATH=/usr/bin:/bin"], "script": script}}
    headers = {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token}
    answer = requests.post(f"{stack['rest_url']}/slurm/{version}/job/submit", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200 and not answer.json()["errors"], answer.text
    return int(answer.json()["job_id"])


async def take(trigger: MaxwellJobEventTrigger, count: int, within: float, linger: float) -> list[dict[str, Any]]:
    """The trigger's events until `count` have come (or `within` seconds passed) and `linger` seconds more,
    then the trigger is closed, as a stopping triggerer closes it."""
    got: list[dict[str, Any]] = []

    async def run() -> None:
        async with aclosing(trigger.run()) as events:
            async for event in events:
                got.append(event.payload)
                if len(got) == count:
                    break
            if linger:  # an event more would be one too many: the assertions see it
                got.append((await asyncio.wait_for(anext(events), linger)).payload)

    # A timeout: no further event within `linger`, or fewer than `count` within `within` (the assertions say).
    with suppress(asyncio.TimeoutError):
        await asyncio.wait_for(run(), within + linger)
    return got


def test_jobs_submitted_outside_airflow_fire_once_each_across_a_restart(
    stack, cluster, users, make_connection, signing_key_b64, mint_slurm_token
):
    user = users[0]["name"]
    conn_id = make_connection(stack["rest_url"], user, auth_method="signing_key", signing_secret=signing_key_b64)
    tag = f"ev{uuid.uuid4().hex[:8]}"  # other tests and helpers submit jobs too: only this run's match
    store = Store()

    def watcher() -> MaxwellJobEventTrigger:
        trigger = MaxwellJobEventTrigger(maxwell_conn_id=conn_id, name=f"{tag}.beamtime-*", poll_interval=POLL)
        trigger.asset_state_store = store
        return trigger

    first = watcher()

    async def first_half() -> tuple[dict[int, tuple[str, int]], list[dict[str, Any]]]:
        token = mint_slurm_token(user)
        watching = asyncio.create_task(take(first, MATCHING // 2, within=WITHIN, linger=0))
        await asyncio.sleep(0.5)  # the watcher starts before the jobs: none of them is history
        expected: dict[int, tuple[str, int]] = {}
        for i in range(MATCHING):
            code = 2 if i == 1 else 0
            script = f"#!/bin/bash\nsleep {1 + i}\nexit {code}\n"
            job_id = submit(stack, user, token, cluster["jobs_dir"], f"{tag}.beamtime-{i}", script)
            expected[job_id] = ("FAILED" if code else "COMPLETED", code)
        for i in range(OTHERS):
            submit(stack, user, token, cluster["jobs_dir"], f"{tag}.calibration-{i}", "#!/bin/bash\nsleep 1\n")
        return expected, await watching

    began = time.monotonic()
    expected, first_events = asyncio.run(first_half())
    assert len(first_events) == MATCHING // 2, first_events
    # The first triggerer is gone; another starts with a fresh instance and the asset's saved cursor.
    rest = MATCHING - len(first_events)
    second_events = asyncio.run(take(watcher(), rest, within=WITHIN, linger=3 * POLL))
    took = time.monotonic() - began

    fired = [e["job_id"] for e in first_events + second_events]
    assert sorted(fired) == sorted(expected), f"each matching job exactly once, no other: {fired} vs {expected}"
    old_accounting = stack["name"] == "s22"  # 22.05's accounting loses non-zero exit codes and output paths
    for event in first_events + second_events:
        state, code = expected[event["job_id"]]
        assert (event["state"], event["exit_code"]) == (state, None if old_accounting and code else code), event
        assert event["name"].startswith(f"{tag}.beamtime-") and event["user"] == user
        assert event["end"] and (old_accounting or event["output"].startswith(cluster["jobs_dir"])), event
    print(f"{stack['name']}: {len(fired)} events in {took:.1f} s, {len(first_events)} before the restart")
