"""`make demo`: the example DAGs end to end on the local Maxwell with `airflow dags test`, then one
real job per Slurm release and auth method through the hook, each followed to its final state in
the accounting database."""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
STATE = PROJECT / ".devcluster"
os.environ.setdefault("AIRFLOW_HOME", str(STATE / "airflow-home-demo"))


def load_connections() -> list[str]:
    ids = []
    for line in (STATE / "connections.env").read_text().splitlines():
        if line.startswith("export AIRFLOW_CONN_"):
            name, _, value = line.removeprefix("export ").partition("=")
            os.environ[name] = shlex.split(value)[0]
            ids.append(name.removeprefix("AIRFLOW_CONN_").lower())
    return ids


def run_example_dags(info: dict) -> int:
    """Run the example DAGs as a user would; print every Slurm job they ran."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW_VAR_MAXWELL_WORKDIR": info["jobs_dir"],
    }
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    failures, reduction_job = 0, None
    for dag_id in ("beamtime_processing", "beamtime_python", "nightly_reduction", "gated_analysis"):
        args = [airflow, "dags", "test", dag_id]
        if dag_id == "gated_analysis" and reduction_job:
            args += ["-c", json.dumps({"job_id": reduction_job})]
        began = time.monotonic()
        result = subprocess.run(args, env=env, capture_output=True, text=True)
        output = result.stdout + result.stderr
        status = "success" if result.returncode == 0 else "FAILED"
        failures += result.returncode != 0
        print(f"\n{dag_id}: {status} in {time.monotonic() - began:.0f} s")
        run_id = re.search(r"run_id='?(manual__[^',\s]+)", output)
        for task_id, summary in xcom_summaries(dag_id, run_id.group(1) if run_id else ""):
            print(
                f"  {task_id:22} job {summary['job_id']:>4}  {summary['state']:10} {summary['elapsed']}  "
                f"{summary['nodes']:8} {summary['output']}"
            )
            if dag_id == "nightly_reduction":
                reduction_job = summary["job_id"]
        results, wrong = what_it_computed(dag_id, output)
        failures += wrong
        for line in results:
            print(f"  {line}")
        if result.returncode != 0:
            print(output[-3000:])
    return failures


# What each example prints about its work, as a pattern of its task log.
RESULT_LINES = {
    "beamtime_processing": r"job \d+: \w+ in \S+ on \S+: run \d+: (\d+) frames, (\d+) photons",
    "beamtime_python": r"run \d+: (\d+) frames, (\d+) photons, mean \S+ per frame \(Slurm job \d+ on \S+\)",
    "nightly_reduction": r"run \S+: reducing the data from \S+ \S+ to \S+ \S+|reduced \d+ hours of data, up to \S+ \S+",
    "gated_analysis": r"analysing the output of job \d+: \S+|its last line: reduced \d+ hours of data, up to \S+ \S+",
}


def what_it_computed(dag_id: str, output: str) -> tuple[list[str], int]:
    """The lines in which an example DAG says what it computed, and how many of its sums are wrong: the
    beamtime examples' n simulated frames, frame k counting k photons, hold n(n+1)/2 photons."""
    lines, wrong = [], 0
    for found in re.finditer(RESULT_LINES[dag_id], output):
        line = found.group(0)
        if dag_id.startswith("beamtime"):
            frames, photons = int(found.group(1)), int(found.group(2))
            expected = frames * (frames + 1) // 2
            wrong += photons != expected
            line += f"  (by hand, n(n+1)/2 for n = {frames}: {expected}{'' if photons == expected else ', WRONG'})"
        lines.append(line)
    return lines, wrong + (not lines)


def xcom_summaries(dag_id: str, run_id: str) -> list[tuple[str, dict]]:
    """The `slurm_job` summaries the operators pushed, read from the demo's metadata database."""
    with sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, map_index, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'slurm_job' "
            "ORDER BY task_id, map_index",
            (dag_id, run_id),
        ).fetchall()
    out = []
    for task_id, map_index, value in rows:
        summary = json.loads(value) if isinstance(value, str) else json.loads(bytes(value))
        out.append((f"{task_id}[{map_index}]" if map_index >= 0 else task_id, summary))
    return out


def main() -> int:
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
    from airflow_provider_maxwell.watch import WatchSpec

    info = json.loads((STATE / "cluster.json").read_text())
    ids = load_connections()
    print("== the example DAGs (airflow dags test, deferrable waits run inline)")
    failures = run_example_dags(info)
    print("\n== one job per Slurm release and auth method, through the hook")
    print(f"{'connection':22} {'Slurm':9} {'API':8} {'job':>5} {'state (slurmdb)':16} output")
    for conn_id in ids:
        hook = MaxwellHook(conn_id)
        submitted = time.time()
        job_id = hook.submit_job(
            '#!/bin/bash\necho "hello from $(hostname) as $(whoami)"\n',
            name=f"demo.{conn_id}",
            current_working_directory=info["jobs_dir"],
            time_limit=5,
        )
        # What the operator does: wait for this job's final accounting record (not just the newest
        # record under its id, which after a Slurm state reset may be an older job's).
        spec = WatchSpec(
            job_id, hook.config.login, submitted_after=submitted, poll_interval=0.5, deadline=time.time() + 60
        )
        final = hook.wait_for_job(spec)[0]
        live = hook.get_job(job_id)
        state = final.state_text
        failures += not final.is_success
        release = hook.state.release or "?"
        output = live.output_path() or "?"
        first_line = Path(output).read_text().strip() if output != "?" and Path(output).exists() else ""
        print(f"{conn_id:22} {release:9} {hook.api_version:8} {job_id:>5} {state:16} {output}  [{first_line}]")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
