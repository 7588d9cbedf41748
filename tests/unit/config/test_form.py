"""The connection form as Airflow shows and saves it: Airflow's own masker hides exactly the secret
extra fields, defaults survive a save, names of earlier releases still work, and Test names the
user's connection."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import airflow
import pytest
from airflow._shared.secrets_masker import should_hide_value_for_key
from packaging.version import Version

from airflow_provider_maxwell.cli import main as maxwell_connection
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from airflow_provider_maxwell.provider_info import CONN_FIELDS, field_default
from tests.fake_slurm import META

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()


def config(extra: dict[str, Any], password: str | None = "pt") -> MaxwellConnectionConfig:
    return MaxwellConnectionConfig.from_connection(
        "maxwell_x", host="https://rest.example/sapi", login="alice", password=password, extra=extra
    )


def is_secret(name: str) -> bool:
    return CONN_FIELDS[name]["schema"].get("format") == "password"


# ------------------------------------------------------------------ masking, by Airflow's own masker


@pytest.mark.parametrize("name", list(CONN_FIELDS))
def test_airflow_masks_an_extra_field_exactly_when_it_is_secret(name):
    # The UI's form (hook_meta), its Extra Fields JSON and GET /api/v2/connections all decide by name.
    assert should_hide_value_for_key(name) is is_secret(name)
    assert should_hide_value_for_key(f"extra__maxwell__{name}") is is_secret(name)  # Airflow 3.1's form keys


def test_the_signing_key_and_client_secret_are_the_secret_fields():
    assert {name for name in CONN_FIELDS if is_secret(name)} == {"signing_secret", "keycloak_client_secret"}


def test_the_rest_api_hides_the_signing_key_and_shows_the_lifespan():
    from airflow.api_fastapi.core_api.datamodels.connections import ConnectionResponse
    from airflow.models.connection import Connection

    extra = {
        "auth_method": "signing_key",
        "signing_secret": KEY_B64,
        "jwt_lifespan": 3600,
        "keycloak_client_secret": "client-secret-value",
        "job_url_template": "https://web.example/job/{job_id}",
    }
    conn = Connection(
        conn_id="maxwell_x", conn_type="maxwell", host="https://rest.example/sapi", extra=json.dumps(extra)
    )
    shown = ConnectionResponse.model_validate(conn)  # what GET /api/v2/connections/{id} returns
    assert shown.extra is not None
    assert json.loads(shown.extra) == {
        **extra,
        "signing_secret": "***",
        "keycloak_client_secret": "***",
    }
    assert KEY_B64 not in shown.model_dump_json()


def test_the_forms_fields_are_shown_with_their_defaults_not_masked():
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (maxwell,) = [meta for meta in HookMetaService.hook_meta_data() if meta.connection_type == "maxwell"]
    fields = maxwell.extra_fields or {}
    if not fields:  # Airflow 3.1 without the FAB provider shows no provider's extra form fields
        from tests.unit.test_provider_metadata import form_fields_expected

        assert not form_fields_expected()
        return
    by_name = {key.removeprefix("extra__maxwell__"): spec for key, spec in fields.items()}
    # Empty (was "***" under the name token_lifespan): its default depends on the auth method, and a saved
    # default would read as chosen. The description gives both.
    assert by_name["jwt_lifespan"]["value"] is None
    assert "86400 (portal), 3600 (signing_key)" in by_name["jwt_lifespan"]["description"]
    assert by_name["verify"]["value"] is True
    assert by_name["auth_method"]["value"] == "portal"
    assert by_name["keycloak_url"]["value"] is None  # applied when used, never saved into a portal connection


def test_the_form_asks_for_the_rest_root_as_a_required_field_whose_help_names_the_test_command():
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (maxwell,) = [meta for meta in HookMetaService.hook_meta_data() if meta.connection_type == "maxwell"]
    fields = {key.removeprefix("extra__maxwell__"): spec for key, spec in (maxwell.extra_fields or {}).items()}
    if Version(airflow.__version__) < Version("3.2"):  # a form with no required fields: the REST root is in host
        assert "rest_root" not in fields
        assert maxwell.standard_fields is None or not maxwell.standard_fields.host.hidden
        return
    assert maxwell.standard_fields is not None and maxwell.standard_fields.host.hidden
    # A type without "null" is what the form marks required and will not save empty; no value, so no default.
    assert fields["rest_root"]["schema"]["type"] == ["string"] and fields["rest_root"]["value"] is None
    assert "e.g. https://max-slurm-rest.desy.de/sapi" in fields["rest_root"]["description"]
    assert 'run "maxwell-connection test <connection id>"' in fields["rest_root"]["description"]


def test_the_rest_root_the_form_saved_is_used_and_wins_over_host():
    with_both = MaxwellConnectionConfig.from_connection(
        "maxwell_x", host="https://old.example/sapi", login="alice", password="pt",
        extra={"rest_root": " https://rest.example/sapi/ "},
    )  # fmt: skip
    assert with_both.host == "https://rest.example/sapi"
    assert config({"rest_root": ""}).host == "https://rest.example/sapi"  # the form's empty field: host's
    with pytest.raises(MaxwellConfigError, match=re.escape("extra.rest_root 'rest.example' is not a URL")):
        config({"rest_root": "rest.example"})
    with pytest.raises(MaxwellConfigError, match=re.escape("'maxwell_x': host is empty. Give the REST root")):
        MaxwellConnectionConfig.from_connection("maxwell_x", host=" ", login="alice", password="pt", extra={})


# ------------------------------------------------------------------ defaults and widgets


def form_saved_extra(**typed: Any) -> dict[str, Any]:
    """The extra Airflow 3.3.2's form saves for a new connection: every field, its default or null."""
    return {name: spec["schema"].get("default") for name, spec in CONN_FIELDS.items()} | typed


