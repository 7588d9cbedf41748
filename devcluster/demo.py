"""`make demo`: real jobs on the local Maxwell, one per Slurm release and auth method, each followed
to its final state in the accounting database. (The example DAGs join once the operators exist.)"""

from __future__ import annotations

import json
import os
import shlex
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


def main() -> int:
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    info = json.loads((STATE / "cluster.json").read_text())
    failures = 0
    print(f"{'connection':22} {'Slurm':9} {'API':8} {'job':>5} {'state (slurmdb)':16} output")
    for conn_id in load_connections():
        hook = MaxwellHook(conn_id)
        job_id = hook.submit_job(
            '#!/bin/bash\necho "hello from $(hostname) as $(whoami)"\n',
            name=f"demo.{conn_id}",
            current_working_directory=info["jobs_dir"],
            time_limit=5,
        )
        deadline, final = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            final = hook.get_accounting_job(job_id)
            if final is not None and final.is_terminal:
                break
            time.sleep(0.5)
        live = hook.get_job(job_id)
        state = final.state_text if final else "not in slurmdb"
        failures += not (final and final.is_success)
        release = hook.state.release or "?"
        output = live.output_path() or "?"
        first_line = Path(output).read_text().strip() if output != "?" and Path(output).exists() else ""
        print(f"{conn_id:22} {release:9} {hook.api_version:8} {job_id:>5} {state:16} {output}  [{first_line}]")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
