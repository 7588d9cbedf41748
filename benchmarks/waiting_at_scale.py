"""Waiting at scale: N jobs waited on at once in one triggerer event loop, shared poller against
one-request-per-job polling, side by side (not a test: it prints figures).

    make bench            (or: devcluster/with-cluster.sh .venv/bin/python benchmarks/waiting_at_scale.py)

For each N (default 10, 100, 1000) and each way of polling, the parent process submits N short jobs
to the local Maxwell's Slurm 26.05 with begin times in 5 waves, then starts a fresh child process
that runs N MaxwellJobTriggers in one asyncio loop, as the triggerer does, until each has yielded
its event. The child reports:

- requests to slurmrestd per poll interval (all its requests to the REST API / (wait time / interval));
- answer bytes and answer time (request sent to body read, on 127.0.0.1 the server's time) per interval,
  and accounting's answer bytes per job waited on;
- token mints (the portal exchange) during the wait;
- CPU seconds (user + system) and peak RSS added over the process's RSS before the triggers started;
- delay from each job's end (accounting's end time, whole seconds; the triggers' start for a job that
  ended before them) to its trigger's event.

`--stack s24 --old-wait` runs it on a stack `devcluster/cluster.py load s24` made busy, with one of
the waits declared a day before the others (a sensor's case).

`--end cancel` is for N = 10,000 (`--sizes 10000 --modes shared --end cancel`): the local node runs
about 3-4 jobs a second, so 10,000 jobs that run would take most of an hour. Instead the jobs wait
for a begin time an hour away and the parent cancels them in 5 waves once the triggers have started;
a cancelled job ends at once (accounting's end time is the cancel), and the delay is measured from
there as for jobs that ran. slurm.conf's MaxJobCount (devcluster/slurm.conf.in) leaves room for them.

"per-job" is what the trigger did before the shared poller: each trigger polls /slurm/vX/job/{id}
on its own and asks accounting once that says the job ended. Then the import cost of the DAG-facing
modules is measured with `python -X importtime`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from local_maxwell import cluster_info, portal_token, users

CONN_ID = "maxwell_bench_wait"
WAVES = 5


def define_connection(info: dict[str, Any], stack: str) -> None:
    """A portal connection (mxuser1) to the stack's Slurm: its token comes from the portal emulator."""
    user = users(info)[0]
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {
            "conn_type": "maxwell",
            "host": info["stacks"][stack]["rest_url"],
            "login": user["name"],
            "password": portal_token(info, user),
            "extra": {"auth_method": "portal", "portal_url": info["portal_url"]},
        }
    )


# ---------------------------------------------------------------------------------------------- child


