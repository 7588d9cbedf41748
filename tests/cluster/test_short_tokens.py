"""Tokens living 10 s through a 60 s job, for the portal and Keycloak, through real DAG runs:
renewed again and again, the task succeeds. The portal one waits deferred (the triggerer's shared
poller), the Keycloak one on the worker."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from .airflow_cli import AIRFLOW, TEST_DAGS, make_airflow_env
from .conftest import grants
from .test_secrets import leaks

# 55 s of work (the sync DAG has a 1-minute limit), about a minute from submission to the end.
SCRIPT = "#!/bin/bash\nsleep 55\necho outlived-its-tokens\n"


def test_10_s_tokens_through_a_60_s_job(airflow_env, cluster, users, emulator, start_idp, spawned, tmp_path):
    rest = cluster["stacks"]["s24"]["rest_url"]
    portal_user, keycloak_user = users[0], users[1]
    idp = start_idp(access=10, refresh=30)
    connections = {
        "maxwell_short_portal": {
            "conn_type": "maxwell",
            "host": rest,
            "login": portal_user["name"],
            "password": (portal_token := emulator.portal_token(portal_user)),
            "extra": {"auth_method": "portal", "portal_url": cluster["portal_url"], "jwt_lifespan": 10},
        },
        "maxwell_short_keycloak": {
            "conn_type": "maxwell",
            "host": rest,
            "login": keycloak_user["name"],
            "password": keycloak_user["password"],
            "extra": {"auth_method": "keycloak", "keycloak_url": f"{idp}/auth"},
        },
    }
    runs = {}
    # Both at once, each with its own Airflow home (two `dags test` on one SQLite database collide).
    homes = [airflow_env, make_airflow_env(cluster, tmp_path / "second-home")]
    plan = [("maxwell_short_portal", "maxwell_outcome"), ("maxwell_short_keycloak", "maxwell_outcome_sync")]
    for home, (conn_id, dag_id) in zip(homes, plan, strict=True):
        env = {
            **home,
            **{f"AIRFLOW_CONN_{c.upper()}": json.dumps(v) for c, v in connections.items()},
            "MAXWELL_TEST_CONN": conn_id,
            "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS),
        }
        proc = subprocess.Popen(
            [AIRFLOW, "dags", "test", dag_id, "-c", json.dumps({"script": SCRIPT})],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        spawned.append(proc)
        runs[conn_id] = proc
    outputs = []
    for conn_id, proc in runs.items():
        out, _ = proc.communicate(timeout=400)
        outputs.append(out)
        assert proc.returncode == 0, f"{conn_id}:\n{out[-4000:]}"
        assert "ended COMPLETED" in out and "outlived-its-tokens" in out, out[-4000:]
        assert "refused" not in out, out[-4000:]
    # 60 s of polling every 2 s with tokens due for renewal every 9 s: several renewals each.
    assert emulator.mints_for(portal_token) >= 4
    used = grants(idp)
    assert used.get("password", 0) + used.get("refresh_token", 0) >= 4, used
    assert used.get("refresh_token", 0) >= 2, used  # renewed by refresh grants while they lived
    # Every renewal minted a token: none of them, nor the portal token or password, was written anywhere.
    secrets = sorted({connections[c]["password"].encode() for c in connections})
    found = [f"output: {hit}" for out in outputs for hit in leaks(out.encode(), secrets)]
    for home in homes:
        root = Path(home["AIRFLOW_HOME"])
        found += [f"{p}: {hit}" for p in root.rglob("*") if p.is_file() for hit in leaks(p.read_bytes(), secrets)]
        with sqlite3.connect(root / "airflow.db") as db:
            found += [f"metadata DB: {hit}" for hit in leaks("\n".join(db.iterdump()).encode(), secrets)]
    assert not found, "\n".join(found)
