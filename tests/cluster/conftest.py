"""Fixtures of the tests that run Airflow against the local Maxwell."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from .airflow_cli import make_airflow_env


@pytest.fixture(scope="module")
def airflow_env(cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An Airflow home with a migrated database and the local Maxwell's connections, per test module."""
    return make_airflow_env(cluster, tmp_path_factory.mktemp("airflow-home"))


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; any still running when it ends (a failed assert, a hang) is killed."""
    processes: list[subprocess.Popen] = []
    yield processes
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
