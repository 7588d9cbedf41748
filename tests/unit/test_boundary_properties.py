"""Property tests of the input boundaries (issue 15): a connection, job fields and job ids either give
the right result or raise MaxwellConfigError naming the field, and no secret shows in the error, its
repr, or the config's repr. Never "no exception": each accepted value is checked against what was given.
"""

from __future__ import annotations

import base64
import json
import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.provider_info import (
    MAX_TOKEN_LIFESPAN,
    MIN_TOKEN_LIFESPAN,
    SIGNING_KEY_TOKEN_LIFESPAN,
    field_default,
)
from airflow_provider_maxwell.slurm.dialects import DIALECTS
from airflow_provider_maxwell.slurm.job import MAX_JOB_ID, parse_job_id
from airflow_provider_maxwell.slurm.submit import DEFAULT_PATH, build_submit_body
from airflow_provider_maxwell.urls import crosses_network_in_clear
from tests.strategies import (
    MARK,
    SCRIPTS,
    extras,
    finite_minutes,
    good_extras,
    good_hosts,
    good_logins,
    good_passwords,
    job_fields,
    job_ids,
    logins,
    passwords,
    secret_fields_of,
    secrets,
    urls,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PREFIX = "Maxwell connection 'c': "


def given_extra(extra: Any) -> dict[str, Any]:
    """The extra as the user meant it: Airflow's old 'extra__maxwell__' prefix dropped, empty values unset."""
    if not isinstance(extra, dict):
        return {}
    return {k.removeprefix("extra__maxwell__"): v for k, v in extra.items() if v is not None and v != ""}


def assert_no_secret(*texts: str, secrets: list[str]) -> None:
    for text in texts:
        assert MARK not in text
        for secret in secrets:
            assert len(secret) < 8 or secret not in text


@FAST
@given(host=urls(secrets()), login=logins, password=passwords, extra=extras())
def test_a_connection_is_right_or_refused_naming_the_field(host: str, login: str, password: Any, extra: Any) -> None:
    options = given_extra(extra)
    # A value that is also part of the host or login (which messages may show) cannot tell a leak.
    shown = f"{host} {login}"
    secrets_given = [s for s in [*secret_fields_of(extra), *([password] if password else [])] if s not in shown]
    try:
        config = MaxwellConnectionConfig.from_connection("c", host=host, login=login, password=password, extra=extra)
    except MaxwellConfigError as error:
        message = str(error)
        assert_no_secret(message, repr(error), secrets=secrets_given)
        assert message.startswith(PREFIX), message
        named = message.removeprefix(PREFIX).split(" ")[0]
        method = options.get("auth_method", "portal")
        allowed = {"host", "login", "password", "extra", *(f"extra.{k}" for k in options)}
        if method == "signing_key":
            allowed.add("extra.signing_secret")  # required by the method even when not given
        assert named in allowed, message
        event(f"refused: {named}")
        return
    event("accepted")
    assert_no_secret(repr(config), secrets=secrets_given)
    check_accepted(config, host, login, password, options)


@FAST
@given(host=good_hosts, login=good_logins, password=good_passwords, extra=good_extras())
def test_a_good_connection_is_accepted_as_given(host: str, login: str, password: str, extra: dict) -> None:
    config = MaxwellConnectionConfig.from_connection("c", host=host, login=login, password=password, extra=extra)
    check_accepted(config, host, login, password, given_extra(extra))
    assert_no_secret(repr(config), secrets=[password, *secret_fields_of(extra)])


def check_accepted(config: MaxwellConnectionConfig, host: str, login: str, password: Any, options: dict) -> None:
    """An accepted connection holds exactly what was given (or the defaults), in a shape a request can carry."""
    assert config.host == options.get("rest_root", host).strip().rstrip("/")  # the form's field, else host
    assert config.host.split("://")[0] in ("http", "https") and not any(c in config.host for c in "@?# \t\n\x00")
    assert config.login == login.strip() and config.login.isascii() and config.login.isprintable()
    assert config.auth_method == options.get("auth_method", "portal")
    if config.auth_method in ("portal", "token"):
        assert config.password == password.strip() and config.password.isascii() and config.password.isprintable()
    elif config.auth_method == "keycloak":
        assert config.password == password and password.isprintable()
    default_lifespan = SIGNING_KEY_TOKEN_LIFESPAN if config.auth_method == "signing_key" else MAX_TOKEN_LIFESPAN
    lifespan = options.get("jwt_lifespan", default_lifespan)
    assert type(config.token_lifespan) is int and MIN_TOKEN_LIFESPAN <= config.token_lifespan <= MAX_TOKEN_LIFESPAN
    assert config.token_lifespan == float(lifespan) and not isinstance(lifespan, bool)
    timeout = options.get("timeout", field_default("timeout"))
    assert math.isfinite(config.timeout) and 0 < config.timeout <= 3600 and config.timeout == float(timeout)
    submit_timeout = options.get("submit_timeout", field_default("submit_timeout"))
    assert 0 < config.submit_timeout <= 3600 and config.submit_timeout == float(submit_timeout)
    assert config.api_version == options.get("api_version", "auto")
    assert config.verify in (True, False) or os.path.isfile(str(config.verify))
    for name in ("keycloak_realm", "keycloak_client_id", "keycloak_scope", "keycloak_client_secret"):
        assert getattr(config, name) == options.get(name, field_default(name))
    for name in ("portal_url", "keycloak_url"):
        url = getattr(config, name)
        assert url.split("://")[0] in ("http", "https") and not any(c in url for c in "@?# \t\n\x00")
    if str(options.get("allow_plain_http", False)).strip().lower() not in ("true", "yes", "1"):
        assert not any(crosses_network_in_clear(url) for url in (config.host, config.portal_url, config.keycloak_url))
    if config.auth_method == "signing_key":
        assert config.signing_key == base64.b64decode(options["signing_secret"]) and len(config.signing_key) >= 16
    else:
        assert config.signing_key is None


@FAST
@given(method=st.sampled_from(["portal", "keycloak", "token"]), password=secrets())
def test_a_secret_with_control_characters_is_refused_unquoted_or_kept_whole(method: str, password: str) -> None:
    try:
        config = MaxwellConnectionConfig.from_connection(
            "c", host="https://rest.example", login="alice", password=password, extra={"auth_method": method}
        )
    except MaxwellConfigError as error:
        assert str(error).startswith(f"{PREFIX}password ") and MARK not in str(error) and MARK not in repr(error)
        return
    assert MARK in (config.password or "") and MARK not in repr(config)
    # everything that travels is printable, and in a header (portal, token) ASCII
    assert config.password is not None and config.password.isprintable()
    assert method == "keycloak" or config.password.isascii()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"jwt_lifespan": float("inf")}, "extra.jwt_lifespan is inf"),
        ({"jwt_lifespan": "\uff13\uff16\uff10\uff10"}, "extra.jwt_lifespan is"),
        ({"jwt_lifespan": 3600.5}, "extra.jwt_lifespan is 3600.5"),
        ({"timeout": "\uff11\uff12"}, "extra.timeout is"),
        ({"keycloak_client_secret": 12345678}, "extra.keycloak_client_secret is a number"),
        ({"keycloak_realm": {"name": "production"}}, "extra.keycloak_realm is an object"),
        ({"keycloak_realm": "production/../master"}, "extra.keycloak_realm is"),
        ({"portal_url": "http://[::1"}, "extra.portal_url 'http://[::1' is not a URL"),
        ({"portal_url": "https://portal.example/re servation"}, "extra.portal_url"),
        ({"timeout": "x" * 100_000}, "(100002 characters)"),
    ],
)
def test_extras_found_by_fuzzing_are_refused_naming_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(MaxwellConfigError) as failure:
        MaxwellConnectionConfig.from_connection("c", host="https://r.example", login="alice", password="p", extra=extra)
    assert field in str(failure.value) and len(str(failure.value)) < 400


