"""What a task's log shows of a connection saved by the form: its secrets masked, and no warning from
Airflow's masker, which is handed every saved extra value on each connection lookup and warns about
any shorter than 5 characters, secret or not."""

from __future__ import annotations

import json
import logging

import pytest
from airflow.sdk._shared.secrets_masker import SecretsMasker, redact

from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from tests.unit.config.test_form import form_saved_extra

SECRET = "client-secret-of-the-form-" + "q" * 20
PASSWORD = "desy-password-of-alice-" + "w" * 10


def saved_by_form(monkeypatch: pytest.MonkeyPatch, conn_id: str) -> None:
    conn = {
        "conn_type": "maxwell",
        "host": "https://rest.example/sapi",
        "login": "alice",
        "password": PASSWORD,
        "extra": form_saved_extra(auth_method="keycloak", keycloak_client_secret=SECRET),
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_the_form_saves_no_short_text_for_the_masker_to_warn_about():
    short = {name: value for name, value in form_saved_extra().items() if isinstance(value, str) and len(value) < 5}
    assert short == {}


def test_a_connection_saved_by_the_form_is_read_without_the_maskers_warning(monkeypatch, caplog):
    saved_by_form(monkeypatch, "maxwell_form")
    monkeypatch.setattr(SecretsMasker, "_has_warned_short_secret", False)  # it warns once per process
    caplog.set_level(logging.WARNING)
    hook = MaxwellHook("maxwell_form")
    assert (hook.config.api_version, hook.config.keycloak_client_secret) == ("auto", SECRET)
    assert not [r.getMessage() for r in caplog.records if "too short" in r.getMessage()]


def test_the_connections_secrets_are_still_masked(monkeypatch):
    saved_by_form(monkeypatch, "maxwell_form_secrets")
    MaxwellHook("maxwell_form_secrets").config  # noqa: B018 - reading the connection masks its secrets
    shown = redact(f"password {PASSWORD} client secret {SECRET}")
    assert PASSWORD not in shown and SECRET not in shown


def test_a_poking_sensor_tells_of_its_token_once_not_at_every_poke(fake, capsys):
    from airflow_provider_maxwell.sensors.job import MaxwellJobSensor
    from tests.fake_slurm import META

    job = {"job_id": 7, "job_state": ["RUNNING"], "user_name": "alice", "nodes": "max-wn01", "submit_time": 1}
    fake.script["/slurm/v0.0.44/job/7"] = [(200, {}, {**META, "jobs": [job]})]
    fake.script["/slurmdb/v0.0.44/job/7"] = [(200, {}, {**META, "jobs": []})]
    sensor = MaxwellJobSensor(task_id="wait", job_id="7", maxwell_conn_id=fake.conn_id)
    for _ in range(3):  # each poke makes its hook anew, as Airflow's poke loop does
        assert sensor.poke({}) is False
    logged = capsys.readouterr().out
    assert logged.count("Slurm token for alice") == 1, logged
    assert logged.count("Slurm job 7: RUNNING on max-wn01") == 1, logged
