"""The example DAGs end to end on the oldest Airflow the provider supports (3.1), as users of it run
them: `airflow dags test` against the local Maxwell, deferrable waits included. Uses the second
virtual environment `make unit-lowest` builds (.venv-lowest, part of `make test`)."""

from __future__ import annotations

import os
import subprocess

import pytest

from ..conftest import PROJECT
from .airflow_cli import EXAMPLES, connection_env

LOWEST_AIRFLOW = PROJECT / ".venv-lowest" / "bin" / "airflow"


def test_the_example_dags_run_on_the_lowest_airflow(cluster, tmp_path):
    if not LOWEST_AIRFLOW.exists():
        pytest.skip("no .venv-lowest: `make unit-lowest` (part of `make test`) builds it")
    env = {
        **os.environ,
        **connection_env(),
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW_VAR_MAXWELL_WORKDIR": cluster["jobs_dir"],
    }
    version = subprocess.run([LOWEST_AIRFLOW, "version"], env=env, capture_output=True, text=True, check=True)
    assert version.stdout.strip().splitlines()[-1].startswith("3.1."), version.stdout
    subprocess.run([LOWEST_AIRFLOW, "db", "migrate"], env=env, capture_output=True, check=True, timeout=300)
    job_ids = {}
    for dag_id in ("nightly_reduction", "beamtime_processing", "gated_analysis"):
        args = [LOWEST_AIRFLOW, "dags", "test", dag_id]
        if dag_id == "gated_analysis":
            args += ["-c", f'{{"job_id": {job_ids["nightly_reduction"]}}}']
        result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        out = result.stdout + result.stderr
        assert result.returncode == 0, out[-3000:]
        assert "ended COMPLETED" in out, out[-3000:]
        job_ids[dag_id] = int(out.split("Submitted Slurm job ", 1)[1].split()[0]) if "Submitted" in out else None
        if dag_id == "nightly_reduction":  # deferrable: its wait ran in the trigger (inline in `dags test`)
            assert "MaxwellJobTrigger" in out, out[-3000:]
    assert job_ids["nightly_reduction"], "the nightly reduction submitted no job"
