"""The local site (devcluster/site.py) as the tests drive it: brought up and down by its own commands,
asked through Airflow's REST API with the admin login its site.env holds."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from ..conftest import PROJECT

SITE_PY = [sys.executable, str(PROJECT / "devcluster" / "site.py")]
SITE_DAGS = PROJECT / "tests" / "site_dags"


class Site:
    """One site, its state in `state` (site.env beside it), its ports from `port_base` on."""

    def __init__(self, state: Path, port_base: int) -> None:
        self.state = state
        self.env = {**os.environ, "MAXWELL_SITE_STATE": str(state), "MAXWELL_SITE_PORT_BASE": str(port_base)}
        self.settings: dict[str, str] = {}
        self._token = ""

    def command(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run([*SITE_PY, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"site.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        return done.stdout

    def up(self, dags: Path = SITE_DAGS) -> None:
        self.command("up", "--dags", str(dags), "--venv", sys.prefix)
        for line in (self.state.parent / "site.env").read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                self.settings[name] = shlex.split(value)[0]

    def down(self) -> None:
        self.command("down")

    def pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in (line.split() for line in self.command("pids").splitlines())}

    @property
    def url(self) -> str:
        return self.settings["SITE_API_URL"]

    def request(self, method: str, path: str, **kw: Any) -> Any:
        if not self._token:
            answer = requests.post(
                f"{self.url}/auth/token",
                json={"username": self.settings["SITE_ADMIN_USER"], "password": self.settings["SITE_ADMIN_PASSWORD"]},
                timeout=30,
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        answer = requests.request(
            method, f"{self.url}/api/v2/{path}", headers={"Authorization": f"Bearer {self._token}"}, timeout=30, **kw
        )
        assert answer.ok, f"{method} {path}: HTTP {answer.status_code} {answer.text[:500]}"
        return answer.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the DAG processor has parsed the DAG (the API knows it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.request("GET", "dags", params={"dag_id_pattern": dag_id})["dags"]
            if any(dag["dag_id"] == dag_id for dag in found):
                return
            time.sleep(2)
        raise AssertionError(f"the site did not parse {dag_id} within {timeout:.0f} s")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run = self.request("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(
            self.request("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
                "task_instances"
            ]
        )

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.request("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"])
