"""What a finished job means for the task, decided from SlurmJob alone (no cluster needed)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_maxwell.outcome import judge
from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.slurm.states import JobState
from airflow_provider_maxwell.watch import WatchSpec, array_size, describe

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)


def job(state: JobState, exit_code: int | None = 0, task: int | None = None, **kw) -> SlurmJob:
    return SlurmJob(
        job_id=kw.pop("job_id", 7),
        name="nightly.reduce",
        user=kw.pop("user", "alice"),
        partition="maxcpu",
        state=state,
        source="slurmdb",
        exit_code=exit_code,
        submit_time=kw.pop("submit", T0),
        start_time=T0,
        end_time=T0 + timedelta(minutes=1, seconds=2),
        nodes="max-wn01",
        working_directory="/data",
        array_job_id=7 if task is not None else None,
        array_task_id=task,
        **kw,
    )


def test_success_and_its_summary_are_plain_json():
    outcome = judge(7, [job(JobState.COMPLETED)])
    assert outcome.succeeded and outcome.message == "Slurm job 7 (nightly.reduce) ended COMPLETED after 0:01:02"
    assert json.loads(json.dumps(outcome.summary)) == outcome.summary  # plain JSON, fit for XCom
    assert outcome.summary["output"] is None  # an accounting record without a stdout path: no guess


def test_failure_is_one_line_with_exit_code_duration_node_and_output():
    failed = job(JobState.FAILED, 3, standard_output="/data/slurm-%j.out")
    outcome = judge(7, [failed])
    assert not outcome.succeeded and outcome.retryable
    assert outcome.message == (
        "Slurm job 7 (nightly.reduce) ended FAILED with exit code 3 after 0:01:02 on max-wn01; "
        "output: /data/slurm-7.out"
    )


@pytest.mark.parametrize("state", [JobState.NODE_FAIL, JobState.BOOT_FAIL, JobState.PREEMPTED])
def test_ends_caused_by_the_cluster_are_retryable(state):
    outcome = judge(7, [job(state, None)])
    assert not outcome.succeeded and outcome.retryable and "ended by the cluster" in outcome.message


def test_cancelled_outside_airflow_is_not_retried():
    outcome = judge(7, [job(JobState.CANCELLED, None)])
    assert not outcome.retryable and "cancelled outside Airflow" in outcome.message


def test_a_completed_job_with_nonzero_exit_is_no_success():
    assert not judge(7, [job(JobState.COMPLETED, 1)]).succeeded


def test_arrays_list_the_first_failures_then_a_count():
    tasks = [job(JobState.FAILED, i, task=i) for i in range(7)] + [
        job(JobState.COMPLETED, 0, task=i) for i in range(7, 10)
    ]
    outcome = judge(7, tasks)
    assert "7 of 10 tasks did not complete [0: FAILED, 1: FAILED (exit code 1)," in outcome.message
    assert "4: FAILED (exit code 4) and 2 more]" in outcome.message
    assert outcome.summary["state_counts"] == {"FAILED": 7, "COMPLETED": 3} and outcome.summary["array_tasks"] == 10


def test_sensor_success_states_widen_what_counts_as_success():
    assert judge(7, [job(JobState.FAILED, 3)], frozenset({"COMPLETED", "FAILED"})).succeeded
    assert not judge(7, [job(JobState.TIMEOUT, None)], frozenset({"COMPLETED", "FAILED"})).succeeded


def test_a_reused_job_id_is_not_taken_for_ours():
    spec = WatchSpec(job_id=7, user="alice", submitted_after=T0.timestamp())
    assert spec.belongs(job(JobState.COMPLETED))
    assert not spec.belongs(job(JobState.COMPLETED, user="bob"))  # someone else's job under our id
    assert not spec.belongs(job(JobState.COMPLETED, submit=T0 - timedelta(days=3)))  # an older job before a reset


def test_array_sizes_and_progress_lines():
    assert [array_size(s) for s in ("0-99%10", "1,3,5-7", "0-10:2", None, "")] == [100, 5, 6, 1, 1]
    pending = SlurmJob(
        job_id=1, name="x", user="a", partition="p", state=JobState.PENDING, source="slurmctld", reason="Priority"
    )
    assert describe([pending]) == "PENDING (Priority)"
    assert describe([job(JobState.COMPLETED, task=0), job(JobState.FAILED, 1, task=1)]) == "1 COMPLETED, 1 FAILED"


def test_a_reused_id_within_the_clock_slack_ends_with_the_newest_record():
    # A state reset moments before submission: the older record of the same user passes `belongs`
    # (clocks may disagree by a minute), so it is the newest record under the id that counts.
    from airflow_provider_maxwell.watch import JobWatch, Observation

    spec = WatchSpec(job_id=7, user="alice", submitted_after=T0.timestamp())
    old = job(JobState.FAILED, 3, submit=T0 - timedelta(seconds=20))
    ours = job(JobState.RUNNING, None, submit=T0 + timedelta(seconds=1))
    watch = JobWatch(spec)
    notes, final = watch.step(Observation(live=[], final=[old, ours]), T0.timestamp())
    assert final is None and notes == ["Slurm job 7: RUNNING on max-wn01"]
    done = job(JobState.COMPLETED, 0, submit=T0 + timedelta(seconds=1))
    notes, final = watch.step(Observation(live=[], final=[done, old]), T0.timestamp() + 30)
    assert final == [done]
    assert judge(7, final).succeeded


def test_once_slurmctld_shows_the_job_an_older_record_under_its_id_is_never_taken():
    # Accounting may list the old job's record before it has ours (it lags slurmctld by seconds):
    # with the job pinned by the submit time slurmctld gave, that record does not end the wait.
    from dataclasses import replace

    from airflow_provider_maxwell.watch import JobWatch, Observation

    spec = WatchSpec(job_id=7, user="alice", submitted_after=T0.timestamp())
    old = job(JobState.FAILED, 3, submit=T0 - timedelta(seconds=20))
    live = replace(job(JobState.RUNNING, None, submit=T0 + timedelta(seconds=1)), source="slurmctld")
    assert spec.belongs(old)  # within the worker clock's slack
    pinned = spec.pinned_to(live)
    assert not pinned.belongs(old) and pinned.belongs(live)
    assert spec.pinned_to(replace(live, source="slurmdb")) == spec  # accounting may show the old job
    assert spec.pinned_to(replace(live, user="bob")) == spec  # someone else's job pins nothing

    watch = JobWatch(spec)
    watch.step(Observation(live=[live]), T0.timestamp())
    notes, final = watch.step(Observation(live=[], final=[old]), T0.timestamp() + 10)
    assert final is None and not notes  # the old FAILED record is not ours: keep waiting
    assert WatchSpec(**pinned.to_kwargs()) == pinned  # the pin travels in trigger kwargs


def test_slurmctlds_record_fills_what_accounting_of_2205_lacks():
    # Measured on 22.05 for a job that failed at launch (its output file not writable): accounting
    # names it "allocation" for some seconds and keeps no exit code or signal; slurmctld has both.
    from dataclasses import replace

    from airflow_provider_maxwell.watch import merge_live

    final = replace(job(JobState.FAILED, None), name="allocation")
    live = replace(job(JobState.FAILED, None, signal=53), source="slurmctld")
    [merged] = merge_live([final], [live])
    assert (merged.name, merged.exit_code, merged.signal, merged.source) == ("nightly.reduce", None, 53, "slurmdb")
    assert judge(7, [merged]).message.startswith("Slurm job 7 (nightly.reduce) ended FAILED by signal 53")
    exited = replace(job(JobState.FAILED, 3), source="slurmctld")
    assert merge_live([job(JobState.FAILED, None)], [exited])[0].exit_code == 3
    assert merge_live([job(JobState.FAILED, 4)], [exited])[0].exit_code == 4  # accounting's own stays
