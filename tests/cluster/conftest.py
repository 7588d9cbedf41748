"""Fixtures of the tests that run Airflow against the local Maxwell."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

from .airflow_cli import connection_env, make_airflow_env


@pytest.fixture(scope="module")
def airflow_env(cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An Airflow home with a migrated database and the local Maxwell's connections, per test module."""
    return make_airflow_env(cluster, tmp_path_factory.mktemp("airflow-home"))


def stop_pid(pid: int, timeout: float) -> bool:
    """SIGTERM one process we started (by its PID) and wait until it is gone or a zombie."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:  # gone (and reaped)
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; any still running when it ends (a failed assert, a hang) is killed."""
    processes: list[subprocess.Popen] = []
    yield processes
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def start_idp(cluster: dict[str, Any]) -> Iterator[Callable[..., str]]:
    """Start extra IdP instances (same signing key, so Slurm trusts them) with short token lifetimes;
    returns their base URL. Stopped by PID when the test ends."""
    started: list[subprocess.Popen] = []

    def start(access: int, refresh: int) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {"IDP_ACCESS_LIFETIME": str(access), "IDP_REFRESH_LIFETIME": str(refresh), "PATH": "/usr/bin:/bin"}
        proc = subprocess.Popen(
            [*cluster["idp_command"], "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/_idp/stats", timeout=1)
                return url
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError(f"IdP on port {port} did not come up")

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


def grants(idp_url: str) -> dict[str, int]:
    return requests.get(f"{idp_url}/_idp/stats", timeout=10).json()["grants"]


@pytest.fixture
def signed_conn_id(stack: dict[str, Any], users: list[dict[str, Any]], make_connection, signing_key_b64: str) -> str:
    """A connection of the first user to `stack`, signing its own tokens with the cluster's key."""
    return make_connection(
        stack["rest_url"], users[0]["name"], auth_method="signing_key", signing_secret=signing_key_b64
    )


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def hook(airflow_env: dict[str, str], monkeypatch_module: pytest.MonkeyPatch) -> MaxwellHook:
    """A hook on the connection the test DAGs use (maxwell_default), in this test process."""
    for name, value in connection_env().items():
        monkeypatch_module.setenv(name, value)
    return MaxwellHook("maxwell_default")


@pytest.fixture
def rate_limited_stack(request: pytest.FixtureRequest, cluster: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A stack (its name the parameter, `indirect=True`) whose slurmctld rate-limits RPCs for the test
    (devcluster's Maxwell-like bucket of 30, refilled by 2 a second), off again afterwards, even on failure."""
    from .slurm_jobs import set_rate_limit

    name = request.param
    if name not in cluster["stacks"]:
        pytest.skip(f"Slurm stack {name} unavailable on this machine: {cluster['unavailable'].get(name)}")
    set_rate_limit(name, True)
    try:
        yield {"name": name, **cluster["stacks"][name]}
    finally:
        set_rate_limit(name, False)
