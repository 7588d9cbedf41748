"""Every field a job record carries into Airflow's messages, read from the answers recorded on each Slurm
release (tests/data, v0.0.38 to v0.0.45): the pending reason, the nodes, the partition, the output and error
files, the array ids, the exit code and signal. Progress lines ('PENDING (JobHeldUser)', 'RUNNING on
maxwn26'), failure messages and the log links read these fields (issue 18: none of them was asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.slurm.dialects import DIALECTS
from airflow_provider_maxwell.slurm.job import SlurmJob, parse_accounting_jobs, parse_controller_jobs
from airflow_provider_maxwell.slurm.states import JobState
from tests.paths import DATA

JOBS_DIR = "/work/main/.devcluster/jobs"  # where the recording jobs ran (their working directory)
VERSIONS = sorted(DATA.glob("slurm-*/v0.0.*"))
NODE = {"slurm-22.05.8": "maxwn22", "slurm-24.11.5": "maxwn24", "slurm-26.05.5": "maxwn26"}


def ids(folder: Path) -> str:
    return f"{folder.parent.name}-{folder.name}"


def live(folder: Path, case: str) -> SlurmJob:
    (job,) = parse_controller_jobs(json.loads((folder / f"slurm_job_{case}.json").read_text())["body"]["jobs"])
    return job


def accounting(folder: Path, case: str) -> SlurmJob:
    dialect = DIALECTS[folder.name]
    answer: dict[str, Any] = json.loads((folder / f"slurmdb_job_{case}.json").read_text())["body"]
    jobs = parse_accounting_jobs(answer["jobs"], exit_code_reliable=dialect.accounting_exit_code_reliable)
    assert len(jobs) == 1
    return jobs[0]


def test_every_release_and_version_is_recorded():
    assert [ids(v) for v in VERSIONS] == [
        "slurm-22.05.8-v0.0.38",
        "slurm-24.11.5-v0.0.40",
        "slurm-24.11.5-v0.0.41",
        "slurm-24.11.5-v0.0.42",
        "slurm-26.05.5-v0.0.42",
        "slurm-26.05.5-v0.0.43",
        "slurm-26.05.5-v0.0.44",
        "slurm-26.05.5-v0.0.45",
    ]


@pytest.mark.parametrize("folder", VERSIONS, ids=ids)
def test_a_held_job_in_slurmctld_says_why_it_waits_and_has_no_nodes(folder: Path):
    job = live(folder, "held_pending")
    assert (job.name, job.user, job.partition, job.source) == ("record-held", "mxuser1", "maxcpu", "slurmctld")
    assert (job.state, job.reason, job.nodes) == (JobState.PENDING, "JobHeldUser", None)
    assert (job.array_job_id, job.array_task_id) == (None, None)  # array_job_id 0: no array
    assert (job.exit_code, job.signal, job.end_time) == (None, None, None)  # not ended: nothing to report yet
    assert job.working_directory == JOBS_DIR
    # sbatch's --output=%x-%j.out (expanded by slurmctld itself on some versions); errors go to the same file
    assert job.output_path() == job.error_path() == f"{JOBS_DIR}/record-held-{job.job_id}.out"


@pytest.mark.parametrize("folder", VERSIONS, ids=ids)
def test_a_running_job_in_slurmctld_names_its_node_and_no_reason(folder: Path):
    job = live(folder, "sleep_running")
    assert (job.state, job.reason, job.nodes, job.partition) == (
        JobState.RUNNING,
        None,  # Slurm's 'None'
        NODE[folder.parent.name],
        "maxcpu",
    )
    assert not job.is_terminal and job.start_time is not None and job.end_time is None
    assert job.output_path() == f"{JOBS_DIR}/record-sleep-{job.job_id}.out"


@pytest.mark.parametrize("folder", VERSIONS, ids=ids)
def test_ended_jobs_in_slurmctld_carry_their_reason_exit_code_and_signal(folder: Path):
    failed = live(folder, "exit3_ended")
    assert (failed.state, failed.reason, failed.exit_code, failed.signal) == (
        JobState.FAILED,
        "NonZeroExitCode",
        3,
        None,
    )
    assert failed.nodes == NODE[folder.parent.name] and failed.end_time is not None
    timed_out = live(folder, "timeout_ended")
    assert (timed_out.state, timed_out.reason, timed_out.signal) == (JobState.TIMEOUT, "TimeLimit", 15)
    completed = live(folder, "exit0_ended")
    assert (completed.reason, completed.exit_code, completed.is_success) == (None, 0, True)
    assert completed.output_path() == f"{JOBS_DIR}/record-exit0-{completed.job_id}.out"


@pytest.mark.parametrize("folder", VERSIONS, ids=ids)
def test_accounting_records_carry_partition_nodes_and_the_expanded_output_file(folder: Path):
    held = accounting(folder, "held_pending")
    assert (held.state, held.nodes, held.partition, held.source) == (JobState.PENDING, None, "maxcpu", "slurmdb")
    assert (held.array_job_id, held.array_task_id, held.comment) == (None, None, None)
    ran = accounting(folder, "sleep_running")
    assert (ran.state, ran.nodes, ran.reason) == (JobState.RUNNING, NODE[folder.parent.name], None)
    ended = accounting(folder, "exit0_ended")
    assert ended.working_directory == JOBS_DIR
    if folder.name in ("v0.0.38", "v0.0.40"):
        # These versions' accounting records name no output file, and none is guessed.
        assert ended.output_path() is None and ended.error_path() is None
    else:
        # stdout_expanded wins over the %-pattern in stdout; no stderr: errors go to the output file
        assert ended.standard_output == f"{JOBS_DIR}/record-exit0-{ended.job_id}.out"
        assert ended.output_path() == ended.error_path() == f"{JOBS_DIR}/record-exit0-{ended.job_id}.out"


@pytest.mark.parametrize("folder", VERSIONS, ids=ids)
def test_accountings_exit_code_is_trusted_except_on_22_05(folder: Path):
    failed = accounting(folder, "exit3_ended")
    assert failed.state is JobState.FAILED and failed.end_time is not None
    # 22.05 (v0.0.38) records 0 for a job that exited 3: unknown is the honest answer there.
    assert failed.exit_code == (None if folder.name == "v0.0.38" else 3)


@pytest.mark.parametrize("folder", VERSIONS, ids=ids)
def test_odd_entries_in_an_answer_hide_none_of_the_jobs_after_them(folder: Path):
    # A listing's odd entry (no record, or a record of no usable job id) is skipped, never the end of it.
    held = json.loads((folder / "slurm_job_held_pending.json").read_text())["body"]["jobs"][0]
    running = json.loads((folder / "slurm_job_sleep_running.json").read_text())["body"]["jobs"][0]
    odd = ["junk", None, {**held, "job_id": 0}, {**held, "job_id": {"set": False, "number": 5}}]
    assert [j.name for j in parse_controller_jobs([*odd, held, *odd, running])] == ["record-held", "record-sleep"]
    ended = json.loads((folder / "slurmdb_job_exit0_ended.json").read_text())["body"]["jobs"][0]
    unset = {**ended, "job_id": None}
    assert [j.job_id for j in parse_accounting_jobs([unset, 7, ended])] == [ended["job_id"]]
    # a {number} struct without `set` is a set number
    assert [j.job_id for j in parse_controller_jobs([{**held, "job_id": {"number": 12}}])] == [12]


@pytest.mark.parametrize("folder", [v for v in VERSIONS if v.name != "v0.0.38"], ids=ids)
def test_accounting_names_the_signal_that_ended_a_job_and_none_while_it_runs(folder: Path):
    # The recorded jobs ended without a signal: the same records as accounting writes a job killed by SIGKILL.
    doc = json.loads((folder / "slurmdb_job_cancelled_ended.json").read_text())["body"]["jobs"][0]
    doc["exit_code"]["signal"] = {"id": {"set": True, "infinite": False, "number": 9}, "name": "KILL"}
    (killed,) = parse_accounting_jobs([doc])
    assert (killed.state, killed.exit_code, killed.signal) == (JobState.CANCELLED, 0, 9)
    (running,) = parse_accounting_jobs([{**doc, "state": {"current": ["RUNNING"], "reason": "None"}}])
    assert (running.exit_code, running.signal, running.end_time) == (None, None, None)
