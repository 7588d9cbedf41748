"""Every auth method for real: tokens minted, renewed before they expire, refused clearly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from airflow_provider_maxwell.client.state import connection_state
from airflow_provider_maxwell.exceptions import MaxwellAuthError, MaxwellConfigError, SlurmApiError
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

from .conftest import grants


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def newest(cluster: dict[str, Any]) -> str:
    return (
        cluster["stacks"]["s26"]["rest_url"]
        if "s26" in cluster["stacks"]
        else next(iter(cluster["stacks"].values()))["rest_url"]
    )


def test_portal_tokens_are_renewed_before_they_expire(cluster, users, make_connection, emulator):
    user = users[0]
    conn_id = make_connection(
        newest(cluster),
        user["name"],
        portal_token := emulator.portal_token(user),
        auth_method="portal",
        portal_url=cluster["portal_url"],
        jwt_lifespan=10,
    )
    hook = MaxwellHook(conn_id)
    first = hook.get_token()
    assert claims(first)["exp"] - claims(first)["iat"] == 10 and claims(first)["sun"] == user["name"]
    assert hook.get_token() == first  # cached: no second mint while fresh
    assert emulator.mints_for(portal_token) == 1
    # Renewal is due 1 s (10 % of 10 s) before expiry: past that, a call mints anew and still works.
    time.sleep(claims(first)["exp"] - time.time() - 0.5)
    ok, message = hook.test_connection()
    assert ok, message
    assert hook.get_token() != first
    assert emulator.mints_for(portal_token) == 2


def test_revoked_portal_token_fails_with_a_clear_error(cluster, users, make_connection, emulator):
    user = users[2]
    conn_id = make_connection(
        newest(cluster),
        user["name"],
        emulator.portal_token(user),
        auth_method="portal",
        portal_url=cluster["portal_url"],
    )
    emulator.revoke(user["name"])
    with pytest.raises(MaxwellAuthError) as failure:
        MaxwellHook(conn_id).get_token()
    message = str(failure.value)
    assert "HTTP 401" in message and "revoked" in message and conn_id in message


def test_portal_through_the_front_door_needs_the_local_ca(cluster, users, make_connection, emulator):
    user = users[0]
    token = emulator.portal_token(user)
    trusted = make_connection(f"{cluster['front_door']}/sapi", user["name"], token, verify=cluster["ca_bundle"])
    ok, message = MaxwellHook(trusted).test_connection()
    assert ok and "Slurm 26.05" in message, message
    untrusted = make_connection(f"{cluster['front_door']}/sapi", user["name"], token)
    ok, message = MaxwellHook(untrusted).test_connection()
    assert not ok and "TLS verification failed" in message


def test_static_token_and_signing_key(cluster, users, make_connection, mint_slurm_token, signing_key_b64):
    user = users[0]["name"]
    static = make_connection(newest(cluster), user, mint_slurm_token(user, 600), auth_method="token")
    assert MaxwellHook(static).test_connection()[0]
    signed = make_connection(
        newest(cluster), user, auth_method="signing_key", signing_secret=signing_key_b64, jwt_lifespan=3600
    )
    hook = MaxwellHook(signed)
    assert hook.test_connection()[0]
    assert claims(hook.get_token())["sun"] == user and claims(hook.get_token())["exp"] - time.time() > 3500


def test_expired_static_token_is_refused_before_any_request(cluster, users, make_connection, mint_slurm_token):
    user = users[0]["name"]
    conn_id = make_connection(newest(cluster), user, mint_slurm_token(user, -60), auth_method="token")
    hook = MaxwellHook(conn_id)
    with pytest.raises(MaxwellAuthError, match="expired"):
        hook.submit_job("#!/bin/bash\ntrue\n")
    assert hook.state.requests_sent == 0


def test_token_of_another_user_is_refused_before_any_request(cluster, users, make_connection, mint_slurm_token):
    # Slurm acts as the token's user whatever X-SLURM-USER-NAME says (measured on 26.05): the hook
    # refuses the mismatch itself.
    other = mint_slurm_token(users[1]["name"], 600)
    conn_id = make_connection(newest(cluster), users[0]["name"], other, auth_method="token")
    hook = MaxwellHook(conn_id)
    with pytest.raises(MaxwellAuthError) as failure:
        hook.get_job(1)
    assert users[1]["name"] in str(failure.value) and "login" in str(failure.value)
    assert other not in str(failure.value)
    assert hook.state.requests_sent == 0


def test_token_refused_by_slurm_fails_after_one_renewal(cluster, users, make_connection):
    user = users[0]["name"]
    now = int(time.time())
    forged = jwt.encode({"sun": user, "iat": now, "exp": now + 600}, b"k" * 32, algorithm="HS256")
    conn_id = make_connection(newest(cluster), user, forged, auth_method="token")
    hook = MaxwellHook(conn_id, retry_limit=2)
    ok, message = hook.test_connection()
    assert not ok
    assert "auth_method=token" in message and "HTTP" in message and newest(cluster) in message
    assert forged not in message
    assert connection_state(hook.config).tokens.mints == 2  # the first token, then exactly one renewal


def test_invalid_connection_names_connection_field_and_fix(cluster, users, make_connection):
    conn_id = make_connection(newest(cluster), users[0]["name"], "x", auth_method="kerberos")
    with pytest.raises(MaxwellConfigError) as failure:
        MaxwellHook(conn_id).get_token()
    assert conn_id in str(failure.value) and "auth_method" in str(failure.value) and "portal" in str(failure.value)


# ------------------------------------------------------------------ Keycloak, with short lifetimes


@pytest.fixture
def short_lived_idp(start_idp):
    """A second IdP instance with 3 s access / 20 s refresh tokens (the hook refreshes only while the
    refresh token has 5 s left: the test keeps 10 s of margin on either side of that)."""
    return start_idp(access=3, refresh=20)


def test_keycloak_refreshes_then_falls_back_to_password(cluster, users, make_connection, short_lived_idp):
    user = users[1]
    conn_id = make_connection(
        newest(cluster), user["name"], user["password"], auth_method="keycloak", keycloak_url=f"{short_lived_idp}/auth"
    )
    hook = MaxwellHook(conn_id)
    assert hook.test_connection()[0]
    assert grants(short_lived_idp) == {"password": 1}
    # The access token (3 s) is due for renewal while the refresh token (20 s) lives: refresh grant.
    time.sleep(3.3)
    assert hook.test_connection()[0]
    assert grants(short_lived_idp) == {"password": 1, "refresh_token": 1}
    # Past the refresh token's usable life (20 s less 5 s of slack): a new password grant, and Slurm
    # accepts the result.
    time.sleep(16)
    ok, message = hook.test_connection()
    assert ok, message
    assert grants(short_lived_idp) == {"password": 2, "refresh_token": 1}


def test_keycloak_wrong_password_is_a_clear_auth_error(cluster, users, make_connection):
    conn_id = make_connection(
        newest(cluster), users[1]["name"], "not-the-password", auth_method="keycloak", keycloak_url=cluster["idp_url"]
    )
    with pytest.raises(MaxwellAuthError) as failure:
        MaxwellHook(conn_id).get_token()
    assert "Keycloak refused" in str(failure.value) and "not-the-password" not in str(failure.value)


def test_one_token_for_many_concurrent_async_callers(cluster, users, make_connection, emulator):
    user = users[0]
    conn_id = make_connection(
        newest(cluster),
        user["name"],
        portal_token := emulator.portal_token(user),
        auth_method="portal",
        portal_url=cluster["portal_url"],
    )

    async def many() -> set[str]:
        async def token(hook: MaxwellHook) -> str:
            client = await hook.aclient()
            return (await client.arun(client.ops.token())).value

        return set(await asyncio.gather(*(token(MaxwellHook(conn_id)) for _ in range(200))))

    assert len(asyncio.run(many())) == 1
    assert emulator.mints_for(portal_token) == 1
    assert connection_state(MaxwellHook(conn_id).config).tokens.mints == 1


def test_a_redirect_to_another_origin_gets_no_credentials(cluster, users, make_connection, emulator, mint_slurm_token):
    # The front door's plain-HTTP port sends every request to HTTPS (a real nginx, as public sites do):
    # another origin, so neither the portal token nor a Slurm token may follow the redirect there.
    user = users[0]
    door = Path(cluster["front_door_log"])
    seen_before = door.read_text().count("\n") if door.exists() else 0
    host = f"{cluster['plain_http_front_door']}/sapi"
    portal = make_connection(host, user["name"], emulator.portal_token(user), auth_method="portal")
    with pytest.raises(MaxwellAuthError, match=r"redirected \(HTTP 301\) to 'https://127\.0\.0\.1:\d+/reservation/"):
        MaxwellHook(portal).get_token()
    keycloak = make_connection(
        host, user["name"], user["password"], auth_method="keycloak", keycloak_url=f"{host[:-5]}/auth"
    )
    with pytest.raises(MaxwellAuthError, match=r"redirected \(HTTP 301\) to 'https://.*Set extra.keycloak_url"):
        MaxwellHook(keycloak).get_token()
    static = make_connection(host, user["name"], mint_slurm_token(user["name"], 600), auth_method="token")
    with pytest.raises(SlurmApiError, match=r"redirected to 'https://127\.0\.0\.1:\d+/sapi/"):
        MaxwellHook(static, retry_limit=1).get_job(1)
    assert (door.read_text().count("\n") if door.exists() else 0) == seen_before  # HTTPS never asked
