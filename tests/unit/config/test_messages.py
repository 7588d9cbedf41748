"""A Maxwell connection is read as the README says, and every refusal reads in full as the user will see
it: the connection, the field, what is wrong and the fix. Also what the hook reads from a token's claims.
(Issue 18: these pin the exact texts and edges mutation testing found unasserted.)"""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import pytest

from airflow_provider_maxwell.auth.tokens import MAX_TOKEN_LIFE, UnusableToken, token_from_jwt
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import MaxwellConfigError

KEY_16 = base64.b64encode(b"0123456789abcdef").decode()


def read(
    *, host: str = "https://rest.example/sapi", login: str = "alice", password: str | None = "pt", **extra: Any
) -> MaxwellConnectionConfig:
    return MaxwellConnectionConfig.from_connection("c", host=host, login=login, password=password, extra=extra)


def refusal(**kw: Any) -> str:
    with pytest.raises(MaxwellConfigError) as failure:
        read(**kw)
    return str(failure.value)


# ---------------------------------------------------------------- what is read


def test_form_fields_prefixed_by_airflows_ui_are_read_as_their_names():
    config = MaxwellConnectionConfig.from_connection(
        "c",
        host="https://rest.example/sapi",
        login="alice",
        password="tok",
        extra={"extra__maxwell__auth_method": "token", "extra__maxwell__timeout": "12.5"},
    )
    assert (config.auth_method, config.timeout) == ("token", 12.5)


def test_trailing_slashes_are_dropped_from_every_url():
    config = read(
        host=" https://rest.example/sapi/ ",
        portal_url="https://portal.example/reservation/",
        keycloak_url="https://kc.example/auth/",
    )
    assert (config.host, config.portal_url, config.keycloak_url) == (
        "https://rest.example/sapi",
        "https://portal.example/reservation",
        "https://kc.example/auth",
    )


def test_the_portal_defaults_to_the_hosts_origin_and_reservation():
    assert read(host="https://rest.example:8080/sapi/").portal_url == "https://rest.example:8080/reservation"
    assert read(host="http://127.0.0.1:8080/sapi/").portal_url == "http://127.0.0.1:8080/reservation"


def test_a_signing_key_is_decoded_from_base64_and_16_bytes_are_enough():
    config = read(password=None, auth_method="signing_key", signing_secret=KEY_16)
    assert config.signing_key == b"0123456789abcdef"
    assert config.secret_texts == [KEY_16, "0123456789abcdef"]  # masked as given and as raw text


def test_other_settings_are_taken_as_given():
    config = read(
        auth_method="keycloak",
        keycloak_realm="r",
        keycloak_client_id="cid",
        keycloak_client_secret="cs",
        keycloak_scope="openid",
        api_version="v0.0.41",
        jwt_lifespan="3600",
        timeout=0.5,
    )
    assert (config.keycloak_realm, config.keycloak_client_id, config.keycloak_client_secret) == ("r", "cid", "cs")
    assert (config.keycloak_scope, config.api_version, config.token_lifespan, config.timeout) == (
        "openid",
        "v0.0.41",
        3600,
        0.5,
    )
    # and the HTTP Basic form of login:password, which an echoing server may quote back
    assert config.secret_texts == ["pt", "cs", base64.b64encode(b"alice:pt").decode()]


@pytest.mark.parametrize("lifespan", [10, 86400])
def test_token_lifespans_at_the_limits_are_accepted(lifespan):
    assert read(jwt_lifespan=lifespan).token_lifespan == lifespan


def test_the_timeout_may_be_an_hour_but_not_more():
    assert read(timeout=3600).timeout == 3600.0
    assert refusal(timeout=3600.5) == (
        "Maxwell connection 'c': extra.timeout is 3600.5. Give a number of seconds above 0, at most 3600"
    )


def test_settings_that_differ_in_any_field_have_different_fingerprints():
    base = read()
    assert base.fingerprint == read().fingerprint
    assert base.fingerprint != read(password="other").fingerprint
    assert base.fingerprint != read(timeout=31).fingerprint


# ---------------------------------------------------------------- refusals, word for word

