"""The one job model, read from answers recorded on real daemons (../shared/slurm-responses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.slurm import answers
from airflow_provider_maxwell.slurm.dialects import Service
from airflow_provider_maxwell.slurm.job import exit_status, parse_accounting_job, parse_controller_job, state_and_flags
from airflow_provider_maxwell.slurm.states import JobState

from .conftest import SHARED

RECORDINGS = SHARED / "slurm-responses"
pytestmark = pytest.mark.skipif(not RECORDINGS.exists(), reason=f"recorded answers not found at {RECORDINGS}")


def load(path: Path) -> tuple[int, dict[str, Any]]:
    data = json.loads(path.read_text())
    if "response" in data and "status" in data:
        return data["status"], data["response"]
    return 200, data


def recorded(pattern: str) -> list[Path]:
    return sorted(RECORDINGS.glob(pattern))


# (glob, expected base state, expected exit code from slurmctld, from slurmdb)
SCENARIOS = [
    ("slurm-22.05.8/ok_ctld_completed_200.json", JobState.COMPLETED, 0),
    ("slurm-22.05.8/ok_db_completed_200.json", JobState.COMPLETED, 0),
    ("slurm-22.05.8/exit3_ctld_failed_200.json", JobState.FAILED, 3),
    ("slurm-22.05.8/exit3_db_failed_200.json", JobState.FAILED, None),  # 22.05's accounting says 0: unknown
    ("slurm-22.05.8/cancel_ctld_cancelled_200.json", JobState.CANCELLED, None),
    ("slurm-22.05.8/timeout_db_timeout_200.json", JobState.TIMEOUT, None),
    ("slurm-22.05.8/ok_ctld_running_200.json", JobState.RUNNING, None),
    ("slurm-22.05.8/ok_db_pending_200.json", JobState.PENDING, None),
    *[
        (f"slurm-24.11.5/{k}_slurm{db}_v0.0.{v}.json", s, c)
        for v in (40, 41, 42)
        for db in ("", "db")
        for k, s, c in (
            ("ok", JobState.COMPLETED, 0),
            ("exit3", JobState.FAILED, 3),
            ("timeout", JobState.TIMEOUT, None),
        )
    ],
    *[
        (f"slurm-26.05.5/{k}_slurm{db}_v0.0.{v}.json", s, c)
        for v in (42, 43, 44, 45)
        for db in ("", "db")
        for k, s, c in (("ok", JobState.COMPLETED, 0), ("exit3", JobState.FAILED, 3))
    ],
]


@pytest.mark.parametrize(("name", "state", "exit_code"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_recorded_job_reads_the_same_on_every_version(name, state, exit_code):
    _status, document = load(RECORDINGS / name)
    doc = document["jobs"][0]
    accounting = isinstance(doc.get("state"), dict)
    reliable = "22.05" not in name
    job = parse_accounting_job(doc, exit_code_reliable=reliable) if accounting else parse_controller_job(doc)
    assert job.source == ("slurmdb" if accounting else "slurmctld")
    assert job.state is state
    assert job.is_terminal is state.is_terminal
    assert job.is_success is (state is JobState.COMPLETED)
    if state is JobState.TIMEOUT or state is JobState.CANCELLED:
        assert job.exit_code in (None, 0)
    else:
        assert job.exit_code == exit_code
    assert job.job_id > 0 and job.user == "testuser"
    if state.is_terminal:
        assert job.end_time is not None and job.start_time is not None and job.end_time >= job.start_time
    else:
        assert job.end_time is None


def test_raw_wait_status_of_slurmctld_v0_0_38():
    assert exit_status(768) == (3, None)
    assert exit_status(9) == (None, 9)
    assert exit_status(0) == (0, None)


def test_completing_flag_keeps_a_job_non_terminal():
    assert state_and_flags(["FAILED", "COMPLETING"]) == (JobState.FAILED, frozenset({"COMPLETING"}))
    job = parse_controller_job({"job_id": 5, "job_state": ["COMPLETED", "COMPLETING"], "exit_code": 0})
    assert not job.is_terminal and not job.is_success
    # Older versions may put the flag instead of the state.
    assert parse_controller_job({"job_id": 5, "job_state": "COMPLETING"}).state is JobState.RUNNING


@pytest.mark.parametrize(
    "path",
    recorded("slurm-26.05.5/expired_*jobs*.json") + recorded("slurm-26.05.5/badsig_*.json"),
    ids=lambda p: p.name,
)
def test_refused_tokens_are_recognised(path):
    status, document = load(path)
    answer = answers.read_answer(status, json.dumps(document))
    service = Service.SLURMDB if "slurmdb" in path.name else Service.SLURM
    assert answers.is_auth_failure(answer) or answers.may_be_auth_failure(answer, service)


@pytest.mark.parametrize(
    "path",
    recorded("slurm-22.05.8/*_ctld_none_500.json") + recorded("slurm-26.05.5/purged_slurm_*.json"),
    ids=lambda p: p.name,
)
def test_purged_jobs_are_recognised(path):
    status, document = load(path)
    answer = answers.read_answer(status, json.dumps(document))
    assert answers.is_unknown_job(answer)


@pytest.mark.parametrize("path", recorded("slurm-22.05.8/*_db_none_200.json"), ids=lambda p: p.name)
def test_accounting_lag_is_not_an_error(path):
    status, document = load(path)
    answer = answers.read_answer(status, json.dumps(document))
    assert not answers.is_error(answer) and answer.has_code(answers.NOTHING_FOUND)


def test_proxy_error_pages_and_broken_bodies_are_not_slurm_answers():
    page = answers.read_answer(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    assert answers.is_transient(page) and not page.is_slurm and page.errors == ()
    assert answers.read_answer(200, b"").document is None
    assert answers.read_answer(200, b'{"jobs": [').document is None
    assert answers.read_answer(200, b"[1, 2]").document is None


@pytest.mark.parametrize(
    ("status", "document", "down"),
    [
        # measured with slurmctld stopped (22.05.8, 24.11.5) and running
        (500, {"errors": [{"error_number": -1, "description": "slurmctld config is unable to load"}]}, True),
        (200, {"pings": [{"hostname": "vm", "pinged": "DOWN", "responding": False}], "errors": []}, True),
        (200, {"pings": [{"hostname": "vm", "ping": "UP", "status": 0}], "errors": []}, False),
        (200, {"pings": [{"hostname": "vm", "pinged": "UP", "responding": True}], "errors": []}, False),
        (200, {"pings": [{"pinged": "DOWN", "responding": False}, {"pinged": "UP", "responding": True}]}, False),
    ],
)
def test_ping_tells_a_stopped_controller_from_a_refused_token(status, document, down):
    assert answers.controller_down(answers.read_answer(status, json.dumps(document))) is down
    assert answers.controller_down(answers.read_answer(502, b"<html>502</html>")) is False
