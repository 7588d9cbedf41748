"""The rest of a Maxwell connection's refusals, word for word as the user reads them (the connection, the
field as they spelled it, what is wrong and the fix), and the values each setting accepts at its edges:
the words a flag takes, the job link's template, the realm, the CA bundle and the secrets (issue 18)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import MaxwellConfigError

PREFIX = "Maxwell connection 'c': "
LINK_FIX = (
    "Give an http(s) URL with {job_id} where the job id goes, e.g. https://slurm-web.example/job/{job_id} "
    "(placeholders: {job_id}, {user})"
)


def read(
    *, host: str = "https://rest.example/sapi", login: str = "alice", password: str | None = "pt", **extra: Any
) -> MaxwellConnectionConfig:
    return MaxwellConnectionConfig.from_connection("c", host=host, login=login, password=password, extra=extra)


def refusal(**kw: Any) -> str:
    with pytest.raises(MaxwellConfigError) as failure:
        read(**kw)
    return str(failure.value)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"jwt_lifespan": "***"},
            "extra.jwt_lifespan is '***', the mask Airflow's UI shows for fields whose name looks secret, saved as "
            "the value. Type the real value again (this release's field names are not masked unless secret)",
        ),
        ({"keycloak_realm": 5}, "extra.keycloak_realm is a number. Write it as a JSON string"),
        ({"signing_secret": 5}, "extra.signing_secret is a number. Write it as a JSON string"),
        (
            {"host": "https://rest.example/sapi?"},
            "host has a query or fragment. Give the REST root only, without '?...' or '#...'",
        ),
        (
            {"host": "https://rest.example:99999/sapi"},
            "host 'https://rest.example:99999/sapi' is not a URL. Give the REST root, e.g. "
            "https://max-slurm-rest.desy.de/sapi",
        ),
        (
            {"host": "https://[::1/sapi"},
            "host 'https://[::1/sapi' is not a URL. Give the REST root, e.g. https://max-slurm-rest.desy.de/sapi",
        ),
        (
            {"host": "https://rest example/sapi"},
            "host 'https://rest example/sapi' is not a URL. Give the REST root, e.g. https://max-slurm-rest.desy.de/sapi",
        ),
        (
            {"password": "pt\u00e9"},
            "password contains non-ASCII characters. Paste the portal token again, alone",
        ),
        (
            {"password": "pt\u00e9", "auth_method": "token"},
            "password contains non-ASCII characters. Paste a Slurm JWT (e.g. from slurm_token) again, alone",
        ),
        (
            {"keycloak_client_secret": "a\nb", "auth_method": "keycloak"},
            "extra.keycloak_client_secret contains a line break or control character. Paste it again, alone",
        ),
        ({"jwt_lifespan": "3600.0"}, "extra.jwt_lifespan is '3600.0'. Give a whole number of seconds"),
        ({"jwt_lifespan": 3600.5}, "extra.jwt_lifespan is 3600.5. Give a whole number of seconds"),
        (
            {"jwt_lifespan": "\uff13\uff16\uff10\uff10"},
            "extra.jwt_lifespan is '\uff13\uff16\uff10\uff10'. Give a whole number of seconds",
        ),
        ({"jwt_lifespan": float("inf")}, "extra.jwt_lifespan is inf. Give a whole number of seconds"),
        ({"jwt_lifespan": [1]}, "extra.jwt_lifespan is [1]. Give a whole number of seconds"),
        (
            {"jwt_lifespan": 5},
            "extra.jwt_lifespan is 5 s. Choose 10 to 86400 s: DESY issues tokens of at most 24 h, and below 10 s "
            "a token would need renewing for every request",
        ),
        (
            {"password": None, "auth_method": "signing_key", "signing_secret": "%%%"},
            "extra.signing_secret is not valid base64. Encode the key file with `base64 -w0`",
        ),
        (
            {"password": None, "auth_method": "signing_key", "signing_secret": base64.b64encode(b"x" * 8).decode()},
            "extra.signing_secret decodes to only 8 bytes. Slurm's jwt_hs256.key holds at least 16 random bytes: "
            "check you encoded the key file itself",
        ),
        (
            {"ca_bundle": "/no/such/ca.pem"},
            "extra.ca_bundle names '/no/such/ca.pem', which is not a file. Give the path of a CA bundle (PEM) "
            "readable on workers and triggerers, or leave it empty for the system's CAs",
        ),
        ({"timeout": True}, "extra.timeout is True. Give a number of seconds above 0, at most 3600"),
        ({"timeout": "\uff11"}, "extra.timeout is '\uff11'. Give a number of seconds above 0, at most 3600"),
        ({"timeout": [1]}, "extra.timeout is [1]. Give a number of seconds above 0, at most 3600"),
        ({"timeout": "nan"}, "extra.timeout is 'nan'. Give a number of seconds above 0, at most 3600"),
        (  # beyond any float: float() raises OverflowError, not ValueError (found by Hypothesis)
            {"timeout": 10**400},
            "extra.timeout is a huge number. Give a number of seconds above 0, at most 3600",
        ),
        (  # beyond what Python prints as digits at all: still the same refusal, not a ValueError
            {"timeout": 10**5000},
            "extra.timeout is a huge number. Give a number of seconds above 0, at most 3600",
        ),
        ({"keycloak_realm": "a/b"}, "extra.keycloak_realm is 'a/b'. Give the realm's name alone, e.g. production"),
        ({"keycloak_realm": "a b"}, "extra.keycloak_realm is 'a b'. Give the realm's name alone, e.g. production"),
        ({"keycloak_realm": "a%2F"}, "extra.keycloak_realm is 'a%2F'. Give the realm's name alone, e.g. production"),
        ({"keycloak_realm": "r?"}, "extra.keycloak_realm is 'r?'. Give the realm's name alone, e.g. production"),
        ({"keycloak_realm": "r#"}, "extra.keycloak_realm is 'r#'. Give the realm's name alone, e.g. production"),
        ({"keycloak_realm": "r\x00"}, "extra.keycloak_realm is 'r\\x00'. Give the realm's name alone, e.g. production"),
        (
            {"job_url_template": "https://web.example/{job_id"},
            f"extra.job_url_template 'https://web.example/{{job_id' has an unmatched brace. {LINK_FIX}",
        ),
        (
            {"job_url_template": "https://web.example/{job_id}?t={token"},
            f"extra.job_url_template (not shown: it may hold credentials) has an unmatched brace. {LINK_FIX}",
        ),
        (
            {"job_url_template": "https://web.example/{job_id}/{x}/{a}"},
            f"extra.job_url_template has unknown placeholders ['a', 'x']. {LINK_FIX}",
        ),
        (
            {"job_url_template": "https://web.example/{x}"},
            f"extra.job_url_template has unknown placeholders ['x']. {LINK_FIX}",
        ),
        (
            {"job_url_template": "https://web.example/jobs"},
            f"extra.job_url_template has no {{job_id}} placeholder. {LINK_FIX}",
        ),
        (
            {"job_url_template": "https://web.example/{user}"},
            f"extra.job_url_template has no {{job_id}} placeholder. {LINK_FIX}",
        ),
        (
            {"job_url_template": "ftp://web.example/{job_id}"},
            f"extra.job_url_template 'ftp://web.example/{{job_id}}' is not an http(s) URL. {LINK_FIX}",
        ),
        ({"shared_cache": "maybe"}, "extra.shared_cache is 'maybe'. Give true or false"),
        (
            {"keycloak_url": "https://kc.example/auth#x"},
            "extra.keycloak_url has credentials, a query or a fragment. Give the bare http(s):// URL of the service",
        ),
        (
            {"keycloak_url": "ftp://kc.example/"},
            "extra.keycloak_url 'ftp://kc.example' is not a URL. Give a full http(s):// URL",
        ),
        ({"portal_url": "https://"}, "extra.portal_url 'https:' is not a URL. Give a full http(s):// URL"),
    ],
)
def test_each_refusal_reads_in_full(kw, message):
    assert refusal(**kw) == PREFIX + message


@pytest.mark.parametrize("login", ["\u00e4lice", "al\tice", "a:b", "a/b", "a@b"])
def test_a_login_no_http_header_can_carry_is_refused_with_the_fix(login):
    assert refusal(login=login) == (
        f"{PREFIX}login is {login!r}. Give the DESY user name as Slurm knows it (ASCII letters, digits, '.', '-', "
        "'_'): it travels in an HTTP header"
    )


@pytest.mark.parametrize("login", ["root", "slurm", "Root"])
def test_a_signing_key_connection_for_root_or_slurms_own_user_is_refused(login):
    key = base64.b64encode(b"0123456789abcdef").decode()
    assert refusal(login=login, password=None, auth_method="signing_key", signing_secret=key) == (
        f"{PREFIX}login is {login!r}, which a signing key would mint tokens for: a token for root or for Slurm's "
        "own user (slurm) acts for every user of the cluster. Give the service account's own user name"
    )
    assert read(login=login).login == login  # with a portal token, root's tokens are the portal's to refuse


def test_a_ca_bundle_and_a_bundle_path_in_verify_are_refused_together(tmp_path: Path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("PEM")
    assert refusal(verify=str(bundle), ca_bundle=str(bundle)) == (
        f"{PREFIX}extra.ca_bundle is set and extra.verify names a CA bundle too. Give the CA bundle's path in "
        "extra.ca_bundle only and set extra.verify to true"
    )
    assert read(ca_bundle=f" {bundle} ").verify == str(bundle)
    assert read(verify=f" {bundle} ").verify == str(bundle)


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("yes", True),
        (" 1 ", True),
        ("TRUE", True),
        (1, True),
        ("no", False),
        ("0", False),
        ("False", False),
        (0, False),
    ],
)
def test_verify_and_shared_cache_take_the_usual_words_for_true_and_false(given, meant):
    config = read(verify=given, shared_cache=given)
    assert (config.verify, config.shared_cache) == (meant, meant)


def test_a_password_is_stripped_for_tokens_but_a_keycloak_password_is_kept_as_typed():
    assert read(password=" pt\n").password == "pt"
    assert read(password=" tok\n", auth_method="token").password == "tok"
    assert read(password=" p\u00e4ss ", auth_method="keycloak").password == " p\u00e4ss "  # non-ASCII is fine here


def test_a_lifespan_may_be_a_whole_float():
    assert read(jwt_lifespan=3600.0).token_lifespan == 3600
    assert read(jwt_lifespan="600").token_lifespan == 600


def test_the_signing_secret_is_read_decoded():
    key = base64.b64encode(b"0123456789abcdef").decode()
    assert read(password=None, auth_method="signing_key", signing_secret=key).signing_key == b"0123456789abcdef"


def test_unset_values_take_the_forms_defaults():
    config = MaxwellConnectionConfig.from_connection(
        "c", host="https://rest.example/sapi", login="alice", password="pt", extra=None
    )
    assert (config.auth_method, config.token_lifespan, config.keycloak_realm, config.timeout) == (
        "portal",
        86400,
        "production",
        30.0,
    )
    assert read(keycloak_realm="", jwt_lifespan=None, job_url_template="").keycloak_realm == "production"
    assert read(job_url_template="").job_url_template is None


def test_the_job_link_fills_in_the_job_id_and_the_user():
    config = read(job_url_template=" https://web.example/{user}/job/{job_id} ")
    assert config.job_url_template == "https://web.example/{user}/job/{job_id}"
    assert config.job_url(42) == "https://web.example/alice/job/42"
    assert read().job_url(42) is None


def test_the_portal_url_keeps_the_hosts_port_unless_given():
    assert read(host="https://rest.example:8443/sapi").portal_url == "https://rest.example:8443/reservation"
    assert read(portal_url="https://p.example:8443/").portal_url == "https://p.example:8443"


def test_a_login_is_taken_as_slurm_knows_it_capitals_digits_dots_dashes_and_underscores_included():
    assert read(login=" X.Ray-2_b ").login == "X.Ray-2_b"
