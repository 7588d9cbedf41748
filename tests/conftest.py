"""Shared fixtures. Tests under tests/cluster/ need the local Maxwell (`make cluster-up`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

PROJECT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("MAXWELL_DEV_STATE", PROJECT / ".devcluster"))
RELEASES = ("s22", "s24", "s26")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> dict[str, Any]:
    """What `devcluster/cluster.py up` wrote about the running local Maxwell."""
    path = STATE / "cluster.json"
    if not path.exists():
        pytest.skip("the local Maxwell is not up: run `make cluster-up` (or `make test`)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def users(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(Path(cluster["users_file"]).read_text())


@pytest.fixture(params=RELEASES)
def stack(request: pytest.FixtureRequest, cluster: dict[str, Any]) -> dict[str, Any]:
    """One Slurm release of the local Maxwell; skips with the reason `up` gave if it is missing."""
    name = request.param
    if name not in cluster["stacks"]:
        reason = cluster["unavailable"].get(name, "not started")
        if os.environ.get("MAXWELL_REQUIRE_ALL_RELEASES") == "1":
            pytest.fail(f"Slurm stack {name} is required here but unavailable: {reason}")
        pytest.skip(f"Slurm stack {name} unavailable on this machine: {reason}")
    return {"name": name, **cluster["stacks"][name]}


@pytest.fixture(scope="session")
def mint_slurm_token(cluster: dict[str, Any]):
    """Mint an HS256 Slurm token with the cluster key, as `scontrol token` would."""
    key = Path(cluster["jwt_key_file"]).read_bytes()

    def mint(user: str, lifespan: int = 600) -> str:
        now = int(time.time())
        return jwt.encode({"sun": user, "iat": now, "exp": now + lifespan}, key, algorithm="HS256")

    return mint
