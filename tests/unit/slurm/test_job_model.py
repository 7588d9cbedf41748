"""The one job model, read from answers recorded on real daemons (tests/data, `make record`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.slurm import answers
from airflow_provider_maxwell.slurm.dialects import Service
from airflow_provider_maxwell.slurm.job import exit_status, parse_accounting_job, parse_controller_job, state_and_flags
from airflow_provider_maxwell.slurm.states import JobState
from tests.paths import DATA

# Recorded by devcluster/record.py from the local Maxwell; docs/test-data.md says what is there.
RECORDED = json.loads((DATA / "recorded.json").read_text())  # no recordings: the module fails, never skips
RELEASES = {
    "22.05.8": ("v0.0.38",),
    "24.11.5": ("v0.0.40", "v0.0.41", "v0.0.42"),
    "26.05.5": ("v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"),
}
RELEASE_VERSIONS = [(release, version) for release, versions in RELEASES.items() for version in versions]
SERVICES = {"slurm": Service.SLURM, "slurmdb": Service.SLURMDB}


def load(path: Path) -> tuple[int, Any]:
    """A recorded answer: HTTP status and body (the parsed JSON document, or the text)."""
    data = json.loads(path.read_text())
    return data["status"], data["body"]


def answer_file(release: str, version: str, service: str, case: str) -> Path:
    """What /<service>/<version>/job/{id} of Slurm <release> answered in one recorded case."""
    return DATA / f"slurm-{release}" / version / f"{service}_job_{case}.json"


def recorded(pattern: str) -> list[Path]:
    """Recordings matching a glob under tests/data; never an empty list (that would test nothing)."""
    paths = sorted(DATA.glob(pattern))
    assert paths, f"no recordings match {DATA / pattern}: run `make record`"
    return paths


def every_version(service: str, case: str) -> list[Path]:
    """One case on every release and version; the files must exist (a missing one fails its test)."""
    return [answer_file(release, version, service, case) for release, version in RELEASE_VERSIONS]


def label(path: Path) -> str:
    return str(path.relative_to(DATA))


# (case, expected base state, expected exit code: from slurmctld, from slurmdb)
CASES = [
    ("exit0_ended", JobState.COMPLETED, 0, 0),
    ("exit3_ended", JobState.FAILED, 3, 3),
    ("cancelled_ended", JobState.CANCELLED, None, None),
    ("timeout_ended", JobState.TIMEOUT, None, None),
    ("sleep_running", JobState.RUNNING, None, None),
    ("held_pending", JobState.PENDING, None, None),
]
SCENARIOS = [
    (
        release,
        version,
        service,
        case,
        state,
        # 22.05's accounting says 0 for a failed job: the model reports it as unknown
        None if (release, service, state) == ("22.05.8", "slurmdb", JobState.FAILED) else code[service == "slurmdb"],
    )
    for release, version in RELEASE_VERSIONS
    for service in SERVICES
    for case, state, *code in CASES
]


@pytest.mark.parametrize(
    ("release", "version", "service", "case", "state", "exit_code"),
    SCENARIOS,
    ids=[label(answer_file(*s[:4])) for s in SCENARIOS],
)
def test_recorded_job_reads_the_same_on_every_version(release, version, service, case, state, exit_code):
    status, document = load(answer_file(release, version, service, case))
    assert status == 200
    (doc,) = document["jobs"]
    accounting = service == "slurmdb"
    assert isinstance(doc.get("state"), dict) is accounting  # the two services' documents differ in shape
    reliable = release != "22.05.8"
    job = parse_accounting_job(doc, exit_code_reliable=reliable) if accounting else parse_controller_job(doc)
    assert job.source == ("slurmdb" if accounting else "slurmctld")
    assert job.state is state
    assert job.is_terminal is state.is_terminal
    assert job.is_success is (state is JobState.COMPLETED)
    if state is JobState.TIMEOUT or state is JobState.CANCELLED:
        # Slurm's SIGTERM: reported as the signal (no exit code), or, when the batch shell caught it
        # first, as the shell's own exit code 128 + 15 (24.11 answered either way in recordings)
        assert job.exit_code in (None, 0, 128 + 15)
    else:
        assert job.exit_code == exit_code
    kind = case.split("_")[0]
    assert job.job_id == RECORDED["releases"][release]["jobs"][kind] and job.user == RECORDED["user"]
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


REFUSED_TOKENS = [
    path
    for service in SERVICES
    for case in ("expired_token", "wrong_key_token")
    for path in every_version(service, case)
]


@pytest.mark.parametrize("path", REFUSED_TOKENS, ids=label)
def test_refused_tokens_are_recognised(path):
    status, document = load(path)
    answer = answers.read_answer(status, json.dumps(document))
    service = SERVICES[path.name.split("_")[0]]
    assert answers.is_auth_failure(answer) or answers.may_be_auth_failure(answer, service)


@pytest.mark.parametrize(
    "path", every_version("slurm", "exit0_purged") + every_version("slurm", "unknown_id"), ids=label
)
def test_purged_jobs_are_recognised(path):
    status, document = load(path)
    answer = answers.read_answer(status, json.dumps(document))
    assert answers.is_unknown_job(answer)


# Accounting lags a submission by moments: whichever versions the recording caught it on (at least one).
@pytest.mark.parametrize("path", recorded("slurm-*/*/slurmdb_job_lag.json"), ids=label)
def test_accounting_lag_is_not_an_error(path):
    status, document = load(path)
    answer = answers.read_answer(status, json.dumps(document))
    assert not answers.is_error(answer) and document["jobs"] == []
    if path.parts[-3] == "slurm-22.05.8":  # 22.05 says so (9003); 24.11 and 26.05 just list no job
        assert answer.has_code(answers.NOTHING_FOUND)


@pytest.mark.parametrize("path", every_version("slurmdb", "unknown_id"), ids=label)
def test_a_job_unknown_to_accounting_is_no_error_and_no_record(path):
    status, document = load(path)
    answer = answers.read_answer(status, json.dumps(document))
    assert not answers.is_error(answer) and document["jobs"] == []


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
