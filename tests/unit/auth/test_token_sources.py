"""The four token sources stepped by hand: what each asks of its service, what it makes of the answer,
and the error (naming the connection, the service and the fix) when it cannot get a token."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from airflow_provider_maxwell.auth.sources import CLI_API, KeycloakSource, token_source
from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import HttpCall, HttpResult, Send, TransportFailure
from airflow_provider_maxwell.exceptions import MaxwellAuthError, TokenServiceUnreachable

KEY = b"k" * 32
PORTAL_TOKEN = "portal-token-of-alice"
PORTAL = "https://portal.example/reservation"
TOKEN_URL = "https://kc.example/auth/realms/production/protocol/openid-connect/token"


def slurm_jwt(user: str = "alice", life: int = 600) -> str:
    now = int(time.time())
    return jwt.encode({"sun": user, "iat": now, "exp": now + life}, KEY, algorithm="HS256")


def config(method: str, password: str | None = PORTAL_TOKEN, **extra: Any) -> MaxwellConnectionConfig:
    return MaxwellConnectionConfig.from_connection(
        "conn1",
        host="https://rest.example/sapi",
        login="alice",
        password=password,
        extra={"auth_method": method, "portal_url": PORTAL, "keycloak_url": "https://kc.example/auth", **extra},
    )


def mint(source: Any, *replies: HttpResult | TransportFailure) -> tuple[MintedToken, list[HttpCall]]:
    """Run one mint, answering its requests in order; returns the token and the requests made."""
    calls: list[HttpCall] = []
    generator = source.mint()
    answers = list(replies)
    reply: Any = None
    try:
        while True:
            effect = generator.send(reply)
            assert isinstance(effect, Send), effect
            calls.append(effect.call)
            reply = answers.pop(0)
    except StopIteration as done:
        return done.value, calls


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResult:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResult(status, data, headers or {})


# ---------------------------------------------------------------- portal


def test_the_portal_is_asked_as_desys_tool_asks_it():
    token, (call,) = mint(token_source(config("portal", jwt_lifespan=3600)), answer(200, {"token": slurm_jwt()}))
    assert call.method == "GET" and call.url == f"{PORTAL}/get_new_slurm_token"
    assert call.params == {"cli_api": CLI_API, "lifespan": "3600", "stu": "alice"}
    assert call.basic_auth == ("alice", PORTAL_TOKEN)
    assert token.user == "alice" and token.lifetime == 600


@pytest.mark.parametrize(
    ("status", "fix"),
    [
        (401, "The portal token may be revoked or mistyped"),
        (403, "The portal token may be revoked or mistyped"),
        (400, "Check portal_url."),
        (500, "Check portal_url."),
    ],
)
def test_a_portal_refusal_names_the_status_the_connection_and_the_fix(status, fix):
    with pytest.raises(MaxwellAuthError) as failure:
        mint(token_source(config("portal")), answer(status, b"<html>no</html>"))
    message = str(failure.value)
    assert f"HTTP {status} from {PORTAL}/get_new_slurm_token" in message and fix in message
    assert (
        "'conn1'" in message
        and "auth_method=portal" in message
        and not isinstance(failure.value, TokenServiceUnreachable)
    )


@pytest.mark.parametrize("status", [300, 301, 302, 307, 399])
@pytest.mark.parametrize("name", ["Location", "location", "LOCATION"])
def test_a_portal_redirect_is_named_with_its_target_and_not_followed(status, name):
    with pytest.raises(MaxwellAuthError) as failure:
        mint(token_source(config("portal")), answer(status, b"", {name: "https://elsewhere.example/x"}))
    assert f"redirected (HTTP {status}) to 'https://elsewhere.example/x'" in str(failure.value)
    assert "extra.portal_url" in str(failure.value)


def test_no_answer_from_the_portal_is_the_retryable_kind_of_failure():
    with pytest.raises(TokenServiceUnreachable, match=f"no answer from {PORTAL}/get_new_slurm_token: refused"):
        mint(token_source(config("portal")), TransportFailure("refused", before_send=True))


def test_a_token_of_another_user_is_refused():
    with pytest.raises(MaxwellAuthError, match="belongs to user 'bob', but the connection's login is 'alice'"):
        mint(token_source(config("portal")), answer(200, {"token": slurm_jwt("bob")}))


# ---------------------------------------------------------------- static token and signing key


def test_a_static_token_is_used_as_it_is_until_it_expires():
    value = slurm_jwt()
    token, calls = mint(token_source(config("token", password=value)))
    assert token.value == value and calls == []
    expired = jwt.encode({"sun": "alice", "iat": 1_700_000_000, "exp": 1_700_003_600}, KEY, algorithm="HS256")
    with pytest.raises(MaxwellAuthError, match="expired at 2023-11-14 23:13:20 UTC"):
        mint(token_source(config("token", password=expired)))


def test_a_signing_key_signs_tokens_slurm_can_verify():
    import base64

    source = token_source(
        config("signing_key", password=None, signing_secret=base64.b64encode(KEY).decode(), jwt_lifespan=120)
    )
    token, calls = mint(source)
    claims = jwt.decode(token.value, KEY, algorithms=["HS256"])
    assert calls == [] and claims["sun"] == "alice" and claims["exp"] - claims["iat"] == 120


def test_a_signed_token_lives_an_hour_unless_the_connection_asks_for_longer():
    # Whoever reads the connection can mint tokens with it; an hour caps what one leaked token is worth.
    import base64

    key = base64.b64encode(KEY).decode()
    for extra, life in (({}, 3600), ({"jwt_lifespan": 86400}, 86400), ({"jwt_lifespan": 7200}, 7200)):
        token, _ = mint(token_source(config("signing_key", password=None, signing_secret=key, **extra)))
        claims = jwt.decode(token.value, KEY, algorithms=["HS256"])
        assert claims["exp"] - claims["iat"] == life, extra


# ---------------------------------------------------------------- Keycloak


def keycloak_answer(access: str, refresh: str | None = "refresh-1", refresh_in: float = 1800) -> HttpResult:
    body: dict[str, Any] = {"access_token": access, "expires_in": 300}
    if refresh:
        body |= {"refresh_token": refresh, "refresh_expires_in": refresh_in}
    return answer(200, body)


def test_keycloak_password_grant_then_refresh_grants_while_the_refresh_token_lives(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    source = token_source(config("keycloak", password="desy-password", keycloak_client_secret="client-secret"))
    assert isinstance(source, KeycloakSource)
    _, (first,) = mint(source, keycloak_answer(slurm_jwt()))
    assert first.url == TOKEN_URL and first.form == {
        "client_id": "desy-public",
        "client_secret": "client-secret",
        "grant_type": "password",
        "username": "alice",
        "password": "desy-password",
        "scope": "openid sun",
    }
    clock[0] = 1000 + 1800 - 5.5  # the refresh token has just over its 5 s of slack left
    _, (second,) = mint(source, keycloak_answer(slurm_jwt(), refresh="refresh-2"))
    assert second.form["grant_type"] == "refresh_token" and second.form["refresh_token"] == "refresh-1"
    clock[0] += 1800 - 4.5  # within 5 s of the new refresh token's end: the password again
    _, (third,) = mint(source, keycloak_answer(slurm_jwt()))
    assert third.form["grant_type"] == "password"


def test_a_refused_refresh_falls_back_to_the_password(monkeypatch):
    source = token_source(config("keycloak", password="desy-password"))
    mint(source, keycloak_answer(slurm_jwt()))
    token, calls = mint(source, answer(400, {"error": "invalid_grant"}), keycloak_answer(slurm_jwt(), refresh=None))
    assert [c.form["grant_type"] for c in calls] == ["refresh_token", "password"]
    assert source.secrets(token) == [token.value]  # no refresh token any more


def test_the_refresh_token_is_masked_with_the_access_token():
    source = token_source(config("keycloak", password="desy-password"))
    token, _ = mint(source, keycloak_answer(slurm_jwt(), refresh="refresh-secret"))
    assert source.secrets(token) == [token.value, "refresh-secret"]


def test_a_keycloak_refusal_names_the_realm_url_and_the_fix():
    with pytest.raises(MaxwellAuthError) as failure:
        mint(token_source(config("keycloak", password="wrong")), answer(401, {"error": "invalid_grant"}))
    assert f"HTTP 401 from {TOKEN_URL}" in str(failure.value) and "Check the user's password" in str(failure.value)
    assert "wrong" not in str(failure.value).replace("wrong)", "")


# ---------------------------------------------------------------- each message in full (issue 18)

PORTAL_CALL = f"{PORTAL}/get_new_slurm_token"


def refused(source: Any, *replies: HttpResult | TransportFailure) -> MaxwellAuthError:
    with pytest.raises(MaxwellAuthError) as failure:
        mint(source, *replies)
    return failure.value


def test_a_portal_refusal_reads_in_full_quoting_the_answer_on_one_line_without_secrets():
    body = f"Access   denied\n for {PORTAL_TOKEN}: " + "no " * 100
    error = refused(token_source(config("portal")), answer(401, body.encode()))
    assert str(error) == (
        "DESY's portal refused a Slurm token for connection 'conn1' (auth_method=portal): HTTP 401 from "
        f"{PORTAL_CALL}: {('Access denied for ***: ' + 'no ' * 100)[:200]!r}. The portal token may be revoked or "
        "mistyped: make a new one (maxwell-connection --help) and store it as the connection's password."
    )


def test_a_portal_redirect_reads_in_full():
    error = refused(token_source(config("portal")), answer(302, b"", {"Location": "https://sso.example/login"}))
    assert str(error) == (
        f"DESY's portal refused a Slurm token for connection 'conn1' (auth_method=portal): {PORTAL_CALL} "
        "redirected (HTTP 302) to 'https://sso.example/login'; credentials are not sent on. Set extra.portal_url "
        "(by default the host's origin + /reservation) to the final URL."
    )
    without = refused(token_source(config("portal")), answer(399, b""))
    assert "redirected (HTTP 399) to None;" in str(without)
    assert "HTTP 400 from" in str(refused(token_source(config("portal")), answer(400, b"")))  # 400 is no redirect


def test_no_answer_from_the_portal_reads_in_full():
    with pytest.raises(TokenServiceUnreachable) as failure:
        mint(token_source(config("portal")), TransportFailure("connection refused", before_send=True))
    assert str(failure.value) == (
        f"DESY's portal refused a Slurm token for connection 'conn1' (auth_method=portal): no answer from "
        f"{PORTAL_CALL}: connection refused. Check the URL and the network."
    )


@pytest.mark.parametrize("body", [b"<html>login</html>", b'{"tok": "x"}', b"[1]", b'"token"'])
def test_a_portal_answer_without_a_token_reads_in_full(body):
    error = refused(token_source(config("portal")), answer(200, body))
    assert str(error) == (
        f"DESY's portal answered without a token for connection 'conn1' (HTTP 200 from {PORTAL_CALL}, "
        f'{len(body)} bytes that are not {{"token": ...}}). Check portal_url.'
    )


def test_a_portal_token_no_header_can_carry_is_refused_without_quoting_it():
    error = refused(token_source(config("portal")), answer(200, {"token": "two words"}))
    assert str(error) == (
        f"DESY's portal token for connection 'conn1' (auth_method=portal) from {PORTAL_CALL} is unusable: "
        "not a token (a str of 9 characters). Check extra.portal_url (by default the host's origin + /reservation)."
    )


def test_a_portal_token_without_exp_lives_the_connections_lifespan(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    token, _ = mint(token_source(config("portal", jwt_lifespan=3600)), answer(200, {"token": "opaque"}))
    assert (token.issued_at, token.expires_at, token.user) == (5000.0, 8600.0, None)


def test_a_token_of_another_user_reads_in_full():
    error = refused(token_source(config("portal")), answer(200, {"token": slurm_jwt("bob")}))
    assert str(error) == (
        "the portal's token for connection 'conn1' belongs to user 'bob', but the connection's login is 'alice': "
        "set the login to the token's user, or use that user's credentials"
    )


def test_a_static_token_without_a_user_is_taken_and_one_of_another_user_refused_in_full():
    mine = jwt.encode({"exp": int(time.time()) + 600}, KEY, algorithm="HS256")
    token, _ = mint(token_source(config("token", password=mine)))
    assert token.value == mine and token.user is None
    error = refused(token_source(config("token", password=slurm_jwt("bob"))))
    assert str(error).startswith("the Slurm token in the password field for connection 'conn1' belongs to user 'bob'")


def test_a_static_token_expiring_this_second_is_refused_in_full(monkeypatch):
    value = jwt.encode({"sun": "alice", "exp": 1_700_003_600}, KEY, algorithm="HS256")
    monkeypatch.setattr(time, "time", lambda: 1_700_003_599.5)
    assert mint(token_source(config("token", password=value)))[0].value == value
    monkeypatch.setattr(time, "time", lambda: 1_700_003_600.0)
    assert str(refused(token_source(config("token", password=value)))) == (
        "the Slurm token in connection 'conn1' expired at 2023-11-14 23:13:20 UTC: put a new one in its password "
        "field, or use auth_method 'portal' so tokens are renewed for you"
    )


def test_a_static_token_that_is_no_token_reads_in_full():
    assert str(refused(token_source(config("token", password="not a jwt")))) == (
        "the Slurm token in connection 'conn1' is unusable: not a token (a str of 9 characters). Put a token from "
        "slurm_token (or scontrol token) in its password field"
    )


def test_a_signed_token_lives_the_connections_lifespan_from_now(monkeypatch):
    import base64

    monkeypatch.setattr(time, "time", lambda: 5000.7)
    source = token_source(
        config("signing_key", password=None, signing_secret=base64.b64encode(KEY).decode(), jwt_lifespan=120)
    )
    token, _ = mint(source)
    assert jwt.decode(token.value, KEY, algorithms=["HS256"], options={"verify_exp": False}) == {
        "sun": "alice",
        "iat": 5000,
        "exp": 5120,
    }
    assert (token.issued_at, token.expires_at) == (5000, 5120)
    assert source.secrets(token) == [token.value]


def test_keycloak_asks_its_realms_token_endpoint_without_a_client_secret_unless_set():
    source = token_source(config("keycloak", password="pw", keycloak_realm="r1", keycloak_scope="openid"))
    assert isinstance(source, KeycloakSource)
    assert source.token_url == "https://kc.example/auth/realms/r1/protocol/openid-connect/token"
    _, (call,) = mint(source, keycloak_answer(slurm_jwt()))
    assert call.method == "POST" and call.form == {
        "client_id": "desy-public",
        "grant_type": "password",
        "username": "alice",
        "password": "pw",
        "scope": "openid",
    }


def test_keycloaks_expires_in_times_an_access_token_without_exp(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    source = token_source(config("keycloak", password="pw"))
    token, _ = mint(source, answer(200, {"access_token": "opaque", "expires_in": 60}))
    assert (token.issued_at, token.expires_at) == (5000.0, 5060.0)
    token, calls = mint(source, answer(200, {"access_token": "opaque"}))  # no refresh token kept: password again
    assert token.expires_at == 5300.0 and calls[0].form["grant_type"] == "password"


def test_a_refresh_token_without_its_lifetime_is_not_used(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    source = token_source(config("keycloak", password="pw"))
    mint(source, answer(200, {"access_token": slurm_jwt(), "refresh_token": "r"}))
    _, (call,) = mint(source, keycloak_answer(slurm_jwt()))
    assert call.form["grant_type"] == "password"


def test_a_keycloak_refusal_reads_in_full():
    error = refused(token_source(config("keycloak", password="pw")), answer(401, {"error": "invalid_grant"}))
    assert str(error) == (
        "Keycloak refused a token for connection 'conn1' (auth_method=keycloak): HTTP 401 from "
        f"{TOKEN_URL}: 'error: invalid_grant'. Check the user's password and "
        "keycloak_url/keycloak_realm/keycloak_client_id."
    )
    redirect = refused(token_source(config("keycloak", password="pw")), answer(303, b"", {"location": "/x"}))
    assert "Set extra.keycloak_url to the final URL." in str(redirect)


@pytest.mark.parametrize(
    "body",
    [
        {"token": "x"},
        {"access_token": "a", "expires_in": True},
        {"access_token": "a", "expires_in": -1},
        {"access_token": "a", "expires_in": 366 * 86400 + 1},
        {"access_token": "a", "refresh_expires_in": "1800"},
        [],
    ],
    ids=["no access token", "bool lifetime", "negative lifetime", "lifetime over a year", "text lifetime", "list"],
)
def test_a_keycloak_answer_of_another_shape_reads_in_full(body):
    data = json.dumps(body).encode()
    error = refused(token_source(config("keycloak", password="pw")), answer(200, data))
    assert str(error) == (
        f"Keycloak answered without an access token for connection 'conn1' (HTTP 200 from {TOKEN_URL}, "
        f"{len(data)} bytes of another shape). Check keycloak_url."
    )


def test_a_keycloak_lifetime_of_a_year_and_a_day_is_believed(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    token, _ = mint(
        token_source(config("keycloak", password="pw")),
        answer(200, {"access_token": "opaque", "expires_in": 366 * 86400}),
    )
    assert token.expires_at == 5000.0 + 366 * 86400


def test_an_unusable_keycloak_access_token_and_one_of_another_user_read_in_full():
    error = refused(token_source(config("keycloak", password="pw")), answer(200, {"access_token": ""}))
    assert str(error) == (
        f"Keycloak's access token for connection 'conn1' (auth_method=keycloak) from {TOKEN_URL} is unusable: "
        "not a token (a str of 0 characters). Check extra.keycloak_url."
    )
    error = refused(token_source(config("keycloak", password="pw")), keycloak_answer(slurm_jwt("bob")))
    assert str(error).startswith("Keycloak's access token (claim sun) for connection 'conn1' belongs to user 'bob'")


def test_a_refresh_token_with_exactly_five_seconds_left_is_not_used(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    source = token_source(config("keycloak", password="pw"))
    mint(source, keycloak_answer(slurm_jwt(), refresh_in=1800))
    clock[0] = 1000 + 1800 - 5  # it may expire while the request travels: the password instead
    _, (call,) = mint(source, keycloak_answer(slurm_jwt()))
    assert call.form["grant_type"] == "password"


def test_a_keycloak_lifetime_of_zero_is_a_lifetime_and_a_refresh_token_that_is_no_text_is_not_kept(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    source = token_source(config("keycloak", password="pw"))
    token, _ = mint(
        source,
        answer(200, {"access_token": "opaque", "expires_in": 0, "refresh_token": 12345, "refresh_expires_in": 0}),
    )
    assert (token.issued_at, token.expires_at) == (5000.0, 5000.0) and source.secrets(token) == ["opaque"]
    _, (call,) = mint(source, keycloak_answer(slurm_jwt()))
    assert call.form["grant_type"] == "password"
