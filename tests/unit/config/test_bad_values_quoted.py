"""How a refusal quotes the bad value the user gave (issue 18): whole up to 60 characters, cut beyond with
its length said, a number too long to print named instead of printed, and a URL that may hold credentials
or a token (an '@', '?' or '#' in it) never quoted, in the connection's messages and the job fields'."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.slurm.dialects import DIALECTS
from airflow_provider_maxwell.slurm.submit import build_submit_body

PREFIX = "Maxwell connection 'c': "
HOST_FIX = "Give the REST root, e.g. https://max-slurm-rest.desy.de/sapi"


def connection_refusal(*, host: str = "https://rest.example/sapi", login: str = "alice", **extra: Any) -> str:
    with pytest.raises(MaxwellConfigError) as failure:
        MaxwellConnectionConfig.from_connection("c", host=host, login=login, password="pt", extra=extra)
    return str(failure.value)


def field_refusal(fields: dict[str, Any]) -> str:
    with pytest.raises(MaxwellConfigError) as failure:
        build_submit_body(DIALECTS["v0.0.45"], "#!/bin/bash\n", fields, default_cwd="/home/a")
    return str(failure.value)


LOGIN_FIX = (
    "Give the DESY user name as Slurm knows it (ASCII letters, digits, '.', '-', '_'): it travels in an HTTP header"
)


def test_a_bad_connection_value_of_60_characters_is_quoted_whole_and_a_longer_one_cut():
    sixty = "a b" + "c" * 55  # its repr, with the quotes, is 60 characters
    assert connection_refusal(login=sixty) == f"{PREFIX}login is {sixty!r}. {LOGIN_FIX}"
    longer = sixty + "d"
    assert connection_refusal(login=longer) == f"{PREFIX}login is {repr(longer)[:60]}... (61 characters). {LOGIN_FIX}"


@pytest.mark.parametrize(
    "host",
    ["ftp://X.example/sapi", "https://rest.example:0/sapi", "ftp://rest.example/XX"],
)
def test_a_host_that_is_no_rest_url_is_quoted_when_it_holds_no_credentials(host):
    assert connection_refusal(host=host) == f"{PREFIX}host {host!r} is not a URL. {HOST_FIX}"


@pytest.mark.parametrize(
    "host",
    ["ftp://rest.example/sapi?token=s3cret", "ftp://rest.example/sapi#s3cret", "ftp://rest.example/s3cret@x"],
)
def test_a_host_that_may_hold_a_secret_is_never_quoted(host):
    assert connection_refusal(host=host) == (
        f"{PREFIX}host (not shown: it may hold credentials) is not a URL. {HOST_FIX}"
    )


def test_a_keycloak_url_that_is_no_url_is_quoted():
    assert connection_refusal(keycloak_url="ftp://X.example/auth") == (
        f"{PREFIX}extra.keycloak_url 'ftp://X.example/auth' is not a URL. Give a full http(s):// URL"
    )


COUNT = "ntasks must be a positive integer of at most 2147483647, not "


def test_a_bad_count_of_60_characters_is_quoted_whole_and_a_longer_one_cut():
    sixty = -(10**58)  # '-' and 59 digits
    assert field_refusal({"ntasks": sixty}) == f"{COUNT}{sixty}"
    longer = -(10**59)
    assert field_refusal({"ntasks": longer}) == f"{COUNT}{str(longer)[:60]}... (61 characters)"


def test_a_count_of_100_digits_is_cut_and_a_longer_one_named_not_printed():
    hundred_digits = 10**100 - 1
    assert field_refusal({"ntasks": hundred_digits}) == f"{COUNT}{'9' * 60}... (100 characters)"
    assert field_refusal({"ntasks": 10**100}) == f"{COUNT}a huge number"
    # far more digits than Python prints (4300): still the typed error, not Python's ValueError
    assert field_refusal({"ntasks": -(10**5000)}) == f"{COUNT}a huge number"


def test_a_bad_text_field_is_quoted_whole_up_to_60_characters():
    sixty = "max\0" + "x" * 51  # repr: quotes, 'max', '\x00' and 51 x's: 60 characters
    message = "partition must be a non-empty string without NUL bytes, not "
    assert field_refusal({"partition": sixty}) == f"{message}{sixty!r}"
    assert field_refusal({"partition": sixty + "y"}) == f"{message}{repr(sixty + 'y')[:60]}... (61 characters)"