def test_a_connection_saved_by_the_form_with_its_defaults_works_as_an_empty_one():
    saved = config(form_saved_extra())
    assert saved.fingerprint == config({}).fingerprint
    assert (saved.token_lifespan, saved.verify, saved.keycloak_url, saved.job_url_template) == (
        86400,
        True,
        "https://keycloak.desy.de/auth",
        None,
    )
    emptied = config(dict.fromkeys(CONN_FIELDS, ""))  # fields cleared in the form
    assert emptied.fingerprint == config({}).fingerprint


def test_a_signing_key_connection_saved_by_the_form_mints_hour_long_tokens():
    # The form saves every field's default: a saved 86400 could not be told from one the user chose.
    saved = config(form_saved_extra(auth_method="signing_key", signing_secret=KEY_B64), password=None)
    assert saved.token_lifespan == 3600
    assert config(form_saved_extra()).token_lifespan == 86400  # a portal token still mints for a day
    chosen = form_saved_extra(auth_method="signing_key", signing_secret=KEY_B64, jwt_lifespan=600)
    assert config(chosen, password=None).token_lifespan == 600


def test_the_form_saves_no_keycloak_setting_into_a_portal_connection():
    saved_defaults = {name for name, spec in CONN_FIELDS.items() if spec["schema"].get("default") is not None}
    assert saved_defaults == {"auth_method", "verify", "timeout", "submit_timeout", "shared_cache"}
    assert field_default("keycloak_scope") == "openid sun"  # applied all the same


def test_every_field_has_one_type_so_the_form_shows_a_plain_widget():
    # Airflow's form renders a field with two non-null types (as `verify` had) as a free-text editor.
    for name, spec in CONN_FIELDS.items():
        assert len([t for t in spec["schema"]["type"] if t != "null"]) == 1, name
    assert CONN_FIELDS["verify"]["schema"]["type"] == ["boolean", "null"]