PREFIX = "Maxwell connection 'c': "


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"auth_metod": "portal"},
            "extra has unknown keys ['auth_metod']. Known keys: allow_plain_http, api_version, auth_method, "
            "ca_bundle, job_url_template, jwt_lifespan, keycloak_client_id, keycloak_client_secret, keycloak_realm, "
            "keycloak_scope, keycloak_url, portal_url, rest_root, shared_cache, signing_secret, submit_timeout, "
            "timeout, verify",
        ),
        (
            {"host": "rest.example/sapi"},
            "host 'rest.example/sapi' is not a URL. Give the REST root, e.g. https://max-slurm-rest.desy.de/sapi",
        ),
        (
            {"host": "https://"},
            "host 'https:' is not a URL. Give the REST root, e.g. https://max-slurm-rest.desy.de/sapi",
        ),
        (
            {"host": "https://u:pw@rest.example/sapi"},
            "host carries credentials before '@'. Give the bare REST root (e.g. https://max-slurm-rest.desy.de/sapi)"
            " and put the user in login and the secret in password",
        ),
        (
            {"host": "https://rest.example/sapi#x"},
            "host has a query or fragment. Give the REST root only, without '?...' or '#...'",
        ),
        ({"login": " "}, "login is empty. Give the DESY user name whose jobs this connection runs"),
        (
            {"login": "a b"},
            "login is 'a b'. Give the DESY user name as Slurm knows it (ASCII letters, digits, '.', '-', '_'): "
            "it travels in an HTTP header",
        ),
        (
            {"auth_method": "kerberos"},
            "extra.auth_method is 'kerberos'. Use one of: portal, keycloak, token, signing_key",
        ),
        (
            {"password": None},
            "password is empty but auth_method=portal needs it. Put the portal token in the connection's password "
            "field",
        ),
        (
            {"password": "", "auth_method": "keycloak"},
            "password is empty but auth_method=keycloak needs it. Put the user's DESY password in the connection's "
            "password field",
        ),
        (
            {"password": " \n", "auth_method": "token"},
            "password is empty but auth_method=token needs it. Put a Slurm JWT (e.g. from slurm_token) in the "
            "connection's password field",
        ),
        (
            {"password": "a\x00b", "auth_method": "keycloak"},
            "password contains a line break or control character. Paste the secret again, alone",
        ),
        (
            {"jwt_lifespan": 9},
            "extra.jwt_lifespan is 9 s. Choose 10 to 86400 s: DESY issues tokens of at most 24 h, and below "
            "10 s a token would need renewing for every request",
        ),
        (
            {"jwt_lifespan": 86401},
            "extra.jwt_lifespan is 86401 s. Choose 10 to 86400 s: DESY issues tokens of at most 24 h, and below "
            "10 s a token would need renewing for every request",
        ),
        ({"jwt_lifespan": True}, "extra.jwt_lifespan is True. Give a whole number of seconds"),
        (
            {"password": None, "auth_method": "signing_key"},
            "extra.signing_secret is missing but auth_method=signing_key needs it. Put the cluster's jwt_hs256.key, "
            "base64-encoded (base64 -w0 jwt_hs256.key), in extra.signing_secret (the form's 'Signing key' field)",
        ),
        (
            {"auth_method": "signing_key", "signing_secret": "%%%"},
            "extra.signing_secret is not valid base64. Encode the key file with `base64 -w0`",
        ),
        (
            {"auth_method": "signing_key", "signing_secret": base64.b64encode(b"0123456789abcde").decode()},
            "extra.signing_secret decodes to only 15 bytes. Slurm's jwt_hs256.key holds at least 16 random bytes: "
            "check you encoded the key file itself",
        ),
        (
            {"api_version": "v9"},
            "extra.api_version is 'v9'. Use 'auto' or one of v0.0.38, v0.0.40, v0.0.41, v0.0.42, v0.0.43, "
            "v0.0.44, v0.0.45",
        ),
        (
            {"verify": "/no/such/ca.pem"},
            "extra.verify names '/no/such/ca.pem', which is not a file. Give true, false, or the path of a CA bundle "
            "(PEM) readable on workers and triggerers",
        ),
        ({"timeout": 0}, "extra.timeout is 0. Give a number of seconds above 0, at most 3600"),
        ({"timeout": "soon"}, "extra.timeout is 'soon'. Give a number of seconds above 0, at most 3600"),
        (
            {"portal_url": "portal.example/reservation"},
            "extra.portal_url 'portal.example/reservation' is not a URL. Give a full http(s):// URL",
        ),
        ({"keycloak_url": "https://"}, "extra.keycloak_url 'https:' is not a URL. Give a full http(s):// URL"),
        (
            {"portal_url": "https://p.example/r?x=1"},
            "extra.portal_url has credentials, a query or a fragment. Give the bare http(s):// URL of the service",
        ),
        (
            {"keycloak_url": "https://u@kc.example/auth"},
            "extra.keycloak_url has credentials, a query or a fragment. Give the bare http(s):// URL of the service",
        ),
    ],
)
def test_each_refusal_reads_in_full(kw, message):
    assert refusal(**kw) == PREFIX + message