@pytest.mark.parametrize("host", ["http://[::1", "https://rest.exa\nmple/sapi", "https://rest.example/s api"])
def test_hosts_found_by_fuzzing_are_refused_naming_the_field(host: str) -> None:
    with pytest.raises(MaxwellConfigError, match=r"host .* is not a URL"):
        MaxwellConnectionConfig.from_connection("c", host=host, login="alice", password="p", extra=None)


def test_a_secret_is_scrubbed_in_every_form_it_travels_in() -> None:
    from airflow_provider_maxwell.exceptions import scrub

    config = MaxwellConnectionConfig.from_connection(
        "c", host="https://r.example", login="alice", password="pä ss&wörd", extra={"auth_method": "keycloak"}
    )
    basic = base64.b64encode(b"alice:p\xc3\xa4 ss&w\xc3\xb6rd").decode()
    echoed = f"password=p%C3%A4+ss%26w%C3%B6rd {json.dumps('pä ss&wörd')} p%C3%A4%20ss%26w%C3%B6rd Basic {basic}"
    assert scrub(echoed, config.secret_texts) == 'password=*** "***" *** Basic ***'


# ---------------------------------------------------------------- job fields


@FAST
@given(version=st.sampled_from(sorted(DIALECTS)), script=SCRIPTS, fields=job_fields)
def test_job_fields_give_the_right_body_or_are_refused_naming_the_field(
    version: str, script: Any, fields: dict
) -> None:
    dialect = DIALECTS[version]
    try:
        body = build_submit_body(dialect, script, fields, default_cwd="/home/alice")
    except MaxwellConfigError as error:
        message = str(error)
        assert any(message.startswith(name) or f"'{name}'" in message for name in ["script", *fields]), message
        assert len(message) < 1000
        event(f"refused: {message[:20]}")
        return
    event("accepted")
    # accepted: a body any JSON encoder can send, holding what was given in the version's shape
    json.dumps(body, allow_nan=False)
    job = body["job"]
    assert isinstance(script, str) and script.startswith("#!") and "\0" not in script
    assert (job["script"] if dialect.script_in_job else body["script"]) == script
    assert "script" not in fields
    assert job["current_working_directory"] == fields.get("current_working_directory", "/home/alice")
    assert job["current_working_directory"].startswith("/")
    for name in ("name", "partition", "account", "qos", "standard_output", "comment", "array"):
        if name in fields and fields[name] is not None:
            assert job[name] == fields[name] and isinstance(job[name], str) and job[name].strip()
    env = job["environment"]
    env = dict(item.split("=", 1) for item in env) if dialect.environment_as_list else env
    assert env == {"PATH": DEFAULT_PATH, **(fields.get("environment") or {})}
    if fields.get("time_limit") is not None:
        limit = job["time_limit"]["number"] if dialect.numbers_as_structs else job["time_limit"]
        given_minutes = finite_minutes(fields["time_limit"])
        assert given_minutes is not None and limit == math.ceil(given_minutes) and 0 < limit <= 366 * 24 * 60
    for name, key in (("ntasks", "tasks"), ("cpus_per_task", "cpus_per_task")):
        if fields.get(name) is not None:
            assert job[key] == fields[name] and type(fields[name]) is int and 0 < fields[name] < 2**31
    if fields.get("memory_per_node") is not None:
        mib = job["memory_per_node"]["number"] if dialect.numbers_as_structs else job["memory_per_node"]
        assert type(mib) is int and 0 < mib < 2**63


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"exclusive": b"user"}, "exclusive"),
        ({"mail_user": {1, 2}}, "mail_user"),
        ({"exclusive": float("nan")}, "exclusive"),
        ({"ntasks": 2**70}, "ntasks"),
        ({"memory_per_node": "\uff14G"}, "memory_per_node"),
        ({"nodes": "\uff12"}, "nodes"),
    ],
)
def test_job_fields_found_by_fuzzing_are_refused_before_anything_is_sent(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(MaxwellConfigError) as failure:
        build_submit_body(DIALECTS["v0.0.44"], "#!/bin/bash\n", fields, default_cwd="/home/alice")
    assert str(failure.value).startswith(named) or f"'{named}'" in str(failure.value)


# ---------------------------------------------------------------- job ids


def expected_job_id(value: Any) -> int | None:
    if type(value) is int:
        return value if 0 < value <= MAX_JOB_ID else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 50:
        number = int(value.strip())
        return number if 0 < number <= MAX_JOB_ID else None
    return None


@FAST
@given(value=job_ids)
def test_a_job_id_is_read_exactly_or_refused_naming_job_id(value: Any) -> None:
    expected = expected_job_id(value)
    if expected is None:
        with pytest.raises(MaxwellConfigError) as failure:
            parse_job_id(value)
        assert str(failure.value).startswith("job_id must be a Slurm job id") and len(str(failure.value)) < 300
    else:
        assert parse_job_id(value) == expected
