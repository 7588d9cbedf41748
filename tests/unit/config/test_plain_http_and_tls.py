"""Secrets cross the network only over TLS unless the connection says otherwise: a plain http:// host,
portal or Keycloak URL to another machine is refused unless extra.allow_plain_http is true (then it is
warned about), TLS verification turned off is warned about, and the `maxwell-connection` command sends
no password over plain http://."""

from __future__ import annotations

import io
import uuid
import warnings
from typing import Any

import pytest

from airflow_provider_maxwell.cli import main as maxwell_connection
from airflow_provider_maxwell.config import InsecureConnectionWarning, MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.provider_info import CONN_FIELDS

CLEAR_FIX = "Use https://, or set extra.allow_plain_http to true if every network between here and there is trusted"


def read(
    conn_id: str = "c", *, host: str = "https://rest.example/sapi", password: str | None = "pt", **extra: Any
) -> MaxwellConnectionConfig:
    return MaxwellConnectionConfig.from_connection(conn_id, host=host, login="alice", password=password, extra=extra)


def refusal(**kw: Any) -> str:
    with pytest.raises(MaxwellConfigError) as failure:
        read(**kw)
    return str(failure.value)


def fresh_id() -> str:
    """A connection id no earlier test has read: the warnings come once per connection and process."""
    return f"maxwell_{uuid.uuid4().hex[:8]}"