def child(
    mode: str, job_ids: list[int], submitted_after: float, interval: float, budget: float, old_wait: bool = False
) -> dict[str, Any]:
    """Wait on `job_ids` with N triggers in one event loop; measure what it cost."""
    import asyncio

    from airflow_provider_maxwell.client.drivers import SlurmClient
    from airflow_provider_maxwell.client.state import connection_state
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
    from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
    from airflow_provider_maxwell.watch import WatchSpec, watch

    class PerJobTrigger(MaxwellJobTrigger):
        """The trigger as it was before the shared poller: every trigger polls its own job."""

        async def _wait(self, client: SlurmClient) -> Any:
            return await client.arun(watch(client.ops, self.spec))

    rest_requests = 0
    answer_bytes = accounting_bytes = 0
    answer_seconds = 0.0
    send = SlurmClient._asend
    connection = json.loads(os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"])
    host, user = connection["host"], connection["login"]

    by_kind: dict[str, dict[str, float]] = {}  # per endpoint: requests, KB, seconds, slowest answer

    async def counting_send(self: SlurmClient, call: Any) -> Any:
        nonlocal rest_requests, answer_bytes, accounting_bytes, answer_seconds
        began = time.monotonic()
        result = await send(self, call)
        if call.url.startswith(host):
            took = time.monotonic() - began
            rest_requests += 1
            answer_seconds += took
            size = len(getattr(result, "body", b"") or b"")
            answer_bytes += size
            accounting_bytes += size if "/slurmdb/" in call.url else 0
            route = re.search(r"/(slurmdb|slurm)/v[\d.]+/([^?]*)", call.url)
            kind = re.sub(r"\d+", "{id}", "/".join(route.groups())) if route else "other"
            figures = by_kind.setdefault(kind, dict(requests=0, kb=0, s=0, max_s=0))
            figures["requests"] += 1
            figures["kb"] += size / 1000
            figures["s"] += took
            figures["max_s"] = max(figures["max_s"], took)
        return result

    SlurmClient._asend = counting_send  # type: ignore[method-assign]

    from airflow_provider_maxwell.triggers.poller import JobPoller

    rounds: list[list[float]] = []  # per round: start (s after the triggers), length, gap to the next start, waits
    one_round = JobPoller._round

    async def timed_round(self: JobPoller, subscribers: Any) -> None:
        start = time.time() - began
        if rounds:
            rounds[-1][2] = start - rounds[-1][0]  # the interval as kept: jitter, the server's rest
        rounds.append([start, 0.0, 0.0, len(subscribers)])
        try:
            await one_round(self, subscribers)
        finally:
            rounds[-1][1] = time.time() - began - rounds[-1][0]

    JobPoller._round = timed_round  # type: ignore[method-assign]
    trigger_class = MaxwellJobTrigger if mode == "shared" else PerJobTrigger
    received: dict[int, float] = {}
    summaries: dict[int, dict[str, Any]] = {}

    async def wait(trigger: MaxwellJobTrigger) -> None:
        async for event in trigger.run():
            received[trigger.spec.job_id] = time.time()
            summaries[trigger.spec.job_id] = event.payload
            return

    async def main() -> None:
        triggers = [
            trigger_class(
                maxwell_conn_id=CONN_ID,
                spec=WatchSpec(
                    job_id,
                    user,
                    submitted_after=submitted_after - (86400 if old_wait and i == 0 else 0),
                    poll_interval=interval,
                ).to_kwargs(),
            )
            for i, job_id in enumerate(job_ids)
        ]
        waits = [asyncio.ensure_future(wait(t)) for t in triggers]
        _, unfinished = await asyncio.wait(waits, timeout=budget)
        for task in unfinished:  # past the budget: stop, and report how many events came
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)

    import logging

    import airflow_provider_maxwell.triggers.poller  # noqa: F401 - loaded before the baseline is taken

    logging.disable(logging.INFO)  # the triggers' progress lines would cost more than the polling
    rss_before_kib = _current_rss_kib()
    cpu_before = _cpu_seconds()
    began = time.time()
    asyncio.run(main())
    waited = time.time() - began
    cpu = _cpu_seconds() - cpu_before
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    state = connection_state(MaxwellHook(CONN_ID).config)
    delays = []
    ended_before = 0  # jobs that ended before the triggers started (slow submission): no poller delay
    for job_id, at in received.items():
        end = (summaries[job_id].get("summary") or {}).get("end")
        if end:
            ended = datetime.fromisoformat(end).timestamp()
            ended_before += ended < began
            delays.append(at - max(ended, began))
    statuses: dict[str, int] = {}
    for payload in summaries.values():
        statuses[payload["status"]] = statuses.get(payload["status"], 0) + 1
    return {
        "mode": mode,
        "n": len(job_ids),
        "events": len(received),
        "waited_s": waited,
        "requests": rest_requests,
        "requests_per_interval": rest_requests / (waited / interval),
        "kb_per_interval": answer_bytes / 1000 / (waited / interval),
        "answer_ms_per_interval": answer_seconds * 1000 / (waited / interval),
        "accounting_kb_per_job": accounting_bytes / 1000 / len(job_ids),
        "mints": state.tokens.mints,
        "cpu_s": cpu,
        "added_rss_mb": max(peak_kib - rss_before_kib, 0) / 1024,
        "delay_median_s": statistics.median(delays) if delays else None,
        "delay_max_s": max(delays) if delays else None,
        "statuses": statuses,
        "ended_before_wait": ended_before,
        "rounds": [[round(x, 1) for x in r] for r in rounds],
        "by_endpoint": {kind: {k: round(v, 2) for k, v in f.items()} for kind, f in by_kind.items()},
    }


