"""What a task process costs on the real daemons: one token per host, not per process; the API version
chosen by probing pings (the same choice the server's OpenAPI document gives), once per host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from airflow_provider_maxwell.exceptions import MaxwellAuthError
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from airflow_provider_maxwell.slurm.dialects import SUPPORTED_VERSIONS, negotiate, served_versions

from .test_hook_auth import newest

PROJECT = Path(__file__).resolve().parents[2]

# A fresh task process: checks the token with slurmctld (diag) and says what it cost.
TASK = """
import json, sys
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
hook = MaxwellHook(sys.argv[1])
ok, message = hook.test_connection()
state = hook.state
print(json.dumps({"ok": ok, "message": message, "requests": state.requests_sent, "mints": state.tokens.mints,
                  "adopted": state.tokens.adopted, "version": state.dialect.version if state.dialect else None}))
"""


def task_process(conn_id: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run(
        [sys.executable, "-c", TASK, conn_id], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fresh_processes_share_one_portal_token(cluster, users, make_connection, emulator):
    user = users[1]
    portal_token = emulator.portal_token(user)
    conn_id = make_connection(
        newest(cluster), user["name"], portal_token, auth_method="portal", portal_url=cluster["portal_url"]
    )
    runs = [task_process(conn_id) for _ in range(4)]
    assert all(run["ok"] for run in runs), runs
    assert emulator.mints_for(portal_token) == 1
    assert [run["mints"] for run in runs] == [1, 0, 0, 0] and [run["adopted"] for run in runs[1:]] == [1, 1, 1]
    # After the first, a process sends its one request (diag) and nothing to choose the version.
    assert [run["requests"] for run in runs[1:]] == [1, 1, 1]


def test_each_release_gets_by_probing_the_version_its_document_names(
    stack, users, make_connection, signing_key_b64, mint_slurm_token
):
    user = users[0]
    headers = {"X-SLURM-USER-NAME": user["name"], "X-SLURM-USER-TOKEN": mint_slurm_token(user["name"])}
    document = requests.get(f"{stack['rest_url']}/openapi/v3", headers=headers, timeout=60).json()
    expected = negotiate(served_versions(document)).version
    conn_id = make_connection(
        stack["rest_url"], user["name"], auth_method="signing_key", signing_secret=signing_key_b64
    )
    first, second = task_process(conn_id), task_process(conn_id)
    assert first["ok"] and first["version"] == second["version"] == expected, (first, second)
    probes = list(reversed(SUPPORTED_VERSIONS)).index(expected) + 1
    assert first["requests"] == probes + 1 and second["requests"] == 1


def test_a_revoked_portal_token_is_noticed_when_the_shared_token_is_due(cluster, users, make_connection, emulator):
    user = users[2]
    conn_id = make_connection(
        newest(cluster),
        user["name"],
        emulator.portal_token(user),
        auth_method="portal",
        portal_url=cluster["portal_url"],
        jwt_lifespan=10,
    )
    first = MaxwellHook(conn_id).get_token()
    emulator.revoke(user["name"])
    # Slurm tokens cannot be revoked (DESY): the one minted before stays usable until its renewal,
    # shared or not; the next mint meets the revocation and says so.
    expires = jwt.decode(first, options={"verify_signature": False})["exp"]
    time.sleep(max(expires - time.time(), 0) + 0.5)
    with pytest.raises(MaxwellAuthError, match=r"HTTP 401.*revoked"):
        task_process_raising(conn_id)


def task_process_raising(conn_id: str) -> None:
    """Run the token mint in a fresh process; re-raise its MaxwellAuthError here with its message."""
    program = (
        "import sys\nfrom airflow_provider_maxwell.hooks.maxwell import MaxwellHook\n"
        "from airflow_provider_maxwell.exceptions import MaxwellAuthError\n"
        "try:\n    MaxwellHook(sys.argv[1]).get_token()\nexcept MaxwellAuthError as e:\n    print('AUTH:', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run(
        [sys.executable, "-c", program, conn_id], env=env, capture_output=True, text=True, timeout=180
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("AUTH:")), None)
    if line is not None:
        raise MaxwellAuthError(line.removeprefix("AUTH: "))


def test_processes_starting_together_probe_the_version_once(cluster, users, make_connection, signing_key_b64):
    # A fan-out starts many tasks at once: one probes (under the host lock), the others read its
    # choice. 24.11 needs four pings (v0.0.45, 44, 43 answer 404, v0.0.42 answers), so a second
    # prober would show.
    release = "s24" if "s24" in cluster["stacks"] else "s26"
    rest_url = cluster["stacks"][release]["rest_url"]
    conn_id = make_connection(rest_url, users[0]["name"], auth_method="signing_key", signing_secret=signing_key_b64)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    # All six reach discovery at the same moment (imports done), as tasks of one fan-out may.
    at_once = (
        "import sys, time\nfrom airflow_provider_maxwell.hooks import maxwell\n"
        "time.sleep(max(0, float(sys.argv.pop()) - time.time()))\n"
    )
    start_at = str(time.time() + 15)
    started = [
        subprocess.Popen(
            [sys.executable, "-c", at_once + TASK, conn_id, start_at], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    runs = []
    for proc in started:
        out, _ = proc.communicate(timeout=300)
        runs.append(json.loads(out.strip().splitlines()[-1]))
    assert all(run["ok"] for run in runs), runs
    pings = list(reversed(SUPPORTED_VERSIONS)).index(runs[0]["version"]) + 1
    # Each process sends its diag; the pings are sent once for all of them.
    assert sorted(run["requests"] for run in runs) == [1] * 5 + [1 + pings], runs
