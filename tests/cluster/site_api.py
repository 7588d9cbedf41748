"""The local site (devcluster/site.py) as the tests drive it: brought up and down by its own commands,
asked through Airflow's REST API with the admin login its site.env holds."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
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
        self.up_args: list[str] = []
        self._token = ""

    def command(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run([*SITE_PY, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"site.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        return done.stdout

    def up(self, dags: Path = SITE_DAGS, shared: Path | None = None) -> None:
        self.up_args = ["--dags", str(dags), "--venv", sys.prefix, *(["--shared-dir", str(shared)] if shared else [])]
        self.command("up", *self.up_args)
        for line in (self.state.parent / "site.env").read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                self.settings[name] = shlex.split(value)[0]

    def bring_back(self) -> None:
        """Start again what is not running (a killed host), as `up` started it."""
        self.command("up", *self.up_args)

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


TOKEN_LINE = re.compile(r"Slurm token for \S+ on connection (\S+) via \S+, valid until ([0-9-]+ [0-9:]+ UTC)")
PROBE_LINE = re.compile(r"REST API v[0-9.]+ \((the newest of|server offers)")


def token_use(hosts: dict[Path, str]) -> dict[str, dict[str, int]]:
    """Per host, what a run's task logs say its processes did: `tokens`, the distinct Slurm tokens they
    used (each token's expiry time tells it apart; an adopted token is announced like a minted one), and
    `probes`, the API version probes they sent. `hosts` maps each log file of the run to its host."""
    tokens: dict[str, set[str]] = {}
    probes: Counter[str] = Counter()
    for path, host in hosts.items():
        text = path.read_text(errors="replace")
        tokens.setdefault(host, set()).update(f"{m[1]} {m[2]}" for m in TOKEN_LINE.finditer(text))
        probes[host] += len(PROBE_LINE.findall(text))
    return {host: {"tokens": len(tokens[host]), "probes": probes[host]} for host in tokens}


def run_log_hosts(
    log_folder: Path, dag_id: str, run_id: str, tis: list[dict[str, Any]], triggerers: dict[int, str]
) -> dict[Path, str]:
    """Each log file of a run and who wrote it: a `.trigger.<job id>.log` file the triggerer of that job
    id (its host); a try's own file "workers", since a deferred try resumes on whichever worker Celery
    hands it to, so one file holds the lines of two hosts."""
    found: dict[Path, str] = {}
    for ti in tis:
        folder = log_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
        if ti["map_index"] >= 0:
            folder /= f"map_index={ti['map_index']}"
        for path in folder.glob("attempt=*.log*"):
            trigger = re.search(r"\.trigger\.(\d+)\.log$", path.name)
            found[path] = triggerers.get(int(trigger[1]), f"triggerer job {trigger[1]}") if trigger else "workers"
    return found
