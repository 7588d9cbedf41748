"""How many HTTP requests and token mints 100 `get_job` calls cost, per auth method (not a test).

    .venv/bin/python benchmarks/get_job_requests.py      (needs `make cluster-up`)

Prints a table. The hook should mint one token and negotiate the version once per process and
connection, so 100 calls should cost about 100 requests to slurmrestd, plus a handful once.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

from local_maxwell import cluster_info, portal_token, users


def main() -> int:
    info = cluster_info()
    user, keycloak_user = users(info)[:2]
    from airflow_provider_maxwell.client.state import connection_state
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    stack = info["stacks"].get("s26") or next(iter(info["stacks"].values()))
    key = base64.b64encode(Path(info["jwt_key_file"]).read_bytes()).decode()
    methods = {
        "portal": {
            "password": portal_token(info, user),
            "extra": {"auth_method": "portal", "portal_url": info["portal_url"]},
        },
        "keycloak": {
            "password": keycloak_user["password"],
            "login": keycloak_user["name"],
            "extra": {"auth_method": "keycloak", "keycloak_url": info["idp_url"]},
        },
        "signing_key": {"extra": {"auth_method": "signing_key", "signing_secret": key}},
    }
    print(
        f"{'auth method':12} {'setup requests':>14} {'setup mints':>11} {'requests/100 get_job':>20} "
        f"{'mints/100 get_job':>17} {'ms/call':>8}"
    )
    for method, conn in methods.items():
        conn_id = f"maxwell_bench_{method}"
        login = conn.pop("login", user["name"])
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
            {"conn_type": "maxwell", "host": stack["rest_url"], "login": login, **conn}
        )
        hook = MaxwellHook(conn_id)
        state = connection_state(hook.config)
        job_id = hook.submit_job("#!/bin/bash\ntrue\n", name="bench", current_working_directory=info["jobs_dir"])
        # Setup: token mint (an HTTP exchange for portal and keycloak) and version discovery, besides the submit.
        setup_requests, setup_mints = state.requests_sent - 1, state.tokens.mints
        sent_before, mints_before = state.requests_sent, state.tokens.mints
        began = time.perf_counter()
        for _ in range(100):
            MaxwellHook(conn_id).get_job(job_id)
        elapsed = time.perf_counter() - began
        total = state.requests_sent - sent_before
        mints = state.tokens.mints - mints_before
        print(
            f"{method:12} {setup_requests:>14} {setup_mints:>11} {total:>20} {mints:>17} {1000 * elapsed / 100:>8.1f}"
        )
    print("setup: once per process and connection (token exchange + /openapi/v3); each hook instance reuses it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