def test_a_ca_bundle_is_verified_with(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert config({"verify": True, "ca_bundle": str(bundle)}).verify == str(bundle)
    assert config({"verify": str(bundle)}).verify == str(bundle)  # requests' convention, still read
    with pytest.raises(MaxwellConfigError, match=re.escape("extra.ca_bundle is set but extra.verify is false")):
        config({"verify": False, "ca_bundle": str(bundle)})


def test_the_mask_saved_as_a_value_is_named_not_used():
    with pytest.raises(MaxwellConfigError, match=re.escape("extra.jwt_lifespan is '***', the mask")):
        config({"jwt_lifespan": "***"})


# ------------------------------------------------------------------ names the masker misreads


@pytest.mark.parametrize("name", ["token_lifespan", "signing_key"])
def test_names_the_ui_would_mask_or_show_are_no_fields(name):
    # `token_lifespan` would be shown as '***' and saved as that text (its name holds "token"); a key
    # under `signing_key` would be shown in clear (its name holds no sensitive word).
    with pytest.raises(MaxwellConfigError, match=re.escape(f"extra has unknown keys ['{name}']")):
        config({"auth_method": "signing_key", name: KEY_B64}, password=None)


# ------------------------------------------------------------------ Test: the user's connection id


def airflow_ui_test(hook_conn_id: str) -> tuple[bool, str]:
    """What Airflow's API server does for the UI's Test button (routes/public/connections.py): the hook
    runs under a random temporary id (the user's id stays in the request, out of the hook's reach)."""
    return MaxwellHook(hook_conn_id).test_connection()


def test_the_ui_test_does_not_name_airflows_temporary_id(fake):
    fake.script["/slurm/v0.0.44/diag"] = [(401, {}, "Authentication failure")]
    ok, message = airflow_ui_test(fake.conn_id)
    assert not ok
    assert fake.conn_id not in message and "this connection" in message.lower()


def test_the_ui_test_of_a_broken_connection_says_what_is_wrong_with_this_connection(monkeypatch):
    conn = {"conn_type": "maxwell", "host": "https://rest.example/sapi", "login": "alice", "extra": {}}
    monkeypatch.setenv("AIRFLOW_CONN_TMPX1234", json.dumps(conn))  # no password: refused before sending
    ok, message = airflow_ui_test("TMPX1234")
    assert not ok
    assert message.startswith("This Maxwell connection: password is empty")
    assert "TMPX1234" not in message


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("Maxwell connection 'TMPX1234': password is empty.", "This Maxwell connection: password is empty."),
        (
            "DESY's portal refused a Slurm token for connection 'TMPX1234' (auth_method=portal): HTTP 401",
            "DESY's portal refused a Slurm token for this connection (auth_method=portal): HTTP 401",
        ),
        ("The conn_id `TMPX1234` isn't defined", "The conn_id `this connection` isn't defined"),
        ("host TMPX12345.example is not TMPX1234", "host TMPX12345.example is not this connection"),
    ],
)
def test_a_test_message_names_no_temporary_id(message: str, shown: str):
    from airflow_provider_maxwell.hooks.maxwell import without_connection_id

    assert without_connection_id(message, "TMPX1234") == shown


def test_the_ui_test_says_what_it_connected_to(fake):
    fake.script["/slurm/v0.0.44/diag"] = [(200, {}, META)]
    ok, message = airflow_ui_test(fake.conn_id)
    assert ok, message
    assert message == "Connected to Slurm 25.11.7 as alice via REST API v0.0.44 (auth_method=token)"


def test_the_test_command_reports_a_working_connection(fake, capsys):
    fake.script["/slurm/v0.0.44/diag"] = [(200, {}, META)]
    assert maxwell_connection(["test", fake.conn_id]) == 0
    # Airflow's log lines (info) go to stdout first: the verdict is the last line.
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"maxwell-connection: {fake.conn_id}: Connected to Slurm 25.11.7 as alice via REST API v0.0.44 "
        "(auth_method=token)"
    )


def test_the_test_command_fails_naming_the_connection_and_the_problem(fake, capsys):
    fake.script["/slurm/v0.0.44/diag"] = [(401, {}, "Authentication failure")]
    assert maxwell_connection(["test", fake.conn_id]) == 1
    verdict = capsys.readouterr().err.splitlines()[-1]
    assert verdict.startswith(f"maxwell-connection: {fake.conn_id} does not work: ")
    assert "401" in verdict


def test_the_test_command_says_when_there_is_no_such_connection(capsys):
    assert maxwell_connection(["test", "maxwell_nowhere"]) == 1
    verdict = capsys.readouterr().err.splitlines()[-1]
    assert verdict == "maxwell-connection: no connection 'maxwell_nowhere' (looked in Airflow's secrets and database)"
