"""The token services stopped for a while: DESY's portal (emulated) and the Keycloak stand-in. A
short outage is ridden out by bounded retries; a long one ends in a clear error naming the service."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_maxwell.exceptions import MaxwellAuthError
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

from .test_faults import bring_back, stop_daemon


def connection(kind: str, cluster, users, make_connection, emulator) -> str:
    rest = cluster["stacks"]["s24"]["rest_url"]
    if kind == "portal":
        user = users[0]
        return make_connection(
            rest, user["name"], emulator.portal_token(user), auth_method="portal", portal_url=cluster["portal_url"]
        )
    user = users[1]
    return make_connection(
        rest, user["name"], user["password"], auth_method="keycloak", keycloak_url=cluster["idp_url"]
    )


@pytest.mark.parametrize(("kind", "daemon"), [("portal", "portal"), ("keycloak", "idp")])
def test_a_short_outage_is_ridden_out(kind, daemon, cluster, users, make_connection, emulator):
    conn_id = connection(kind, cluster, users, make_connection, emulator)
    # Backoff 1, 2, 4, 8, 16, 30, 30 s (+-20 %): at least 72 s of patience, far more than a restart
    # of the portal or the IdP takes on a loaded machine.
    hook = MaxwellHook(conn_id, retry_limit=8, retry_delay=1.0)
    stop_daemon(daemon)
    try:
        result: dict[str, object] = {}
        worker = threading.Thread(target=lambda: result.update(ok=hook.test_connection()))
        worker.start()
        time.sleep(4)  # the first attempts find nobody listening
    finally:
        bring_back()
    worker.join(timeout=180)
    ok, message = result["ok"]  # type: ignore[misc]
    assert ok, message


@pytest.mark.parametrize(("kind", "daemon"), [("portal", "portal"), ("keycloak", "idp")])
def test_a_long_outage_ends_in_a_clear_error(kind, daemon, cluster, users, make_connection, emulator):
    conn_id = connection(kind, cluster, users, make_connection, emulator)
    secret = MaxwellHook(conn_id).config.password
    stop_daemon(daemon)
    try:
        began = time.monotonic()
        with pytest.raises(MaxwellAuthError) as failure:
            MaxwellHook(conn_id, retry_limit=3, retry_delay=0.2).get_token()
        assert time.monotonic() - began < 30  # bounded: 3 attempts, not forever
    finally:
        bring_back()
    message = str(failure.value)
    assert "no answer from http://127.0.0.1:" in message and conn_id in message and "Check the URL" in message
    assert secret and secret not in message
