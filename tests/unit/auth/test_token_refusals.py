"""What a token service's refusal shows of its answer: the error fields of a JSON answer (never its other
fields, which may be tokens), the start of any other body, a redirect's target cut short and scrubbed."""

from __future__ import annotations

import pytest

from airflow_provider_maxwell.auth.sources import refusal_text, token_source
from airflow_provider_maxwell.effects import TransportFailure
from tests.unit.auth.test_token_sources import (
    PORTAL_CALL,
    TOKEN_URL,
    answer,
    config,
    keycloak_answer,
    mint,
    refused,
    slurm_jwt,
)


def test_a_json_refusal_shows_its_error_fields_in_order_and_nothing_else():
    body = {
        "detail": "try later",
        "access_token": "eyJ-a-token-of-someone",
        "error_description": "Invalid user credentials",
        "error": "invalid_grant",
        "message": 401,  # not text: left out
    }
    assert refusal_text(answer(200, body).body) == (
        "error: invalid_grant error_description: Invalid user credentials detail: try later"
    )


@pytest.mark.parametrize(("body", "shown"), [(b"[1, 2]", "(a JSON list)"), (b'"denied"', "(a JSON str)")])
def test_a_json_refusal_that_is_no_object_is_named_by_its_type(body: bytes, shown: str):
    assert refusal_text(body) == shown


def test_any_other_refusal_shows_the_start_of_its_body_even_if_not_utf8():
    assert refusal_text(b"Service \xff unavailable") == "Service \ufffd unavailable"
    assert refusal_text(b"x" * 3000) == "x" * 2000


def test_a_keycloak_refusal_quotes_its_error_fields_without_secrets():
    error = refused(
        token_source(config("keycloak", password="desy-password")),
        answer(400, {"error": "invalid_request", "error_description": "password desy-password too old"}),
    )
    assert str(error) == (
        "Keycloak refused a token for connection 'conn1' (auth_method=keycloak): HTTP 400 from "
        f"{TOKEN_URL}: 'error: invalid_request error_description: password *** too old'. Check the user's "
        "password and keycloak_url/keycloak_realm/keycloak_client_id."
    )


def test_a_redirects_target_is_shown_cut_short_and_without_secrets():
    target = "https://sso.example/login?session=portal-token-of-alice&next=" + "/page" * 100
    error = refused(token_source(config("portal")), answer(302, b"", {"Location": target}))
    shown = target.replace("portal-token-of-alice", "***")[:300]  # cut after scrubbing: no secret cut in two
    assert f"{PORTAL_CALL} redirected (HTTP 302) to {shown!r}; credentials are not sent on." in str(error)


def test_a_refused_refresh_grant_with_no_answer_falls_back_to_the_password():
    source = token_source(config("keycloak", password="desy-password"))
    mint(source, keycloak_answer(slurm_jwt()))
    token, calls = mint(source, TransportFailure("reset", before_send=False), keycloak_answer(slurm_jwt()))
    assert [c.form["grant_type"] for c in calls] == ["refresh_token", "password"] and token.user == "alice"


def test_an_empty_refresh_token_is_not_kept():
    source = token_source(config("keycloak", password="desy-password"))
    token, _ = mint(source, answer(200, {"access_token": slurm_jwt(), "refresh_token": "", "refresh_expires_in": 1800}))
    assert source.secrets(token) == [token.value]
    _, (call,) = mint(source, keycloak_answer(slurm_jwt()))
    assert call.form["grant_type"] == "password"
