"""What users write, run the way users run it: `airflow dags test` against the local Maxwell."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.live_output import OutputAccess, OutputFollower
from airflow_provider_maxwell.slurm.states import JobState
from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
from airflow_provider_maxwell.watch import WatchSpec

from .airflow_cli import (
    AIRFLOW,
    EXAMPLES,
    TEST_DAGS,
    dags_test,
    noisy_task_lines,
    start_until_running,
    submitted_ids,
    task_sections,
    task_state,
)


def wait_until(predicate, timeout: float = 60, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


# ------------------------------------------------------------------ the example DAGs


@pytest.fixture(scope="module")
def timeout_run(airflow_env, tmp_path_factory) -> Iterator[tuple[subprocess.Popen, Path]]:
    """The time-limit case takes 60-90 s of Slurm's time: start it first, collect it last. It gets
    its own Airflow home: two `dags test` processes on one SQLite database contend for its lock."""
    home = tmp_path_factory.mktemp("airflow-home-timeout")
    env = {**airflow_env, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    log = (home / "dags-test.log").open("w")  # a file, not a pipe: nobody reads it until the end
    proc = subprocess.Popen(
        [AIRFLOW, "dags", "test", "maxwell_outcome_sync", "-c", json.dumps({"script": "#!/bin/bash\nsleep 300\n"})],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc, home / "dags-test.log"
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)
    log.close()


def photons(frames: int) -> int:
    """The examples' simulated run: frame k counted k photons, so n frames hold n(n+1)/2."""
    return frames * (frames + 1) // 2


def test_beamtime_processing_maps_one_job_per_run_and_sums_each_runs_photons(airflow_env, timeout_run):
    rc, out = dags_test(airflow_env, EXAMPLES, "beamtime_processing", {"runs": [1, 3], "frames_per_run": 400})
    assert rc == 0, out[-3000:]
    assert len(set(submitted_ids(out))) == 2
    assert "Pausing task as DEFERRED" in out
    assert not noisy_task_lines(out), "\n".join(noisy_task_lines(out))  # healthy: no warning or error
    summary = task_sections(out)["summarize"]
    # The summary read each job's output: the sums the jobs computed on Maxwell, checked here by Gauss.
    assert photons(400) == 80200 and photons(1200) == 720600
    for run in (1, 3):
        frames = run * 400
        line = rf"job \d+: COMPLETED .*: run {run}: {frames} frames, {photons(frames)} photons\n"
        assert re.search(line, summary), summary[-3000:]


def test_nightly_reduction_by_hand_reduces_the_day_before_and_updates_its_asset(airflow_env):
    rc, out = dags_test(airflow_env, EXAMPLES, "nightly_reduction")
    assert rc == 0, out[-3000:]
    # A run by hand reduces the 24 hours up to its logical date, and its job's log says which ones.
    interval = re.search(r"run (manual__\S+): reducing the data from (\S+ \S+) to (\S+ \S+)\n", out)
    assert interval, out[-3000:]
    start, end = (datetime.fromisoformat(moment) for moment in interval.group(2, 3))
    assert end - start == timedelta(days=1)
    assert f"reduced 24 hours of data, up to {interval.group(3)}" in out
    assert "Pausing task as DEFERRED" in out and "ended COMPLETED" in out
    (job_id,) = submitted_ids(out)
    # What the job used, read by the trigger from the job's own accounting record, in one task-log line.
    assert re.search(rf"Slurm job {job_id} ran \d+:\d\d:\d\d \(.* of its .* limit\), .*node-hours", out), out[-3000:]
    # The asset event in Airflow's database names the job, for the DAGs scheduled on the asset.
    database = sqlite3.connect(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db")
    with closing(database):
        extras = database.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = ? ORDER BY e.id",
            ("maxwell_nightly_reduction",),
        ).fetchall()
    assert [json.loads(extra).get("slurm_job_id") for (extra,) in extras][-1:] == [job_id]


def test_gated_analysis_runs_after_the_gating_job_completed_and_reads_its_output(airflow_env, hook, cluster):
    job_id = hook.submit_job(
        "#!/bin/bash\necho reduced 24 hours of data, up to today\n",
        name="nightly.reduce",
        current_working_directory=cluster["jobs_dir"],
    )
    rc, out = dags_test(airflow_env, EXAMPLES, "gated_analysis", {"job_id": job_id})
    assert rc == 0, out[-3000:]
    assert f"Slurm job {job_id} (nightly.reduce) ended COMPLETED" in out
    assert re.search(rf"Slurm job {job_id} ran \d+:\d\d:\d\d", out), out[-3000:]  # the sensor's usage line
    analysis = task_sections(out)["analysis"]
    assert f"analysing the output of job {job_id}: {cluster['jobs_dir']}/slurm-{job_id}.out" in analysis
    assert "its last line: reduced 24 hours of data, up to today" in analysis, analysis[-3000:]