def warned(read_it: Any) -> list[str]:
    """The insecure-connection warnings `read_it()` gives, however Python's filters are set."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_it()
    return [str(w.message) for w in caught if issubclass(w.category, InsecureConnectionWarning)]


# ---------------------------------------------------------------- plain http:// to another machine


@pytest.mark.parametrize(
    ("kw", "field", "url"),
    [
        ({"host": "http://rest.example/sapi"}, "host", "http://rest.example/sapi"),
        ({"host": "HTTP://rest.example/sapi"}, "host", "HTTP://rest.example/sapi"),
        ({"portal_url": "http://portal.example/reservation"}, "extra.portal_url", "http://portal.example/reservation"),
        (
            {"auth_method": "keycloak", "keycloak_url": "http://kc.example/auth"},
            "extra.keycloak_url",
            "http://kc.example/auth",
        ),
    ],
)
def test_plain_http_to_another_machine_is_refused_naming_the_field_and_the_fix(kw, field, url):
    assert refusal(**kw) == (
        f"Maxwell connection 'c': {field} {url!r} is plain http:// to another machine: passwords and tokens would "
        f"cross the network unencrypted. {CLEAR_FIX}"
    )


@pytest.mark.parametrize(
    "host",
    [
        "http://localhost.evil.example/sapi",
        "http://127.0.0.1.nip.io/sapi",
        "http://128.0.0.1/sapi",
        "http://[::2]/sapi",
        "http://0.0.0.0:6820",
        "http://10.0.0.1:6820",
    ],
)
def test_names_that_only_look_like_this_machine_are_refused(host):
    assert refusal(host=host).startswith(f"Maxwell connection 'c': host {host!r} is plain http:// to another machine")


@pytest.mark.parametrize(
    "host",
    [
        "http://127.0.0.1:6820",
        "http://127.8.9.10/sapi",
        "http://[::1]:6820/sapi",
        "http://localhost",
        "http://LocalHost",
    ],
)
def test_plain_http_to_this_machine_is_accepted_without_a_warning(host):
    conn_id = fresh_id()
    assert warned(lambda: read(conn_id, host=host)) == []
    assert read(conn_id, host=host).host == host


def test_a_portal_on_the_plain_http_host_is_refused_with_the_host():
    # The portal URL defaults to the host's origin: one refusal, for the field the user wrote.
    assert refusal(host="http://rest.example/sapi").startswith("Maxwell connection 'c': host ")


def test_allow_plain_http_lets_it_through_and_warns_once_per_process_naming_the_connection():
    conn_id = fresh_id()
    given = {"host": "http://rest.example/sapi", "allow_plain_http": True}
    assert warned(lambda: read(conn_id, **given)) == [
        f"Maxwell connection {conn_id!r}: {name} {url!r} is plain http:// to another machine, allowed by "
        "extra.allow_plain_http: passwords and tokens cross the network unencrypted"
        for name, url in (("host", "http://rest.example/sapi"), ("extra.portal_url", "http://rest.example/reservation"))
    ]
    assert warned(lambda: read(conn_id, **given)) == []  # read again for the next task: said once is enough
    assert read(conn_id, **given).host == "http://rest.example/sapi"


@pytest.mark.parametrize("flag", [False, "false", "no", None, ""])
def test_allow_plain_http_off_or_unset_refuses(flag):
    assert "is plain http:// to another machine" in refusal(host="http://rest.example/sapi", allow_plain_http=flag)


def test_allow_plain_http_takes_true_or_false_only():
    assert refusal(allow_plain_http="maybe") == (
        "Maxwell connection 'c': extra.allow_plain_http is 'maybe'. Give true or false"
    )


# ---------------------------------------------------------------- TLS verification off


def test_verification_off_warns_once_per_process_naming_the_connection():
    conn_id, other = fresh_id(), fresh_id()
    assert warned(lambda: read(conn_id, verify=False)) == [
        f"Maxwell connection {conn_id!r}: TLS certificates are not verified (extra.verify is false): whoever is "
        "on the network path can pose as the server and read passwords and tokens. Give the server's CA in "
        "extra.ca_bundle instead"
    ]
    assert warned(lambda: read(conn_id, verify="no")) == []
    assert len(warned(lambda: read(other, verify=False))) == 1  # another connection is named in its own warning
    assert warned(lambda: read(fresh_id())) == []  # verified: nothing to say


def test_a_deployment_that_makes_the_warning_an_error_refuses_the_connection_every_time():
    conn_id = fresh_id()
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureConnectionWarning)
        for _ in range(2):
            with pytest.raises(InsecureConnectionWarning, match=f"Maxwell connection {conn_id!r}: TLS certificates"):
                read(conn_id, verify=False)


# ---------------------------------------------------------------- the connection form


def test_the_form_shows_allow_plain_http_as_a_switch_that_is_off():
    spec = CONN_FIELDS["allow_plain_http"]
    assert spec["schema"] == {"type": ["boolean", "null"]}  # no default saved: unset is off
    assert "http://" in spec["description"]


# ---------------------------------------------------------------- maxwell-connection


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--host", "http://rest.example/sapi"], "--host"),
        (["--host", "https://rest.example/sapi", "--portal-url", "http://portal.example/reservation"], "--portal-url"),
    ],
)
def test_the_command_sends_no_password_over_plain_http(args, named, monkeypatch, capsys):
    import requests

    sent: list[Any] = []
    monkeypatch.setattr(requests, "get", lambda *a, **kw: sent.append((a, kw)))
    monkeypatch.setattr("sys.stdin", io.StringIO("desy-password\n"))
    with pytest.raises(SystemExit) as stopped:
        maxwell_connection(["--user", "alice", "--password-stdin", *args])
    assert stopped.value.code == 2 and sent == []
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.endswith(
        f"{named} {args[-1]!r} is plain http:// to another machine: your DESY password would cross the network "
        "unencrypted. Use https://"
    )
    assert "desy-password" not in error


def test_the_command_still_asks_a_portal_on_this_machine_over_plain_http(monkeypatch, capsys):
    import requests

    class Answer:
        status_code = 200
        text = "portal-token\n"

    sent: list[str] = []
    monkeypatch.setattr(requests, "get", lambda url, **kw: sent.append(url) or Answer())
    monkeypatch.setattr("sys.stdin", io.StringIO("desy-password\n"))
    assert maxwell_connection(["--user", "alice", "--password-stdin", "--json", "--host", "http://127.0.0.1:6820"]) == 0
    assert sent == ["http://127.0.0.1:6820/reservation/get_new_token"]
