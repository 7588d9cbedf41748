"""Shared fixtures. Tests under tests/cluster/ need the local Maxwell (`make cluster-up`)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from airflow_provider_maxwell.auth.sources import CLI_API

from .fake_slurm import fake  # noqa: F401 - a fixture for every unit test
from .hostile_server import hostile_servers  # noqa: F401 - a fixture for every unit test
from .second_user import attacker, job_owner  # noqa: F401 - a real second uid, for the attacks that need one
from .skip_guard import *  # noqa: F403 - the hooks that fail a run with an unexpected skip

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"
# Airflow reads AIRFLOW_HOME when first imported: give the tests their own, away from ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", str(PROJECT / ".devcluster" / "airflow-home-tests"))
STATE = Path(os.environ.get("MAXWELL_DEV_STATE", PROJECT / ".devcluster"))
RELEASES = ("s22", "s24", "s26")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(autouse=True)
def shared_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own host folder (host_files.py): no test adopts a token or version another one left."""
    folder = tmp_path / "host-shared"
    monkeypatch.setenv("MAXWELL_SHARED_DIR", str(folder))
    return folder


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


_conn_ids = itertools.count()


@pytest.fixture
def make_connection(monkeypatch: pytest.MonkeyPatch, cluster: dict[str, Any]):
    """Define an Airflow connection of type maxwell through the environment; returns its id.

    Each call gets a fresh id, so process-wide token and version caches start empty for it.
    """

    def make(host: str, login: str, password: str | None = None, **extra: Any) -> str:
        conn_id = f"maxwell_test_{os.getpid()}_{next(_conn_ids)}"
        conn = {"conn_type": "maxwell", "host": host, "login": login, "extra": extra}
        if password is not None:
            conn["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make


@pytest.fixture(scope="session")
def signing_key_b64(cluster: dict[str, Any]) -> str:
    return base64.b64encode(Path(cluster["jwt_key_file"]).read_bytes()).decode()


@pytest.fixture(scope="session")
def emulator(cluster: dict[str, Any]):
    """The portal emulator's test controls."""
    import requests

    base = cluster["portal_url"].rsplit("/", 1)[0]

    class Emulator:
        def portal_token(self, user: dict[str, Any]) -> str:
            answer = requests.get(
                f"{cluster['portal_url']}/get_new_token",
                params={"cli_api": CLI_API},
                auth=(user["name"], user["password"]),
                timeout=30,
            )
            answer.raise_for_status()
            return answer.text.strip()

        def mints(self, user: str) -> int:
            """Slurm tokens minted for `user` by anyone (other tests' processes too)."""
            return requests.get(f"{base}/_emulator/stats", timeout=30).json()["slurm_tokens_minted"].get(user, 0)

        def mints_for(self, portal_token: str) -> int:
            """Slurm tokens minted with this portal token only: exact, whatever else runs."""
            key = hashlib.sha256(portal_token.encode()).hexdigest()[:16]
            stats = requests.get(f"{base}/_emulator/stats", timeout=30).json()
            return int(stats["slurm_tokens_minted_by_portal_token"].get(key, 0))

        def revoke(self, user: str) -> None:
            requests.post(f"{base}/_emulator/revoke", params={"user": user}, timeout=30).raise_for_status()

    return Emulator()
