"""The deferred wait's progress lines say what a scientist waits on, as the worker's do: why the job is
pending and where it runs. slurmctld's jobs/state (what the shared poller asks each round) names the
state only; the job's own record, as Slurm's releases answer it (tests/data), names reason and nodes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_maxwell.poll_round import DETAIL_READS, REASON_LOOKS, PollRound, PollState, Wait
from airflow_provider_maxwell.watch import JobWatch, WatchSpec
from tests.paths import PROJECT
from tests.unit.client.test_protocol_steps import Script, jobs, ops_for, state_with
from tests.unit.triggers.test_poller_rounds import states

RELEASES = {"v0.0.42": "slurm-24.11.5", "v0.0.45": "slurm-26.05.5"}  # the releases with jobs/state
SUBMITTED = 1796110506  # the recorded jobs' submit time: the waits are the submitting task's


def recorded(version: str, name: str) -> dict[str, Any]:
    path = PROJECT / "tests" / "data" / RELEASES[version] / version / f"slurm_job_{name}.json"
    return json.loads(path.read_text())["body"]["jobs"][0]


def progress(script: Script, version: str, wait: Wait, now: float) -> list[str]:
    """One round's progress lines for the wait, as its trigger logs them."""
    delivered = script.run(PollRound(ops_for(state_with(version)), PollState(), [wait], now).run())
    return [note for _, seen in delivered for note in wait.watch.step(seen, now)[0]]


@pytest.mark.parametrize("version", RELEASES)
def test_the_deferred_waits_progress_names_the_pending_reason_and_the_node(version):
    running = recorded(version, "sleep_running")
    job_id, node = running["job_id"], running["nodes"]
    held = recorded(version, "held_pending")
    pending = {**held, "job_id": job_id, "state_reason": "None"}  # just submitted: no scheduling pass yet
    queued = {**held, "job_id": job_id, "state_reason": "Priority"}
    state_path, job_path = f"/slurm/{version}/jobs/state", f"/slurm/{version}/job/{job_id}"
    wait = Wait(JobWatch(WatchSpec(job_id=job_id, user=running["user_name"], submitted_after=SUBMITTED)))
    script = Script({state_path: [states((str(job_id), "PENDING"))], job_path: [jobs(pending)]})
    assert progress(script, version, wait, 1.0) == [f"Slurm job {job_id}: PENDING"]
    # Still pending, and no reason yet: its record is read again, and the reason slurmctld set shows.
    script.replies[job_path] = [jobs(queued)]
    assert progress(script, version, wait, 2.0) == [f"Slurm job {job_id}: PENDING (Priority)"]
    # Known now: the same word from jobs/state costs no other request, and is no news.
    script.sent.clear()
    assert progress(script, version, wait, 3.0) == []
    assert [c.url.endswith("/jobs/state") for c in script.sent] == [True]
    script.replies = {state_path: [states((str(job_id), "RUNNING"))], job_path: [jobs(running)]}
    assert progress(script, version, wait, 4.0) == [f"Slurm job {job_id}: RUNNING on {node}"]


def test_at_most_detail_reads_records_are_read_a_round_and_the_others_get_the_state_alone():
    ids = list(range(100, 100 + DETAIL_READS + 2))
    doc = recorded("v0.0.45", "sleep_running")
    replies: dict[str, Any] = {"/slurm/v0.0.45/jobs/state": [states(*((str(i), "RUNNING") for i in ids))]}
    replies |= {f"/slurm/v0.0.45/job/{i}": [jobs({**doc, "job_id": i})] for i in ids}
    waits = [Wait(JobWatch(WatchSpec(job_id=i, user=doc["user_name"], submitted_after=SUBMITTED))) for i in ids]
    script = Script(replies)
    delivered = script.run(PollRound(ops_for(state_with("v0.0.45")), PollState(), waits, 1.0).run())
    assert sum(1 for c in script.sent if "/job/" in c.url) == DETAIL_READS
    lines = sorted(note for wait, seen in delivered for note in wait.watch.step(seen, 1.0)[0])
    assert sum(line.endswith(f"RUNNING on {doc['nodes']}") for line in lines) == DETAIL_READS
    assert sum(line.endswith(": RUNNING") for line in lines) == 2


def test_a_job_pending_without_a_reason_is_read_a_bounded_number_of_times():
    doc = {**recorded("v0.0.45", "held_pending"), "state_reason": "None"}
    job_id = doc["job_id"]
    wait = Wait(JobWatch(WatchSpec(job_id=job_id, user=doc["user_name"], submitted_after=SUBMITTED)))
    script = Script(
        {"/slurm/v0.0.45/jobs/state": [states((str(job_id), "PENDING"))], f"/slurm/v0.0.45/job/{job_id}": [jobs(doc)]}
    )
    reads = 0
    for now in range(1, 8):
        script.sent.clear()
        progress(script, "v0.0.45", wait, float(now))
        reads += sum(1 for c in script.sent if c.url.endswith(f"/job/{job_id}"))
    assert reads == REASON_LOOKS


def test_a_deferred_sensors_first_round_names_the_node_of_the_job_it_was_given():
    running = recorded("v0.0.45", "sleep_running")
    job_id, node = running["job_id"], running["nodes"]
    path = PROJECT / "tests" / "data" / "slurm-26.05.5" / "v0.0.45" / "slurmdb_job_sleep_running.json"
    in_accounting = json.loads(path.read_text())["body"]["jobs"]
    script = Script(
        {
            "/slurm/v0.0.45/jobs/state": [states((str(job_id), "RUNNING"))],
            f"/slurm/v0.0.45/job/{job_id}": [jobs(running)],
            "/slurmdb/v0.0.45/jobs": [jobs(*in_accounting)],
        }
    )
    wait = Wait(JobWatch(WatchSpec(job_id=job_id, user=running["user_name"])))  # an id given from outside
    assert progress(script, "v0.0.45", wait, 1.0) == [f"Slurm job {job_id}: RUNNING on {node}"]


def test_a_deferring_operator_says_why_its_job_waits_before_the_triggerer_takes_over(fake, capsys):
    from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
    from tests.fake_slurm import META

    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

    pending = {"job_id": 41, "job_state": ["PENDING"], "state_reason": "Dependency", "user_name": "alice"}
    fake.script["/slurm/v0.0.44/job/submit"] = [(200, {}, {**META, "job_id": 41})]
    fake.script["/slurm/v0.0.44/job/41"] = [(200, {}, {**META, "jobs": [pending]})]
    task = MaxwellSubmitJobOperator(
        task_id="t", script="#!/bin/bash\ntrue\n", maxwell_conn_id=fake.conn_id, deferrable=True, durable=False
    )
    ti = type("TI", (), {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1, "try_number": 1})()
    ti.xcom_push = lambda key, value: None  # type: ignore[attr-defined]
    with pytest.raises(TaskDeferred):
        task.execute({"ti": ti})
    assert "Slurm job 41: PENDING (Dependency)" in capsys.readouterr().out
