"""Truths written once: connection defaults and limits (form, validation, docs), the trigger event
(made by the trigger, read by the operator and the sensor), and success."""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.outcome import judge
from airflow_provider_maxwell.provider_info import CONN_FIELDS, MAX_TOKEN_LIFESPAN, MIN_TOKEN_LIFESPAN, field_default
from airflow_provider_maxwell.slurm.states import JobState
from airflow_provider_maxwell.triggers.job import JobEvent
from tests.factories import slurm_job
from tests.paths import PROJECT

README = (PROJECT / "README.md").read_text()
CONNECTIONS_DOC = (PROJECT / "docs" / "connections.md").read_text()


def extra_field_rows() -> list[list[str]]:
    """The cells of the connection docs' table of extra fields (headed `| extra field | default | meaning |`)."""
    lines = CONNECTIONS_DOC.splitlines()
    start = lines.index("| extra field | default | meaning |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def config(**extra: Any) -> MaxwellConnectionConfig:
    return MaxwellConnectionConfig.from_connection(
        "c", host="https://rest.example/sapi", login="alice", password="secret", extra=extra
    )


# The config attribute of an extra field whose name differs (extra names are chosen for Airflow's masker).
CONFIG_ATTRIBUTE = {"jwt_lifespan": "token_lifespan"}


def test_an_empty_extra_takes_every_default_from_the_form_table():
    made = config()
    checked = 0
    for name in CONN_FIELDS:
        default = field_default(name)  # saved by the form, or (Keycloak's) applied without being saved
        if default is not None:
            assert getattr(made, CONFIG_ATTRIBUTE.get(name, name)) == default, name
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("name", [n for n in CONN_FIELDS if field_default(n) is not None])
def test_the_docs_document_each_default_as_the_form_has_it(name):
    rows = [cells for cells in extra_field_rows() if f"`{name}`" in cells[0]]
    assert rows, f"docs/connections.md's extra field table has no row for {name}"
    names = [n.strip(" `") for n in rows[0][0].split(",")]
    defaults = [d.strip(" `") for d in rows[0][1].split("`, `")]
    default = field_default(name)
    shown = str(default).lower() if isinstance(default, bool) else str(default)
    assert defaults[names.index(name)] == shown, (name, rows[0])


def test_token_lifespan_limits_are_the_forms_limits():
    schema = CONN_FIELDS["jwt_lifespan"]["schema"]
    assert (schema["minimum"], schema["maximum"]) == (MIN_TOKEN_LIFESPAN, MAX_TOKEN_LIFESPAN)
    assert config(jwt_lifespan=MIN_TOKEN_LIFESPAN).token_lifespan == MIN_TOKEN_LIFESPAN
    assert config(jwt_lifespan=MAX_TOKEN_LIFESPAN).token_lifespan == MAX_TOKEN_LIFESPAN
    for outside in (MIN_TOKEN_LIFESPAN - 1, MAX_TOKEN_LIFESPAN + 1):
        with pytest.raises(MaxwellConfigError, match=re.escape(f"extra.jwt_lifespan is {outside} s")):
            config(jwt_lifespan=outside)


@pytest.mark.parametrize(
    ("record", "states", "success"),
    [
        (slurm_job(JobState.COMPLETED, 0), frozenset({"COMPLETED"}), True),
        (slurm_job(JobState.COMPLETED, None), frozenset({"COMPLETED"}), True),  # 22.05: exit code unknown
        (slurm_job(JobState.COMPLETED, 2), frozenset({"COMPLETED"}), False),
        (slurm_job(JobState.FAILED, 1), frozenset({"COMPLETED"}), False),
        (slurm_job(JobState.FAILED, 1), frozenset({"COMPLETED", "FAILED"}), True),
        (slurm_job(JobState.RUNNING, None), frozenset({"RUNNING"}), False),  # never success before it ends
    ],
)
def test_one_definition_of_success(record, states, success):
    assert record.succeeded(states) is success
    assert judge(7, [record], states).succeeded is success
    assert record.is_success is record.succeeded()


@pytest.mark.parametrize(
    "records",
    [
        [slurm_job(JobState.COMPLETED)],
        [slurm_job(JobState.FAILED, 3)],
        [slurm_job(JobState.CANCELLED, None)],
        [slurm_job(JobState.NODE_FAIL, None)],
    ],
    ids=["completed", "failed", "cancelled", "node-fail"],
)
def test_the_trigger_event_carries_the_whole_outcome_through_its_stored_form(records):
    outcome = judge(7, records)
    payload = JobEvent.of(7, outcome).to_payload()
    assert JobEvent.from_payload(payload).outcome == outcome


def test_events_of_an_older_release_without_retryable_read_as_retryable():
    event = JobEvent.from_payload({"status": "failed", "job_id": "7", "message": "ended FAILED"})
    assert event.outcome is not None and event.outcome.retryable and event.job_id == 7


def test_timeout_and_error_events_have_no_outcome():
    assert JobEvent("timeout", 7, "still RUNNING at the deadline").outcome is None
    assert JobEvent("error", 7, "accounting unavailable").outcome is None


def test_the_python_classifiers_name_only_pythons_readme_says_are_tested():
    # pyproject.toml read as text: tomllib is not in 3.10, which requires-python still admits.
    pyproject = (PROJECT / "pyproject.toml").read_text()
    classified = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', pyproject)
    floor = re.search(r'^requires-python = ">=(3\.\d+)"$', pyproject, re.MULTILINE)
    row = next(line for line in README.splitlines() if line.startswith("| Python |"))
    declared, tested = (cell.strip() for cell in row.strip("|").split("|")[1:3])
    assert floor and declared.startswith(f"{floor.group(1)} and newer"), (declared, floor)
    assert classified, "pyproject.toml names no Python version in its classifiers"
    for version in classified:
        said = re.search(rf"{re.escape(version)} \([^)]*\)(?: and [\d.]+ \([^)]*\))?: (?P<what>[^;]*)", tested)
        assert said and "not run" not in said.group("what"), f"classifier {version}: README does not say it is tested"