def test_an_extra_that_is_no_mapping_is_refused_with_its_shape():
    with pytest.raises(MaxwellConfigError) as failure:
        MaxwellConnectionConfig.from_connection("c", host="https://h/sapi", login="a", password="p", extra="{}")  # type: ignore[arg-type]
    assert str(failure.value) == (
        'Maxwell connection \'c\': extra is a string, not a JSON object. Write it as {"auth_method": "portal", ...}'
    )


# ---------------------------------------------------------------- what a token's claims say


def signed(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, "a key Slurm holds, not us, 32 bytes", algorithm="HS256")


def test_a_jwts_times_and_user_come_from_its_claims_whatever_key_signed_it():
    token = token_from_jwt(signed({"iat": 1000, "exp": 2000, "sun": "alice"}))
    assert (token.issued_at, token.expires_at, token.user) == (1000.0, 2000.0, "alice")


def test_the_user_falls_back_to_the_username_claim_and_is_none_without_either():
    assert token_from_jwt(signed({"exp": 2000, "username": "bob"})).user == "bob"
    assert token_from_jwt(signed({"exp": 2000, "sun": "alice", "username": "bob"})).user == "alice"
    assert token_from_jwt(signed({"exp": 2000})).user is None


def test_without_iat_the_token_is_taken_as_issued_now(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    assert token_from_jwt(signed({"exp": 6000})).issued_at == 5000.0


def test_without_exp_the_expiry_is_expires_in_else_five_minutes(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    assert token_from_jwt(signed({"iat": 5000}), expires_in=60).expires_at == 5060.0
    assert token_from_jwt(signed({"iat": 5000})).expires_at == 5300.0
    assert token_from_jwt(signed({"iat": 5000, "exp": 7000}), expires_in=60).expires_at == 7000.0


def test_an_opaque_token_is_used_for_five_minutes_as_issued_now(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    token = token_from_jwt("opaque-token-value")
    assert (token.value, token.issued_at, token.expires_at, token.user) == ("opaque-token-value", 5000.0, 5300.0, None)


@pytest.mark.parametrize(
    "claims",
    [{"iat": -1, "exp": 6000}, {"exp": -1}, {"exp": "tomorrow"}, {"exp": True}, {"iat": "x", "exp": 6000}],
    ids=["negative iat", "negative exp", "text exp", "bool exp", "text iat"],
)
def test_claims_that_are_no_times_are_refused(monkeypatch, claims):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    with pytest.raises(UnusableToken, match=r"^its iat/exp claims are not times a token can have$"):
        token_from_jwt(signed(claims))


def test_an_expiry_up_to_a_year_and_a_day_out_is_believed(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    assert token_from_jwt(signed({"exp": 5000 + MAX_TOKEN_LIFE})).expires_at == 5000 + MAX_TOKEN_LIFE
    assert token_from_jwt(signed({"exp": 0})).expires_at == 0.0  # long expired, but a time: the source refuses it
    with pytest.raises(UnusableToken):
        token_from_jwt(signed({"exp": 5001 + MAX_TOKEN_LIFE}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "not a token (a NoneType of 4 characters)"),
        ("", "not a token (a str of 0 characters)"),
        ("has space", "not a token (a str of 9 characters)"),
        ("tok\n", "not a token (a str of 4 characters)"),
        ("tökén", "not a token (a str of 5 characters)"),
        (12345, "not a token (a int of 5 characters)"),
    ],
)
def test_what_no_header_can_carry_is_refused_without_quoting_it(value, message):
    with pytest.raises(UnusableToken) as failure:
        token_from_jwt(value)
    assert str(failure.value) == message