# ------------------------------------------------------------------ outcomes


def test_job_exiting_3_fails_the_task_with_one_clear_line(airflow_env):
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_outcome", {"script": "#!/bin/bash\necho bad input\nexit 3\n"})
    assert rc != 0
    assert re.search(
        r"AirflowException: Slurm job \d+ \(maxwell_outcome\.job\) ended FAILED with exit code 3 after "
        r"\d+:\d\d:\d\d on maxwn26; output: \S+/slurm-\d+\.out",
        out,
    ), out[-3000:]
    assert "bad input" in out  # the output's last lines reached the task log


def test_array_with_one_failing_index_names_it(airflow_env):
    script = "#!/bin/bash\necho task $SLURM_ARRAY_TASK_ID\nexit $((SLURM_ARRAY_TASK_ID == 3 ? 7 : 0))\n"
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_outcome", {"script": script, "array": "0-4"})
    assert rc != 0
    assert re.search(
        r"Slurm array job \d+ \(maxwell_outcome\.job\): 1 of 5 tasks did not complete "
        r"\[3: FAILED \(exit code 7\)\]",
        out,
    ), out[-3000:]


def test_job_cancelled_outside_airflow_fails_without_retry(airflow_env, hook, spawned):
    proc, seen, job_id = start_until_running(airflow_env, "maxwell_outcome", spawned)
    hook.cancel_job(job_id)  # someone outside Airflow (scancel)
    assert proc.stdout is not None
    out = seen + proc.stdout.read()
    assert proc.wait(timeout=120) != 0
    assert re.search(
        rf"AirflowFailException: Slurm job {job_id} \(maxwell_outcome\.job\) ended CANCELLED .*"
        r"\(cancelled outside Airflow: not retried\)",
        out,
    ), out[-3000:]


def test_killing_a_running_task_cancels_its_job(airflow_env, hook, spawned):
    proc, _, job_id = start_until_running(airflow_env, "maxwell_outcome_sync", spawned)
    proc.send_signal(signal.SIGTERM)  # what the supervisor does when a user marks the task failed
    proc.communicate(timeout=120)
    job = wait_until(lambda: (j := hook.get_job(job_id)).is_terminal and j, timeout=60)
    assert job.state is JobState.CANCELLED


def test_killing_a_deferred_task_cancels_its_job(hook, cluster):
    job_id = hook.submit_job(
        "#!/bin/bash\nsleep 120\n", name="deferred.kill", current_working_directory=cluster["jobs_dir"]
    )
    spec = WatchSpec(job_id=job_id, user=hook.config.login, submitted_after=time.time() - 5, poll_interval=1)
    trigger = MaxwellJobTrigger(maxwell_conn_id="maxwell_default", spec=spec.to_kwargs())

    async def kill_while_waiting() -> None:
        # As Airflow 3.3's triggerer does on "mark failed": cancel run() first, then await on_kill().
        waiting = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(3)
        assert not waiting.done()
        waiting.cancel("__airflow_user_action__")
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await trigger.on_kill()

    asyncio.run(kill_while_waiting())
    job = wait_until(lambda: (j := hook.get_job(job_id)).is_terminal and j, timeout=60)
    assert job.state is JobState.CANCELLED


def test_trigger_kwargs_carry_no_secret(hook):
    spec = WatchSpec(job_id=1, user=hook.config.login)
    _, kwargs = MaxwellJobTrigger(maxwell_conn_id="maxwell_default", spec=spec.to_kwargs()).serialize()
    text = json.dumps(kwargs)
    assert hook.get_token() not in text and (hook.config.password or "") not in text
    assert set(kwargs) == {"maxwell_conn_id", "spec", "success_states", "cancel_on_deadline", "live_output"}
    # Live output's state is a path, the rule of which file may be read, an offset and limits: plain values.
    follower = OutputFollower("/beegfs/me/slurm-1.out", OutputAccess(20001, ("/beegfs/me",)))
    _, kwargs = MaxwellJobTrigger(
        maxwell_conn_id="maxwell_default", spec=spec.to_kwargs(), live_output=follower.to_kwargs()
    ).serialize()
    assert set(kwargs["live_output"]) == set(follower.to_kwargs())
    assert hook.get_token() not in json.dumps(kwargs)


