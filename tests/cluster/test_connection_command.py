"""`maxwell-connection` obtains a portal token and yields a connection the hook can use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

COMMAND = str(Path(sys.executable).with_name("maxwell-connection"))


def run(args: list[str], stdin: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COMMAND, *args], input=stdin, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_prints_a_working_connection(cluster, users, monkeypatch):
    user = users[0]
    result = run(
        [
            "--user",
            user["name"],
            "--host",
            f"{cluster['front_door']}/sapi",
            "--ca-bundle",
            cluster["ca_bundle"],
            "--password-stdin",
            "--json",
        ],
        user["password"] + "\n",
    )
    assert result.returncode == 0, result.stderr
    conn = json.loads(result.stdout)
    assert conn["extra"] == {"auth_method": "portal", "ca_bundle": cluster["ca_bundle"]} and conn["password"]
    assert user["password"] not in result.stdout + result.stderr
    monkeypatch.setenv("AIRFLOW_CONN_MAXWELL_FROM_CLI", json.dumps(conn))
    ok, message = MaxwellHook("maxwell_from_cli").test_connection()
    assert ok, message


def test_wrong_password_is_refused_clearly(cluster, users):
    result = run(
        [
            "--user",
            users[0]["name"],
            "--host",
            "http://127.0.0.1:1/sapi",
            "--portal-url",
            cluster["portal_url"],
            "--password-stdin",
        ],
        "wrong\n",
    )
    assert result.returncode != 0 and "refused user" in result.stderr and "wrong" not in result.stderr


def test_creates_the_connection_in_airflows_database(cluster, users, tmp_path):
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "false"}
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=300,
    )
    user = users[0]
    args = [
        "--conn-id",
        "maxwell_cli",
        "--user",
        user["name"],
        "--host",
        cluster["stacks"]["s26"]["rest_url"],
        "--portal-url",
        cluster["portal_url"],
        "--password-stdin",
        "--create",
    ]
    assert run(args, user["password"] + "\n", env).returncode == 0
    assert "exists" in run(args, user["password"] + "\n", env).stderr  # no silent overwrite
    assert run([*args, "--replace"], user["password"] + "\n", env).returncode == 0
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "connections", "get", "maxwell_cli", "-o", "json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    stored = json.loads(shown.stdout)[0]
    assert (stored["conn_type"], stored["login"], stored["extra_dejson"]["auth_method"]) == (
        "maxwell",
        user["name"],
        "portal",
    )
    # A task reads the same fields: the stored portal token works.
    os.environ["AIRFLOW_CONN_MAXWELL_CLI_STORED"] = json.dumps(
        {
            "conn_type": "maxwell",
            "host": stored["host"],
            "login": stored["login"],
            "password": stored["password"],
            "extra": stored["extra_dejson"],
        }
    )
    try:
        ok, message = MaxwellHook("maxwell_cli_stored").test_connection()
    finally:
        del os.environ["AIRFLOW_CONN_MAXWELL_CLI_STORED"]
    assert ok, message
