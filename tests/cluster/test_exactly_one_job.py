"""Exactly one job per submit on the real daemons: a burst of concurrent submits while slurmctld rate-limits
RPCs loses none and doubles none, and a submission whose answer is lost after Slurm took it is found,
not sent again.

The CI run is small (3 processes x 20 threads on 26.05, about a minute with the rate limit's refill);
`make test-rate-limit` runs 200 submits (8 processes x 25 threads) on 24.11 and 26.05.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

from .forwarding_proxy import ForwardingProxy
from .slurm_jobs import cancel_named, job_ids_named, rate_limit_refusals, slurmctld_log_size

PROJECT = Path(__file__).resolve().parents[2]
PROCESSES = int(os.environ.get("RATE_LIMIT_BURST_PROCESSES", "3"))
THREADS = int(os.environ.get("RATE_LIMIT_BURST_THREADS", "20"))
STACKS = os.environ.get("RATE_LIMIT_STACKS", "s26").split(",")

# A task process: THREADS submits at once through the hook; prints what each got and what it noted.
BURST = """
import json, logging, sys, threading, time
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
conn_id, name, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
notes = []
class Notes(logging.Handler):
    def emit(self, record):
        notes.append(record.getMessage())
logging.getLogger().addHandler(Notes())
logging.getLogger().setLevel(logging.INFO)
results = [None] * threads
def submit(i):
    try:
        results[i] = MaxwellHook(conn_id).submit_job("#!/bin/bash\\ntrue\\n", name=name, time_limit=1)
    except Exception as error:
        results[i] = f"{type(error).__name__}: {error}"
began = time.monotonic()
workers = [threading.Thread(target=submit, args=(i,)) for i in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps({"results": results, "seconds": time.monotonic() - began,
                  "backoffs": sum("rate limit" in n for n in notes), "lost": sum("was lost" in n for n in notes)}))
"""


def settled_job_ids(stack: dict[str, Any], name: str, expected: int, wait: float = 60) -> set[int]:
    """Slurm's jobs of this name, asked until accounting has caught up with the queue (or `wait` passed)."""
    deadline = time.monotonic() + wait
    while True:
        found = job_ids_named(stack, name)
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(2)


@pytest.mark.rate_limited
@pytest.mark.parametrize("rate_limited_stack", STACKS, indirect=True)
def test_a_rate_limited_burst_of_submits_makes_exactly_one_job_each(
    rate_limited_stack, users, make_connection, emulator, cluster, spawned
):
    stack = rate_limited_stack
    user = users[1]
    conn_id = make_connection(
        stack["rest_url"], user["name"], emulator.portal_token(user), portal_url=cluster["portal_url"]
    )
    name = f"burst-{uuid.uuid4().hex[:10]}"
    log_offset = slurmctld_log_size(stack)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    began = time.monotonic()
    try:
        for _ in range(PROCESSES):
            spawned.append(
                subprocess.Popen(
                    [sys.executable, "-c", BURST, conn_id, name, str(THREADS)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        reports = []
        for proc in spawned:
            out, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
        seconds = time.monotonic() - began
        results = [r for report in reports for r in report["results"]]
        failed = [r for r in results if not isinstance(r, int)]
        submits = PROCESSES * THREADS
        assert not failed, f"{len(failed)} of {submits} submits failed: {failed[:3]}"
        assert len(set(results)) == submits, "two submits were answered with the same job id"
        in_slurm = settled_job_ids(stack, name, submits)
        duplicates, lost = in_slurm - set(results), set(results) - in_slurm
        assert not duplicates and not lost, f"jobs no submit returned: {sorted(duplicates)}; missing: {sorted(lost)}"
        refusals = rate_limit_refusals(stack, log_offset)
        assert refusals > 0, "slurmctld never told anyone to back off: the burst did not test the rate limit"
        print(
            f"\n{stack['name']}: {submits} submits ({PROCESSES} processes x {THREADS} threads) under rate limiting: "
            f"{len(in_slurm)} jobs, {seconds:.1f} s, slurmctld back-off answers {refusals}, client back-offs "
            f"{sum(r['backoffs'] for r in reports)}, lost answers recovered {sum(r['lost'] for r in reports)}"
        )
    finally:
        cancel_named(stack, name)


@pytest.mark.parametrize(("release", "lose_by"), [("s26", "reset"), ("s26", "502"), ("s24", "reset"), ("s22", "reset")])
def test_a_submission_whose_answer_is_lost_after_slurm_took_it_is_found_not_sent_again(
    release, lose_by, users, make_connection, emulator, cluster
):
    if release not in cluster["stacks"]:
        pytest.skip(f"Slurm stack {release} unavailable on this machine: {cluster['unavailable'].get(release)}")
    stack = {"name": release, **cluster["stacks"][release]}
    user = users[1]
    name = f"lost-{lose_by}-{uuid.uuid4().hex[:10]}"
    with ForwardingProxy(stack["rest_url"], lose=1, lose_by=lose_by) as proxy:
        conn_id = make_connection(
            proxy.url, user["name"], emulator.portal_token(user), portal_url=cluster["portal_url"]
        )
        try:
            job_id = MaxwellHook(conn_id).submit_job("#!/bin/bash\ntrue\n", name=name, time_limit=1)
            assert proxy.answers_dropped == 1  # the answer really was lost
            assert proxy.submissions_forwarded == 1, "the hook sent the submission again"
            assert settled_job_ids(stack, name, 1) == {job_id}
        finally:
            cancel_named(stack, name)
