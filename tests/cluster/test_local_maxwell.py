"""The local Maxwell itself, exercised with raw HTTP as a curl user would: if these fail, nothing
built on it can be trusted."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from typing import Any

import jwt
import pytest
import requests

IDP_TOKEN_PATH = "/realms/production/protocol/openid-connect/token"


def headers(user: str, token: str) -> dict[str, str]:
    return {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token}


def submit_raw(base: str, version: str, hdrs: dict[str, str], jobs_dir: str, script: str) -> int:
    """Submit with the body shape each version wants, as DESY's page shows for v0.0.40."""
    if version == "v0.0.38":
        body: dict[str, Any] = {
            "job": {"name": "raw", "current_working_directory": jobs_dir, "environment": {"PATH": "/usr/bin:/bin"}},
            "script": script,
        }
    else:
        body = {
            "job": {
                "name": "raw",
                "current_working_directory": jobs_dir,
                "environment": ["PATH=/usr/bin:/bin"],
                "script": script,
            }
        }
    answer = requests.post(f"{base}/slurm/{version}/job/submit", json=body, headers=hdrs, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["errors"] == []
    return int(answer.json()["job_id"])


def wait_accounting_state(base: str, version: str, hdrs: dict[str, str], job_id: int, timeout: float = 60) -> str:
    """Poll /slurmdb until the job has a terminal state there; returns that base state."""
    deadline = time.monotonic() + timeout
    state = "not in accounting"
    while time.monotonic() < deadline:
        answer = requests.get(f"{base}/slurmdb/{version}/job/{job_id}", headers=hdrs, timeout=30)
        jobs = answer.json().get("jobs") or []
        if jobs:
            current = jobs[0]["state"]["current"]
            state = current if isinstance(current, str) else current[0]
            if state not in ("PENDING", "RUNNING"):
                return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {state} in slurmdb after {timeout} s")


def test_each_release_lists_its_api_versions_on_openapi_v3(stack, mint_slurm_token, users):
    user = users[0]["name"]
    unauthenticated = requests.get(f"{stack['rest_url']}/openapi/v3", timeout=30)
    assert unauthenticated.status_code == 401
    answer = requests.get(f"{stack['rest_url']}/openapi/v3", headers=headers(user, mint_slurm_token(user)), timeout=30)
    assert answer.status_code == 200
    served = {m.group(2) for p in answer.json()["paths"] if (m := re.match(r"^/slurm(db)?/(v0\.0\.\d+)/", p))}
    assert set(stack["api_versions"]) <= served, f"{stack['name']} serves {sorted(served)}"


def test_raw_job_reaches_completed_in_slurmdb(stack, mint_slurm_token, users, cluster):
    user = users[0]["name"]
    hdrs = headers(user, mint_slurm_token(user))
    version = stack["api_versions"][-1]
    job_id = submit_raw(stack["rest_url"], version, hdrs, cluster["jobs_dir"], "#!/bin/bash\necho raw $(whoami)\n")
    assert wait_accounting_state(stack["rest_url"], version, hdrs, job_id) == "COMPLETED"


def test_job_runs_as_the_token_user_and_writes_to_the_shared_jobs_dir(stack, mint_slurm_token, users, cluster):
    user = users[1]["name"]
    hdrs = headers(user, mint_slurm_token(user))
    version = stack["api_versions"][-1]
    marker = f"whoami-{stack['name']}-{time.time_ns()}"
    script = f"#!/bin/bash\nwhoami > {cluster['jobs_dir']}/{marker}\n"
    job_id = submit_raw(stack["rest_url"], version, hdrs, cluster["jobs_dir"], script)
    assert wait_accounting_state(stack["rest_url"], version, hdrs, job_id) == "COMPLETED"
    with open(f"{cluster['jobs_dir']}/{marker}") as f:
        assert f.read().strip() == user


def test_token_signed_with_another_key_is_refused(stack, users):
    user = users[0]["name"]
    now = int(time.time())
    forged = jwt.encode({"sun": user, "iat": now, "exp": now + 600}, b"x" * 32, algorithm="HS256")
    version = stack["api_versions"][-1]
    answer = requests.get(f"{stack['rest_url']}/slurm/{version}/jobs", headers=headers(user, forged), timeout=30)
    # Slurm answers a bad token on /slurm with 500 (22.05), 511 (24.11, 26.05) or 401 (as 25.11's
    # source reads), never with the jobs; not with a 404 or a 403 either.
    assert answer.status_code in (401, 500, 511), answer.text[:300]
    assert not answer.json().get("jobs")


# ------------------------------------------------------------------ DESY's portal, emulated


def portal_get(cluster: dict[str, Any], path: str, user: str, secret: str, **params: Any) -> requests.Response:
    return requests.get(
        f"{cluster['portal_url']}/{path}", params={"cli_api": "4.6.0", **params}, auth=(user, secret), timeout=30
    )


def new_portal_token(cluster: dict[str, Any], user: dict[str, Any]) -> str:
    answer = portal_get(cluster, "get_new_token", user["name"], user["password"])
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    return answer.text.strip()


def test_portal_mints_slurm_tokens_labelled_text_html(cluster, users, stack):
    user = users[0]
    portal_token = new_portal_token(cluster, user)
    answer = portal_get(cluster, "get_new_slurm_token", user["name"], portal_token, lifespan=120, stu=user["name"])
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")  # JSON body, HTML label: the real quirk
    token = answer.json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sun"] == user["name"] and claims["exp"] - claims["iat"] == 120
    version = stack["api_versions"][-1]
    jobs = requests.get(f"{stack['rest_url']}/slurm/{version}/jobs", headers=headers(user["name"], token), timeout=30)
    assert jobs.status_code == 200


def test_portal_caps_lifespan_at_a_day(cluster, users):
    user = users[0]
    token = portal_get(
        cluster, "get_new_slurm_token", user["name"], new_portal_token(cluster, user), lifespan=999999, stu=user["name"]
    ).json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 86400


def test_portal_refuses_bad_password_bad_token_revoked_token_and_other_users(cluster, users):
    # users[2]: revoking users[0]'s tokens would break the portal connections in connections.env.
    alice, bob = users[2], users[1]
    assert portal_get(cluster, "get_new_token", alice["name"], "wrong").status_code == 401
    assert (
        portal_get(cluster, "get_new_slurm_token", alice["name"], "not-a-portal-token", stu=alice["name"]).status_code
        == 401
    )
    token = new_portal_token(cluster, alice)
    assert portal_get(cluster, "get_new_slurm_token", alice["name"], token, stu=bob["name"]).status_code == 403
    # Bob's own portal token does not work for Alice either.
    assert portal_get(cluster, "get_new_slurm_token", alice["name"], new_portal_token(cluster, bob)).status_code == 401
    # Revocation drops every portal token of that user at once.
    assert portal_get(cluster, "get_new_slurm_token", alice["name"], token, stu=alice["name"]).status_code == 200
    assert (
        requests.post(
            f"{cluster['portal_url'].rsplit('/', 1)[0]}/_emulator/revoke", params={"user": alice["name"]}, timeout=30
        ).json()["revoked"]
        >= 1
    )
    assert portal_get(cluster, "get_new_slurm_token", alice["name"], token, stu=alice["name"]).status_code == 401


def test_portal_counts_mints_for_tests(cluster, users):
    user = users[2]
    stats_url = f"{cluster['portal_url'].rsplit('/', 1)[0]}/_emulator/stats"
    before = requests.get(stats_url, timeout=30).json()["slurm_tokens_minted"].get(user["name"], 0)
    token = new_portal_token(cluster, user)
    for _ in range(3):
        portal_get(cluster, "get_new_slurm_token", user["name"], token, stu=user["name"], lifespan=60)
    after = requests.get(stats_url, timeout=30).json()["slurm_tokens_minted"][user["name"]]
    assert after - before == 3


# ------------------------------------------------------------------ the Keycloak stand-in


def idp_password_grant(cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(
        f"{cluster['idp_url']}{IDP_TOKEN_PATH}",
        timeout=30,
        data={
            "grant_type": "password",
            "client_id": "desy-public",
            "username": user["name"],
            "password": user["password"],
            "scope": "openid sun",
        },
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_idp_answers_like_keycloak(cluster, users):
    tokens = idp_password_grant(cluster, users[1])
    assert {"access_token", "refresh_token", "expires_in", "refresh_expires_in"} <= tokens.keys()
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "RS256" and header["kid"]
    certs = requests.get(f"{cluster['idp_url']}/realms/production/protocol/openid-connect/certs", timeout=30).json()
    key = jwt.PyJWK(next(k for k in certs["keys"] if k["kid"] == header["kid"]))
    claims = jwt.decode(tokens["access_token"], key.key, algorithms=["RS256"], options={"verify_aud": False})
    assert claims["sun"] == users[1]["name"]
    refreshed = requests.post(
        f"{cluster['idp_url']}{IDP_TOKEN_PATH}",
        timeout=30,
        data={"grant_type": "refresh_token", "client_id": "desy-public", "refresh_token": tokens["refresh_token"]},
    )
    assert refreshed.status_code == 200 and refreshed.json()["access_token"]
    wrong = requests.post(
        f"{cluster['idp_url']}{IDP_TOKEN_PATH}",
        timeout=30,
        data={"grant_type": "password", "client_id": "desy-public", "username": users[1]["name"], "password": "wrong"},
    )
    assert wrong.status_code in (400, 401)


def test_idp_access_token_is_accepted_by_slurmctld_and_slurmdbd(cluster, users, stack):
    user = users[1]
    access = idp_password_grant(cluster, user)["access_token"]
    hdrs = headers(user["name"], access)
    version = stack["api_versions"][-1]
    job_id = submit_raw(stack["rest_url"], version, hdrs, cluster["jobs_dir"], "#!/bin/bash\ntrue\n")
    assert wait_accounting_state(stack["rest_url"], version, hdrs, job_id) == "COMPLETED"


# ------------------------------------------------------------------ the HTTPS front door


def test_front_door_serves_slurm_and_portal_over_tls_with_the_local_ca(cluster, users, mint_slurm_token):
    user = users[0]
    door, ca = cluster["front_door"], cluster["ca_bundle"]
    ping = requests.get(
        f"{door}/sapi/slurm/v0.0.44/ping",
        headers=headers(user["name"], mint_slurm_token(user["name"])),
        verify=ca,
        timeout=30,
    )
    assert ping.status_code == 200 and ping.json()["meta"]["slurm"]["release"].startswith("26.05")
    portal = requests.get(
        f"{door}/reservation/get_new_token",
        params={"cli_api": "4.6.0"},
        auth=(user["name"], user["password"]),
        verify=ca,
        timeout=30,
    )
    assert portal.status_code == 200 and portal.text
    # The emulator's test controls are not reachable through the front door.
    assert requests.get(f"{door}/_emulator/stats", verify=ca, timeout=30).status_code == 404


def test_front_door_is_refused_by_a_client_that_does_not_trust_the_local_ca(cluster):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{cluster['front_door']}/sapi/openapi/v3", timeout=30)
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{cluster['front_door']}/sapi/openapi/v3", timeout=30)
    # Plain HTTP on the TLS port is refused too: nothing travels in clear text through the door.
    plain = requests.get(cluster["front_door"].replace("https://", "http://") + "/sapi/openapi/v3", timeout=30)
    assert plain.status_code == 400
