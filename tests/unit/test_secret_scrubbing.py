"""A secret a server echoes altered is scrubbed all the same: HTML-escaped, URL-encoded either way,
JSON-escaped, base64 as it travels, or cut short; ordinary words that merely start like a secret stay."""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote, quote_plus

import pytest

from airflow_provider_maxwell.auth.sources import token_source
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import scrub, scrubbed_excerpt
from tests.unit.auth.test_token_sources import answer, config, refused

PASSWORD = "p<ss>&\"wo'rd!"  # every character HTML escapes
PORTAL_TOKEN = "pt/7Qx+Lm2=Vb/9Kd+Rw4=Hs/0Zy"  # base64 with '/', '+', '=': shaped like no token
SHORTEST_PREFIX = 8  # characters of a secret's beginning that are scrubbed on their own


def secrets_of(password: str) -> list[str]:
    return MaxwellConnectionConfig.from_connection(
        "c", host="https://r.example", login="alice", password=password, extra={"auth_method": "keycloak"}
    ).secret_texts


def lower_hex(text: str) -> str:
    return text.replace("%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d")


@pytest.mark.parametrize(
    "echo",
    [
        html.escape(PASSWORD),  # Python: &amp; &lt; &gt; &quot; &#x27;
        html.escape(PASSWORD, quote=False),
        html.escape(PASSWORD).replace("&quot;", "&#34;").replace("&#x27;", "&#39;"),  # Jinja, markupsafe
        html.escape(PASSWORD).replace("&#x27;", "&#039;"),  # PHP's htmlspecialchars
        html.escape(PASSWORD).replace("&#x27;", "&apos;"),  # XML
    ],
)
def test_an_html_escaped_password_is_scrubbed(echo: str) -> None:
    assert scrub(f"<p>bad password {echo} given</p>", secrets_of(PASSWORD)) == "<p>bad password *** given</p>"


@pytest.mark.parametrize(
    "echo",
    [
        quote(PORTAL_TOKEN),  # urllib's default: '/' left as is
        quote(PORTAL_TOKEN, safe=""),
        lower_hex(quote(PORTAL_TOKEN, safe="")),
        quote_plus(PORTAL_TOKEN),
        json.dumps(PORTAL_TOKEN)[1:-1].replace("/", "\\/"),  # JSON as PHP writes it
        base64.b64encode(f"alice:{PORTAL_TOKEN}".encode()).decode(),  # the portal's Basic auth header
    ],
)
def test_an_encoded_portal_token_is_scrubbed(echo: str) -> None:
    assert scrub(f"GET /get_new_slurm_token?t={echo} denied", secrets_of(PORTAL_TOKEN)) == (
        "GET /get_new_slurm_token?t=*** denied"
    )


@pytest.mark.parametrize("length", [SHORTEST_PREFIX, 12, len(PORTAL_TOKEN) - 1])
def test_a_portal_token_cut_short_is_scrubbed(length: int) -> None:
    cut = PORTAL_TOKEN[:length]
    assert scrub(f"token {cut}... refused", secrets_of(PORTAL_TOKEN)) == "token ***... refused"
    assert scrub(f"token={quote(cut, safe='')}", secrets_of(PORTAL_TOKEN)) == "token=***"


def test_a_prefix_too_short_to_matter_and_words_that_start_like_a_secret_stay() -> None:
    """8 characters: shorter beginnings ('correct', 'pass') are ordinary words in error messages."""
    secrets = secrets_of("correct-horse-battery")
    text = "the password is not correct, try corr again"
    assert scrub(text, secrets) == text
    assert scrub("correct-h and correct-horse-batt", secrets) == "*** and ***"


def test_a_portal_refusal_echoing_the_token_html_escaped_and_cut_short_quotes_neither() -> None:
    token = "pt&<token>&'for'&alice&x"
    body = f"<p>Token {html.escape(token)} unknown; also tried {token[:12]}</p>".encode()
    error = refused(token_source(config("portal", password=token)), answer(401, body))
    assert "'<p>Token *** unknown; also tried ***</p>'" in str(error)


def test_scrubbing_a_long_answer_is_cheap() -> None:
    """It runs on error paths only, but a hostile server may send a long one."""
    import time

    secrets = [*secrets_of(PASSWORD), *secrets_of(PORTAL_TOKEN)]
    text = ("x" * 50 + PORTAL_TOKEN[:9] + " ") * 200  # many partial matches to extend and replace
    began = time.perf_counter()
    scrubbed = scrub(text, secrets)
    assert time.perf_counter() - began < 0.5
    assert PORTAL_TOKEN[:SHORTEST_PREFIX] not in scrubbed


def test_a_secret_with_runs_of_spaces_is_scrubbed_before_a_quote_folds_them():
    password = "Tr0ub4dor  horse 9x"  # two spaces in a row: a valid password
    quoted = scrubbed_excerpt(f"<p>login failed for {password}</p>\n\n", [password])
    assert quoted == "<p>login failed for ***</p>" and "horse" not in quoted
