"""Fixtures of the tests that run Airflow against the local Maxwell."""

from __future__ import annotations

from typing import Any

import pytest

from .airflow_cli import make_airflow_env


@pytest.fixture(scope="module")
def airflow_env(cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An Airflow home with a migrated database and the local Maxwell's connections, per test module."""
    return make_airflow_env(cluster, tmp_path_factory.mktemp("airflow-home"))