@pytest.mark.parametrize("mode", ["before_save", "after_save"])
def test_retry_after_a_worker_crash_reattaches_instead_of_resubmitting(airflow_env, hook, mode):
    rc, out = dags_test(airflow_env, TEST_DAGS, f"maxwell_crash_{mode}")
    assert rc == 0, out[-3000:]
    assert "simulated worker crash" in out
    ids = submitted_ids(out)
    assert len(ids) == 1, f"submitted {ids}"
    assert f"Re-attaching to Slurm job {ids[0]} of this task instance" in out
    run_id = re.search(r"run_id=(manual__\S+?),", out)
    assert run_id
    tag = f"airflow:maxwell_crash_{mode}/job/{run_id.group(1)}/-1"
    # The comment is the tag, then the submission's mark (the one word that identifies one submit call).
    found = hook.find_jobs_by_name(f"maxwell_crash_{mode}.job")
    same_task_instance = [j for j in found if (j.comment or "").split(" ", 1)[0] == tag]
    assert [j.job_id for j in same_task_instance] == ids  # one job in Slurm for this task instance, not two


# ------------------------------------------------------------------ the sensor


def test_sensor_on_a_finished_and_purged_job_succeeds_from_accounting(airflow_env, hook, cluster):
    job_id = hook.submit_job("#!/bin/bash\ntrue\n", name="sensor.target", current_working_directory=cluster["jobs_dir"])
    wait_until(lambda: hook.get_controller_jobs(job_id) is None, timeout=90, every=1)  # purged (MinJobAge)
    for dag_id in ("maxwell_sensor", "maxwell_sensor_deferred"):
        rc, out = dags_test(airflow_env, TEST_DAGS, dag_id, {"job_id": job_id})
        assert rc == 0, out[-3000:]
        assert f"Slurm job {job_id} (sensor.target) ended COMPLETED" in out
        assert "Pausing task as DEFERRED" not in out  # a finished job never defers


def test_deferred_sensor_waits_for_a_running_job(airflow_env, hook, cluster):
    job_id = hook.submit_job(
        "#!/bin/bash\nsleep 30\n", name="sensor.running", current_working_directory=cluster["jobs_dir"]
    )
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_sensor_deferred", {"job_id": job_id})
    assert rc == 0, out[-3000:]
    assert "Pausing task as DEFERRED" in out and f"Slurm job {job_id} (sensor.running) ended COMPLETED" in out


def test_sensor_fails_fast_on_a_failed_job(airflow_env, hook, cluster):
    job_id = hook.submit_job(
        "#!/bin/bash\nexit 2\n", name="sensor.failed", current_working_directory=cluster["jobs_dir"]
    )
    wait_until(lambda: (j := hook.get_accounting_job(job_id)) is not None and j.is_terminal)
    began = time.monotonic()
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_sensor", {"job_id": job_id})
    assert rc != 0 and time.monotonic() - began < 120
    assert f"AirflowFailException: Slurm job {job_id} (sensor.failed) ended FAILED with exit code 2" in out


def test_job_past_its_time_limit_fails_the_task(timeout_run):
    proc, log = timeout_run
    assert proc.wait(timeout=300) != 0
    out = log.read_text()
    assert re.search(r"Slurm job \d+ \(maxwell_outcome_sync\.job\) ended TIMEOUT", out), out[-3000:]


def test_overall_timeout_cancels_the_job_and_fails_the_task(airflow_env, hook):
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_overall_timeout")
    assert rc != 0
    job_id = submitted_ids(out)[0]
    assert re.search(rf"Slurm job {job_id} still RUNNING.* at the deadline; cancelled it \(timeout=8", out), out[-3000:]
    job = wait_until(lambda: (j := hook.get_job(job_id)).is_terminal and j, timeout=60)
    assert job.state is JobState.CANCELLED


def test_soft_fail_sensor_skips_on_a_failed_job(airflow_env, hook, cluster):
    job_id = hook.submit_job("#!/bin/bash\nexit 4\n", name="sensor.soft", current_working_directory=cluster["jobs_dir"])
    wait_until(lambda: (j := hook.get_accounting_job(job_id)) is not None and j.is_terminal)
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_sensor_soft_fail", {"job_id": job_id})
    assert rc == 0, out[-3000:]
    assert f"Slurm job {job_id} (sensor.soft) ended FAILED with exit code 4" in out
    assert task_state(airflow_env, "maxwell_sensor_soft_fail", "wait") == "skipped", out[-3000:]
