"""The wait for a job and the verdict on it, in the words users read: the progress lines, when the wait gives
up and what its errors name, the H:MM:SS durations, and the summary and message a finished job leaves
(issue 18: each test pins behaviour mutation testing found unasserted)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_maxwell import watch as watch_module
from airflow_provider_maxwell.exceptions import SlurmApiError, SlurmJobNotFound
from airflow_provider_maxwell.outcome import judge, summarize
from airflow_provider_maxwell.slurm.states import JobState
from airflow_provider_maxwell.watch import (
    SLURM_CLOCK_SLACK,
    JobWatch,
    Observation,
    WatchDeadlineExceeded,
    WatchSpec,
    array_size,
    describe,
    elapsed_text,
    merge_live,
)
from tests.factories import T0, slurm_job
from tests.unit.client.test_protocol_steps import (
    ACCOUNTING_JOB,
    JOB,
    META,
    Script,
    job_doc,
    jobs,
    ok,
    ops_for,
    state_with,
)

# ---------------------------------------------------------------- durations and sizes


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00:00"), (59, "0:00:59"), (61 * 60, "1:01:00"), (3 * 3600 + 25 * 60 + 7, "3:25:07"), (-5, "0:00:00")],
)
def test_durations_read_as_slurm_prints_them(seconds, text):
    assert elapsed_text(T0, T0 + timedelta(seconds=seconds)) == text


def test_a_job_that_never_started_or_ended_took_no_time():
    assert elapsed_text(None, T0) == elapsed_text(T0, None) == "0:00:00"


@pytest.mark.parametrize(("spec", "size"), [("3", 1), ("1-3,", 3), ("0-9%2", 10), ("5-5", 1), ("0-9:3%1", 4)])
def test_array_sizes(spec, size):
    assert array_size(spec) == size


# ---------------------------------------------------------------- progress lines


def test_progress_lines_for_one_job():
    assert describe([slurm_job(JobState.PENDING, None, reason=None)]) == "PENDING"
    assert describe([slurm_job(JobState.RUNNING, None, nodes="max-wn01")]) == "RUNNING on max-wn01"
    assert describe([slurm_job(JobState.COMPLETED, nodes="max-wn01")]) == "COMPLETED"  # over: not 'on' a node
    requeued = slurm_job(JobState.PENDING, None, flags=frozenset({"REQUEUED"}))
    assert describe([requeued, requeued]) == "2 PENDING+REQUEUED"


def test_the_final_line_says_accounting_and_each_line_is_noted_once():
    watch = JobWatch(WatchSpec(job_id=7, user="alice"))
    running = slurm_job(JobState.RUNNING, None, source="slurmctld", nodes="max-wn01")
    assert watch.step(Observation(live=[running]), 0.0) == (["Slurm job 7: RUNNING on max-wn01"], None)
    assert watch.step(Observation(live=[running]), 10.0) == ([], None)  # no change, no note
    done = slurm_job(JobState.COMPLETED)
    notes, final = watch.step(Observation(live=[], final=[done]), 20.0)
    assert notes == ["Slurm job 7: COMPLETED (accounting)"] and final == [done]


def test_a_record_only_accounting_has_is_shown_until_it_ends():
    watch = JobWatch(WatchSpec(job_id=7, user="alice"))
    notes, final = watch.step(Observation(live=[], final=[slurm_job(JobState.RUNNING, None)]), 0.0)
    assert notes == ["Slurm job 7: RUNNING"] and final is None


def test_an_array_ends_only_when_every_task_has_a_final_record():
    watch = JobWatch(WatchSpec(job_id=7, user="alice", expected_tasks=2))
    one = slurm_job(JobState.COMPLETED, task=0)
    assert watch.step(Observation(live=[], final=[one]), 0.0)[1] is None
    assert watch.asks_accounting([])
    both = [one, slurm_job(JobState.COMPLETED, task=1)]
    assert watch.step(Observation(live=[], final=both), 1.0)[1] == both


def test_slurmctld_showing_every_task_ended_lets_accounting_be_asked():
    watch = JobWatch(WatchSpec(job_id=7, user="alice", expected_tasks=2))
    ended = [slurm_job(JobState.COMPLETED, task=i, source="slurmctld") for i in (0, 1)]
    assert watch.asks_accounting(ended)
    # Tasks not started yet are held as the array's pending entry (no task id of its own): they hold it back.
    not_started = slurm_job(JobState.PENDING, None, source="slurmctld", array_job_id=7)
    assert not watch.asks_accounting([ended[0], not_started])
    # A task slurmctld no longer holds ended before (purged): the held tasks' ends are enough, as in the poller.
    assert watch.asks_accounting(ended[:1])
    # The worker's and sensor's accounting read carries the usage: an ending job's epilog is left to finish.
    completing = slurm_job(JobState.COMPLETED, task=0, source="slurmctld", flags=frozenset({"COMPLETING"}))
    assert not watch.asks_accounting([completing, ended[1]])
    assert watch.asks_accounting(None)


# ---------------------------------------------------------------- giving up


def test_a_job_live_in_slurmctld_but_not_in_accounting_is_never_declared_gone():
    watch = JobWatch(WatchSpec(job_id=7, user="alice", vanish_after=10))
    running = slurm_job(JobState.RUNNING, None, source="slurmctld")
    for now in (0.0, 100.0, 10_000.0):
        assert watch.step(Observation(live=[running], final=[]), now)[1] is None


def test_the_not_found_error_names_the_job_and_the_server():
    watch = JobWatch(WatchSpec(job_id=42, user="alice", vanish_after=0), url="https://rest.example/sapi")
    watch.step(Observation(live=[], final=[]), 1000.0)
    with pytest.raises(SlurmJobNotFound) as failure:
        watch.step(Observation(live=[], final=[]), 1000.5)
    assert (failure.value.job_id, failure.value.url) == (42, "https://rest.example/sapi")


def test_the_deadline_is_inclusive_and_names_what_was_last_seen():
    watch = JobWatch(WatchSpec(job_id=7, user="alice", deadline=100.0))
    watch.check_deadline(100.0)
    with pytest.raises(WatchDeadlineExceeded, match=r"^Slurm job 7 still unknown at the deadline$"):
        watch.check_deadline(100.5)
    JobWatch(WatchSpec(job_id=7, user="alice")).check_deadline(1e12)  # no deadline: waits for ever


def test_the_workers_wait_gives_up_on_a_vanished_job_naming_the_server(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(watch_module, "_now", lambda: clock[0])
    script = Script({JOB: [ok({**META, "jobs": []})], ACCOUNTING_JOB: [ok({**META, "jobs": []})]})
    protocol = watch_module.watch(ops_for(state_with()), WatchSpec(job_id=7, user="alice", vanish_after=25))
    result: object = None
    with pytest.raises(SlurmJobNotFound) as failure:
        while True:
            effect = protocol.send(result)
            if type(effect).__name__ == "Sleep":
                clock[0] += 10
            result = script.answer(effect)
    assert failure.value.url == "https://rest.example" and clock[0] == 1030.0


def test_errors_other_than_outages_end_the_wait():
    refused = SlurmApiError("refused", status=400, url="u")
    with pytest.raises(SlurmApiError):
        JobWatch(WatchSpec(job_id=7, user="alice")).step(Observation(error=refused), 0.0)


# ---------------------------------------------------------------- which records are ours


def test_the_newest_record_under_the_id_is_claimed_and_nothing_when_none():
    watch = JobWatch(WatchSpec(job_id=7, user="alice"))
    assert watch.claim(Observation(live=[], final=[slurm_job(JobState.RUNNING, job_id=8)])) is None
    old = slurm_job(JobState.FAILED, submit_time=T0 - timedelta(hours=1))
    new = slurm_job(JobState.RUNNING, None)
    assert watch.claim(Observation(final=[old, new])) is new
    assert watch.spec.submitted_after == new.submitted


def test_pinning_follows_slurmctlds_submit_time_only():
    spec = WatchSpec(job_id=7, user="alice")
    live = slurm_job(JobState.RUNNING, None, source="slurmctld")
    assert spec.pinned_to(live) == WatchSpec(
        job_id=7, user="alice", submitted_after=live.submitted, submit_slack=SLURM_CLOCK_SLACK
    )
    assert spec.pinned_to(slurm_job(JobState.RUNNING, None)) is spec  # accounting's record
    assert spec.pinned_to(slurm_job(JobState.RUNNING, None, source="slurmctld", submit_time=None)) is spec
    assert WatchSpec(job_id=7, user="alice", submitted_after=live.submitted + 1).belongs(live)  # within 60 s
    assert spec.belongs(slurm_job(JobState.RUNNING, None, user=""))  # no user shown: not refused for it


def test_the_spec_travels_as_plain_keyword_arguments():
    spec = WatchSpec(job_id=7, user="alice", deadline=5.0, expected_tasks=3)
    assert WatchSpec(**spec.to_kwargs()) == spec
    assert spec.to_kwargs()["expected_tasks"] == 3 and len(spec.to_kwargs()) == 9


def test_slurmctlds_exit_code_and_name_fill_what_accounting_lacks():
    final = [slurm_job(JobState.FAILED, None, name="allocation")]
    live = [slurm_job(JobState.FAILED, 3, source="slurmctld", name="reduce", signal=None)]
    (merged,) = merge_live(final, live)
    assert (merged.exit_code, merged.name) == (3, "reduce")
    (kept,) = merge_live([slurm_job(JobState.FAILED, 2)], live)
    assert (kept.exit_code, kept.name) == (2, "reduce")
    (alone,) = merge_live(final, [slurm_job(JobState.FAILED, 3, source="slurmctld", name="")])
    assert (alone.exit_code, alone.name) == (3, "allocation")


# ---------------------------------------------------------------- verdicts


def test_a_summary_covers_every_task():
    tasks = [
        slurm_job(JobState.COMPLETED, task=0, nodes="max-wn02,max-wn01"),
        slurm_job(
            JobState.FAILED,
            2,
            task=1,
            nodes="max-wn01",
            start_time=T0 + timedelta(seconds=5),
            end_time=T0 + timedelta(seconds=95),
        ),
    ]
    assert summarize(7, tasks) == {
        "job_id": 7,
        "name": "reduce",
        "user": "alice",
        "state": "FAILED",
        "exit_code": None,
        "nodes": "max-wn01,max-wn02",
        "start": T0.isoformat(),
        "end": (T0 + timedelta(seconds=95)).isoformat(),
        "elapsed": "0:01:35",
        "output": None,
        "array_tasks": 2,
        "state_counts": {"COMPLETED": 1, "FAILED": 1},
        "failed_tasks": [{"index": 1, "state": "FAILED", "exit_code": 2}],
    }


def test_a_single_jobs_summary_has_no_array_fields():
    summary = summarize(7, [slurm_job(JobState.COMPLETED, start_time=None, end_time=None)])
    assert summary["start"] is None and summary["end"] is None and summary["elapsed"] == "0:00:00"
    assert "array_tasks" not in summary and summary["exit_code"] == 0 and summary["state"] == "COMPLETED"


def test_a_killed_job_says_which_signal():
    outcome = judge(7, [slurm_job(JobState.CANCELLED, None, signal=9, nodes="max-wn01")])
    assert outcome.message == (
        "Slurm job 7 (reduce) ended CANCELLED by signal 9 after 0:00:30 on max-wn01 (cancelled outside Airflow: "
        "not retried)"
    )
    assert not outcome.retryable


def test_an_arrays_failure_reads_in_full():
    tasks = [
        slurm_job(JobState.FAILED, 1, task=0, nodes="max-wn01", standard_output="/o/%a.out"),
        slurm_job(JobState.NODE_FAIL, None, task=1),
    ]
    outcome = judge(7, tasks)
    assert outcome.message == (
        "Slurm array job 7 (reduce): 2 of 2 tasks did not complete [0: FAILED (exit code 1), 1: NODE_FAIL] after "
        "0:00:30 on max-wn01; output: /o/0.out"
    )
    assert outcome.retryable  # not every failure was the cluster's, but none was a cancel either


def test_exactly_five_failures_are_listed_without_a_count():
    outcome = judge(7, [slurm_job(JobState.FAILED, 0, task=i) for i in range(5)])
    assert "[0: FAILED, 1: FAILED, 2: FAILED, 3: FAILED, 4: FAILED] after" in outcome.message


def test_a_cancel_among_cluster_failures_is_the_users_and_is_not_retried():
    tasks = [slurm_job(JobState.CANCELLED, None, task=0), slurm_job(JobState.NODE_FAIL, None, task=1)]
    outcome = judge(7, tasks)
    assert not outcome.retryable and outcome.message.endswith(" (cancelled outside Airflow: not retried)")
    only_cluster = judge(7, [slurm_job(JobState.PREEMPTED, None)])
    assert only_cluster.message.endswith("after 0:00:30 (ended by the cluster, not the job: retryable)")


def test_a_task_of_one_is_judged_as_an_array():
    outcome = judge(7, [slurm_job(JobState.FAILED, 4, task=3)])
    assert outcome.message.startswith("Slurm array job 7 (reduce): 1 of 1 tasks did not complete [3: FAILED (exit")
    assert outcome.summary["array_tasks"] == 1


def test_success_reads_in_full():
    outcome = judge(7, [slurm_job(JobState.COMPLETED)])
    assert (outcome.succeeded, outcome.retryable, outcome.message) == (
        True,
        True,
        "Slurm job 7 (reduce) ended COMPLETED after 0:00:30",
    )


def test_the_slurmctld_record_of_the_watch_notes_pending_reasons():
    script = Script({JOB: [jobs(job_doc(7, "PENDING", state_reason="Priority")), jobs(job_doc(7, "RUNNING"))]})
    watch = JobWatch(WatchSpec(job_id=7, user="alice"))
    live = script.run(ops_for(state_with()).controller_jobs(7))
    assert watch.step(Observation(live=live), 0.0)[0] == ["Slurm job 7: PENDING (Priority)"]
