"""What one Airflow task process costs the cluster: N fresh processes (as N tasks of a fan-out start on
one worker host), each submits one job and reads it once, as a task does before it defers.

Through a counting proxy in front of slurmrestd (Slurm 26.05, portal auth): requests and response
bytes per process; at the portal emulator: token mints; with the connection's `shared_cache` on
(the default) and off. Figures, not asserts. `make bench-tasks` (BENCH_TASKS_ARGS="-n 20 --at-once 5").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from local_maxwell import PROJECT, cluster_info, portal_token, users

sys.path.insert(0, str(PROJECT))
from tests.cluster.forwarding_proxy import ForwardingProxy
from tests.cluster.slurm_jobs import cancel_named

CONN_ID = "bench_task_processes"
TASK = """
import json, sys
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
hook = MaxwellHook(sys.argv[1])
job_id = hook.submit_job("#!/bin/bash\\ntrue\\n", name=sys.argv[2], time_limit=1)
hook.get_job(job_id)
state = hook.state
print(json.dumps({"requests": state.requests_sent, "mints": state.tokens.mints, "adopted": state.tokens.adopted}))
"""


def mints_for(info: dict[str, Any], token: str) -> int:
    import hashlib

    base = info["portal_url"].rsplit("/", 1)[0]
    stats = requests.get(f"{base}/_emulator/stats", timeout=30).json()
    return int(stats["slurm_tokens_minted_by_portal_token"].get(hashlib.sha256(token.encode()).hexdigest()[:16], 0))


def run(info: dict[str, Any], processes: int, at_once: int, shared: bool) -> dict[str, Any]:
    """One row: `processes` task processes, `at_once` of them started together, on a fresh host folder."""
    stack = {"name": "s26", **info["stacks"]["s26"]}
    user = users(info)[1]
    token = portal_token(info, user)  # fresh: its mints are counted exactly, whatever else runs
    name = f"bench-tasks-{uuid.uuid4().hex[:8]}"
    with ForwardingProxy(stack["rest_url"], lose=0) as proxy, tempfile.TemporaryDirectory() as folder:
        connection = {
            "conn_type": "maxwell",
            "host": proxy.url,
            "login": user["name"],
            "password": token,
            "extra": {"portal_url": info["portal_url"], "shared_cache": shared},
        }
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT),
            f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(connection),
            "MAXWELL_SHARED_DIR": os.path.join(folder, "shared"),  # a fresh host: nothing minted or chosen yet
        }

        def task(_: int) -> dict[str, Any]:
            done = subprocess.run(
                [sys.executable, "-c", TASK, CONN_ID, name], env=env, capture_output=True, text=True, timeout=600
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            return json.loads(done.stdout.strip().splitlines()[-1])

        began = time.monotonic()
        try:
            with ThreadPoolExecutor(at_once) as pool:
                reports = list(pool.map(task, range(processes)))
        finally:
            cancel_named(stack, name)
        seconds = time.monotonic() - began
        return {
            "shared_cache": shared,
            "processes": processes,
            "requests": proxy.requests_forwarded / processes,
            "max_requests": max(r["requests"] for r in reports),
            "spread": " ".join(
                f"{n}x{sum(r['requests'] == n for r in reports)}" for n in sorted({r["requests"] for r in reports})
            ),
            "kb": proxy.bytes_answered / processes / 1000,
            "mints": mints_for(info, token) / processes,
            "mints_total": mints_for(info, token),
            "seconds": seconds,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--processes", type=int, default=50)
    parser.add_argument("--at-once", type=int, default=10, help="processes started together (a worker's slots)")
    args = parser.parse_args()
    info = cluster_info()
    rows = [run(info, args.processes, args.at_once, shared) for shared in (True, False)]
    print(
        f"\n{args.processes} task processes ({args.at_once} at once), Slurm 26.05, portal auth; each submits one job "
        "and reads it once\n"
    )
    print(
        "| shared_cache | requests / process | most in one process (portal too) | KB answered / process "
        "| mints / process "
        "| mints in all | wall s |"
    )
    print("|---|---|---|---|---|---|---|")
    spreads = []
    for r in rows:
        print(
            f"| {str(r['shared_cache']).lower()} | {r['requests']:.2f} | {r['max_requests']} | {r['kb']:.1f} "
            f"| {r['mints']:.2f} | {r['mints_total']} | {r['seconds']:.0f} |"
        )
        spreads.append(f"shared_cache {str(r['shared_cache']).lower()}: {r['spread']}")
    print("\nrequests a process sent, the portal's included (count x processes): " + "; ".join(spreads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