def _current_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------- parent


def submit_jobs(info: dict[str, Any], n: int, runtime: int = 0, end: str = "run") -> tuple[list[int], float]:
    """N jobs that start in WAVES waves (begin times 15 s apart) and run `runtime` seconds (`true` at 0);
    with end="cancel", jobs that wait for a begin time an hour away (`cancel_in_waves` ends them)."""
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    hook = MaxwellHook(CONN_ID)
    hook.api_version  # noqa: B018 - negotiate once before the threads start
    submitted_after = time.time()
    first_begin = int(submitted_after + 20 + n * 0.01)

    def submit(i: int) -> int:
        begin = first_begin + 15 * (i * WAVES // n) if end == "run" else int(submitted_after + 3600)
        return hook.submit_job(
            f"#!/bin/bash\nsleep {runtime}\n" if runtime else "#!/bin/bash\ntrue\n",
            name=f"bench-wait-{i}",
            partition="maxcpu",
            time_limit=5,
            current_working_directory=info["jobs_dir"],
            begin_time={"set": True, "infinite": False, "number": begin},
        )

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(submit, range(n))), submitted_after


def cancel_in_waves(job_ids: list[int], first_after: float, gap: float = 15.0) -> None:
    """Cancel `job_ids` in WAVES waves, the first `first_after` seconds from now, then every `gap` s."""
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    hook = MaxwellHook(CONN_ID)
    size = -(-len(job_ids) // WAVES)
    start = time.time() + first_after
    with ThreadPoolExecutor(8) as pool:
        for wave in range(WAVES):
            time.sleep(max(0.0, start + wave * gap - time.time()))
            list(pool.map(lambda job_id: cancel_quietly(hook, job_id), job_ids[wave * size : (wave + 1) * size]))
            print(f"  wave {wave + 1}: {min(len(job_ids), (wave + 1) * size)} cancelled", file=sys.stderr, flush=True)


def run_child(
    mode: str,
    job_ids: list[int],
    submitted_after: float,
    interval: float,
    budget: float,
    old_wait: bool,
    end: str = "run",
) -> dict[str, Any]:
    spec = {
        "old_wait": old_wait,
        "mode": mode,
        "job_ids": job_ids,
        "submitted_after": submitted_after,
        "interval": interval,
        "budget": budget,
    }
    args = json.dumps(spec)
    # The child's output goes to files, not pipes: while the parent cancels, nobody would read a pipe,
    # and the child's triggers would block on their log lines once its buffer is full.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        with subprocess.Popen(
            [sys.executable, __file__, "--child", args], stdout=out, stderr=err, text=True, env=os.environ
        ) as process:
            try:
                if end == "cancel":  # the triggers start and claim their jobs first (a few rounds)
                    cancel_in_waves(job_ids, first_after=3 * interval + len(job_ids) / 1000)
                process.wait()
            finally:
                if process.poll() is None:
                    process.kill()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        sys.exit(f"benchmark child ({mode}) failed:\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def import_cost(runs: int = 7) -> tuple[float, float]:
    """Milliseconds `import airflow_provider_maxwell.operators.job` (and .sensors.job) add after
    `import airflow.sdk`, from -X importtime (median of `runs` fresh interpreters)."""

    def added(module: str) -> float:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import airflow.sdk; import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
        names = [line.rsplit("|", 1)[1].strip() for line in lines]
        last_sdk = max(i for i, name in enumerate(names) if name == "airflow.sdk")
        total_us = 0
        for line in lines[last_sdk + 1 :]:
            self_us = line.split(":", 1)[1].split("|")[0].strip()
            total_us += int(self_us)
        return total_us / 1000

    operator = statistics.median(added("airflow_provider_maxwell.operators.job") for _ in range(runs))
    both = statistics.median(
        added("airflow_provider_maxwell.operators.job, airflow_provider_maxwell.sensors.job") for _ in range(runs)
    )
    return operator, both


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated N (default 10,100,1000)")
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval in seconds (default 10)")
    parser.add_argument("--modes", default="shared,per-job", help="ways of polling to run (default shared,per-job)")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds a run may wait at most (default 600)")
    parser.add_argument("--stack", default="s26", help="the local Slurm release to wait on (default s26)")
    parser.add_argument("--old-wait", action="store_true", help="declare one wait a day before the others")
    parser.add_argument("--runtime", type=int, default=0, help="seconds each job runs (default 0: `true`)")
    parser.add_argument(
        "--end", choices=("run", "cancel"), default="run", help="jobs run (default), or are cancelled in waves"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        spec = json.loads(options.child)
        print(
            json.dumps(
                child(
                    spec["mode"],
                    spec["job_ids"],
                    spec["submitted_after"],
                    spec["interval"],
                    spec["budget"],
                    spec.get("old_wait", False),
                )
            )
        )
        return 0

    info = cluster_info()
    if options.stack not in info["stacks"]:
        sys.exit(f"stack {options.stack} is not up here")
    define_connection(info, options.stack)
    results = []
    for n in (int(x) for x in options.sizes.split(",")):
        for mode in options.modes.split(","):
            began = time.time()
            job_ids, submitted_after = submit_jobs(info, n, options.runtime, options.end)
            print(f"N={n} {mode}: {n} jobs submitted in {time.time() - began:.0f} s, waiting ...", file=sys.stderr)
            try:
                results.append(
                    run_child(
                        mode, job_ids, submitted_after, options.interval, options.budget, options.old_wait, options.end
                    )
                )
            finally:
                if options.end == "cancel":  # whatever a failed run left waiting for its begin time
                    cancel_leftovers(job_ids)
            print(f"  {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    print()
    print(
        f"Waiting on N jobs in one event loop, poll interval {options.interval:g} s, local stack {options.stack}"
        f"{', one wait declared a day early' if options.old_wait else ''}; a run stops after {options.budget:g} s"
    )
    header = (
        f"| {'N':>5} | {'polling':8} | {'events':>13} | {'REST requests / interval':>24} "
        f"| {'KB / interval':>13} | {'answer ms / interval':>20} | {'accounting KB / job':>19} "
        f"| {'token mints':>11} | {'CPU s':>6} "
        f"| {'added RSS MB':>12} | {'delay median s':>14} | {'delay max s':>11} | {'wait s':>6} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for r in results:
        print(
            f"| {r['n']:>5} | {r['mode']:8} | {r['events']:>5} / {r['n']:<5} "
            f"| {r['requests_per_interval']:>24.1f} | {r['kb_per_interval']:>13.1f} "
            f"| {r['answer_ms_per_interval']:>20.1f} | {r['accounting_kb_per_job']:>19.1f} | {r['mints']:>11} "
            f"| {r['cpu_s']:>6.2f} | {r['added_rss_mb']:>12.1f} | {_num(r['delay_median_s']):>14} "
            f"| {_num(r['delay_max_s']):>11} | {r['waited_s']:>6.0f} |"
        )
        if set(r["statuses"]) - {"success"}:
            print(f"  (N={r['n']} {r['mode']}: events {r['statuses']})")
    operator_ms, both_ms = import_cost()
    print()
    print(f"Import added after `import airflow.sdk` (median of 7, -X importtime): operators.job {operator_ms:.1f} ms, ")
    print(f"operators.job + sensors.job {both_ms:.1f} ms")
    return 0


def cancel_leftovers(job_ids: list[int]) -> None:
    """Cancel every job of the run again (a run that failed leaves them waiting for their begin time)."""
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    hook = MaxwellHook(CONN_ID)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda job_id: cancel_quietly(hook, job_id), job_ids))


def cancel_quietly(hook: Any, job_id: int) -> None:
    """Cancel; an id slurmctld already forgot (ended, purged after MinJobAge) is not this run's problem."""
    from airflow_provider_maxwell.exceptions import MaxwellError, SlurmJobNotFound

    try:
        hook.cancel_job(job_id)
    except SlurmJobNotFound:
        pass  # ended and forgotten: nothing left to cancel
    except MaxwellError as error:
        print(f"  cancel {job_id}: {error}", file=sys.stderr, flush=True)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
