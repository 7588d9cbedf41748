"""No token, portal token, password or signing key in anything Airflow keeps: task and triggerer
logs, the metadata database (trigger kwargs, XCom, rendered fields), exception messages, files.

The example DAGs and a failing task run once per auth method; then every byte under AIRFLOW_HOME,
a dump of the metadata database and the runs' own output are searched for the known secrets and
for anything shaped like a JWT (a minted token whose value the test cannot know)."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from pathlib import Path

import pytest

from .airflow_cli import EXAMPLES, TEST_DAGS, connection_env, dags_test, make_airflow_env

JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


@pytest.fixture(scope="module")
def secrets(cluster, users) -> list[bytes]:
    return secrets_of(cluster, users)


def secrets_of(cluster, users) -> list[bytes]:
    """Every credential of the local Maxwell's users and connections, and the Slurm signing key."""
    conns = {k: json.loads(v) for k, v in connection_env().items()}
    values = [u["password"] for u in users]
    for conn in conns.values():
        values += [
            conn.get("password") or "",
            conn["extra"].get("signing_secret", ""),
            conn["extra"].get("signing_key", ""),
        ]
    key = Path(cluster["jwt_key_file"]).read_bytes()
    values.append(base64.b64encode(key).decode())
    found = {v.encode() for v in values if v and len(v) >= 8}
    found.add(key)
    return sorted(found)


def leaks(data: bytes, secrets: list[bytes]) -> list[str]:
    hits = [f"secret {s[:4]!r}...({len(s)} bytes)" for s in secrets if s in data]
    hits += [f"JWT {m.group(0)[:24]!r}..." for m in JWT.finditer(data)]
    return hits


@pytest.mark.parametrize("method", ["portal", "keycloak", "token", "signing_key"])
def test_no_secret_reaches_logs_database_or_files(cluster, secrets, method, tmp_path, shared_folder):
    # The scanner itself finds what it looks for (a scan that cannot fail proves nothing).
    assert leaks(b"log line " + secrets[0] + b" end", secrets)
    assert leaks(b"token=eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJhbGljZSJ9.c2lnbmF0dXJlX2J5dGVz", [])
    env = make_airflow_env(cluster, tmp_path / "airflow")
    env["AIRFLOW_CONN_MAXWELL_DEFAULT"] = connection_env()[f"AIRFLOW_CONN_MAXWELL_{method.upper()}"]
    outputs = []
    for folder, dag_id, conf, expect_ok in (
        (EXAMPLES, "nightly_reduction", None, True),
        (EXAMPLES, "beamtime_processing", {"runs": [1]}, True),
        (TEST_DAGS, "maxwell_outcome", {"script": "#!/bin/bash\nexit 3\n"}, False),
    ):
        rc, out = dags_test(env, folder, dag_id, conf)
        assert (rc == 0) is expect_ok, out[-3000:]
        outputs.append(out.encode())
    found: list[str] = []
    for i, out in enumerate(outputs):
        found += [f"run {i} output: {hit}" for hit in leaks(out, secrets)]
    home = Path(env["AIRFLOW_HOME"])
    for path in home.rglob("*"):
        if path.is_file():
            found += [f"{path.relative_to(home)}: {hit}" for hit in leaks(path.read_bytes(), secrets)]
    # The host's shared folder (host_files.py): token files there are encrypted.
    shared = [p for p in shared_folder.rglob("*") if p.is_file()] if shared_folder.exists() else []
    if method in ("portal", "keycloak"):
        assert any(p.suffix == ".token" for p in shared), "the runs shared no token: the scan would prove nothing"
    for path in shared:
        found += [f"shared folder {path.name}: {hit}" for hit in leaks(path.read_bytes(), secrets)]
    with sqlite3.connect(home / "airflow.db") as db:
        dump = "\n".join(db.iterdump()).encode()
    found += [f"metadata DB: {hit}" for hit in leaks(dump, secrets)]
    assert b"maxwell_outcome" in dump and b"slurm_job" in dump  # the scan saw the runs' records
    assert not found, "\n".join(found)
