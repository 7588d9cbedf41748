"""What the benchmarks share about the running local Maxwell: its description and portal tokens."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
# Benchmarks run Airflow code: give them their own home, away from ~/airflow and the tests'.
os.environ.setdefault("AIRFLOW_HOME", str(PROJECT / ".devcluster" / "airflow-home-bench"))


def cluster_info() -> dict[str, Any]:
    """cluster.json as `devcluster/cluster.py up` wrote it; exits with a hint when the cluster is not up."""
    path = Path(os.environ.get("MAXWELL_DEV_STATE", PROJECT / ".devcluster")) / "cluster.json"
    if not path.exists():
        sys.exit("the local Maxwell is not up: run `make cluster-up`")
    return json.loads(path.read_text())


def users(info: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(Path(info["users_file"]).read_text())


def portal_token(info: dict[str, Any], user: dict[str, Any]) -> str:
    """A portal token from the portal emulator, as `maxwell-connection` gets one from DESY's portal."""
    import requests

    return requests.get(
        f"{info['portal_url']}/get_new_token",
        params={"cli_api": "4.6.0"},
        auth=(user["name"], user["password"]),
        timeout=30,
    ).text.strip()
