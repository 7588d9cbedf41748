"""Live output against the real daemons: a line a job prints half way shows in the task log while the job
still runs, from the operator's blocking wait and from the trigger (the triggerer's code, run here)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_maxwell.exceptions import MaxwellError
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from airflow_provider_maxwell.live_output import OutputFollower, output_access
from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
from airflow_provider_maxwell.slurm.states import JobState
from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
from airflow_provider_maxwell.watch import WatchSpec

HALF_WAY = "#!/bin/bash\necho 'first half done'\nsleep 20\necho 'second half done'\n"


def wait_for(capsys: pytest.CaptureFixture[str], text: str, timeout: float) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += capsys.readouterr().out
        if text in seen:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not logged within {timeout} s; logged:\n{seen}")


def test_the_operators_wait_logs_a_line_printed_mid_job_before_the_job_ends(
    signed_conn_id: str, cluster: dict[str, Any], capsys: pytest.CaptureFixture[str]
):
    conn_id = signed_conn_id
    hook = MaxwellHook(conn_id)
    task = MaxwellSubmitJobOperator(
        task_id="live",
        script=HALF_WAY,
        maxwell_conn_id=conn_id,
        current_working_directory=cluster["jobs_dir"],
        job_fields={"standard_output": f"{cluster['jobs_dir']}/%x-%j.out"},
        time_limit=5,
        poll_interval=1,
        deferrable=False,
    )
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id="live_output",
        task_id="live",
        run_id=f"r{time.time_ns()}",
        map_index=-1,
        try_number=1,
        xcom_push=lambda key, value: pushed.update({key: value}),
    )
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(task.execute({"ti": ti})), daemon=True)
    worker.start()
    try:
        seen = wait_for(capsys, "| first half done", timeout=60)
        assert task.job_id is not None
        assert hook.get_job(task.job_id).state is JobState.RUNNING  # still 20 s to go
        assert "| second half done" not in seen
        worker.join(timeout=90)
        assert result == [task.job_id]
    finally:
        if task.job_id is not None:
            with contextlib.suppress(MaxwellError):
                hook.cancel_job(task.job_id)


def test_the_trigger_logs_a_line_printed_mid_job_before_the_job_ends(
    signed_conn_id: str, cluster: dict[str, Any], users: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
):
    conn_id = signed_conn_id
    hook = MaxwellHook(conn_id)
    submitted = time.time()
    job_id = hook.submit_job(
        HALF_WAY,
        name="live-trigger",
        partition="maxcpu",
        time_limit=5,
        current_working_directory=cluster["jobs_dir"],
        standard_output=f"{cluster['jobs_dir']}/%x-%j.out",
    )
    try:
        path = hook.get_job(job_id).output_path()
        assert path
        spec = WatchSpec(job_id=job_id, user=users[0]["name"], submitted_after=submitted, poll_interval=1)
        # As the operator hands it on: the job's user's files under the working directory the task set.
        access = output_access(hook.config.login, None, cluster["jobs_dir"], [f"{cluster['jobs_dir']}/%x-%j.out"])
        trigger = MaxwellJobTrigger(
            maxwell_conn_id=conn_id, spec=spec.to_kwargs(), live_output=OutputFollower(path, access).to_kwargs()
        )
        ended_at: list[float] = []

        async def first_event() -> dict[str, Any]:
            async for event in trigger.run():
                ended_at.append(time.monotonic())
                return event.payload
            raise AssertionError("no event")

        events: list[dict[str, Any]] = []
        runner = threading.Thread(target=lambda: events.append(asyncio.run(first_event())), daemon=True)
        runner.start()
        wait_for(capsys, "| first half done", timeout=60)
        logged_at = time.monotonic()
        assert hook.get_job(job_id).state is JobState.RUNNING
        runner.join(timeout=120)
        assert events and events[0]["status"] == "success"
        assert ended_at[0] - logged_at > 5  # the line came well before the end, not with it
    finally:
        with contextlib.suppress(MaxwellError):
            hook.cancel_job(job_id)
