"""Every Slurm release and every API version it serves: the same four jobs, the same normalized answer.

The jobs of all versions are submitted together up front (a time-limit job needs 60-90 s to be
killed), then each test reads its own.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest

from airflow_provider_maxwell.exceptions import MaxwellConfigError, SlurmApiError, SlurmJobNotFound
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.slurm.states import JobState

RELEASE_VERSIONS = [
    ("s22", "v0.0.38"),
    ("s24", "v0.0.40"),
    ("s24", "v0.0.41"),
    ("s24", "v0.0.42"),
    ("s26", "v0.0.42"),
    ("s26", "v0.0.43"),
    ("s26", "v0.0.44"),
    ("s26", "v0.0.45"),
]
SCRIPTS = {
    "ok": '#!/bin/bash\necho "hello $GREETING"\nsleep 1\n',
    "exit3": "#!/bin/bash\necho failing\nexit 3\n",
    "cancel": "#!/bin/bash\nsleep 300\n",
    "timeout": "#!/bin/bash\nsleep 300\n",
}


@dataclass
class Submitted:
    hook: MaxwellHook
    jobs: dict[str, int]


@pytest.fixture(scope="module")
def submitted(cluster, users, signing_key_b64) -> dict[tuple[str, str], Submitted]:
    import json
    import os

    out: dict[tuple[str, str], Submitted] = {}
    for name, version in RELEASE_VERSIONS:
        if name not in cluster["stacks"]:
            continue
        conn_id = f"maxwell_jobs_{name}_{version.replace('.', '_')}"
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
            {
                "conn_type": "maxwell",
                "host": cluster["stacks"][name]["rest_url"],
                "login": users[0]["name"],
                "extra": {"auth_method": "signing_key", "signing_secret": signing_key_b64, "api_version": version},
            }
        )
        hook = MaxwellHook(conn_id)
        jobs = {}
        for kind, script in SCRIPTS.items():
            jobs[kind] = hook.submit_job(
                script,
                name=f"{kind}-{version}",
                current_working_directory=cluster["jobs_dir"],
                environment={"GREETING": "maxwell"},
                standard_output=f"{cluster['jobs_dir']}/%x-%j.out",
                time_limit=1 if kind == "timeout" else timedelta(minutes=5),
                partition="maxcpu",
            )
        out[(name, version)] = Submitted(hook, jobs)
    return out


def wait_terminal(hook: MaxwellHook, job_id: int, timeout: float = 150) -> SlurmJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = hook.get_job(job_id)
        if job.is_terminal:
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {job.state_text}")


def wait_accounting_final(hook: MaxwellHook, job_id: int, timeout: float = 60) -> SlurmJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = hook.get_accounting_job(job_id)
        if job is not None and job.is_terminal:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} has no final accounting record after {timeout} s")


@pytest.fixture(params=RELEASE_VERSIONS, ids=[f"{n}-{v}" for n, v in RELEASE_VERSIONS])
def case(request, submitted, cluster) -> Submitted:
    name, version = request.param
    if (name, version) not in submitted:
        reason = f"Slurm stack {name} unavailable: {cluster['unavailable'].get(name)}"
        if os.environ.get("MAXWELL_REQUIRE_ALL_RELEASES") == "1":
            pytest.fail(f"{reason} (required here: MAXWELL_REQUIRE_ALL_RELEASES=1)")
        pytest.skip(reason)
    return submitted[(name, version)]


def test_job_that_exits_0_completes_everywhere(case, cluster):
    job = wait_terminal(case.hook, case.jobs["ok"])
    assert (job.state, job.exit_code, job.is_success) == (JobState.COMPLETED, 0, True)
    assert job.user == "mxuser1" and job.partition == "maxcpu" and job.nodes
    assert job.submit_time and job.start_time and job.end_time and job.end_time >= job.start_time
    with open(job.output_path() or "") as output:  # the environment we sent reached the job
        assert "hello maxwell" in output.read()
    final = wait_accounting_final(case.hook, case.jobs["ok"])
    assert (final.source, final.state, final.is_success) == ("slurmdb", JobState.COMPLETED, True)


def test_job_that_exits_3_fails_with_its_exit_code(case):
    job = wait_terminal(case.hook, case.jobs["exit3"])
    assert (job.state, job.is_success) == (JobState.FAILED, False)
    if job.source == "slurmctld":
        assert job.exit_code == 3
    final = wait_accounting_final(case.hook, case.jobs["exit3"])
    assert final.state is JobState.FAILED and not final.is_success
    # Slurm 22.05's accounting reports 0 for this job: the model says "unknown" rather than lie.
    assert final.exit_code == (None if case.hook.api_version == "v0.0.38" else 3)


def test_cancelled_job_ends_cancelled(case):
    job_id = case.jobs["cancel"]
    deadline = time.monotonic() + 60
    while case.hook.get_job(job_id).state is JobState.PENDING and time.monotonic() < deadline:
        time.sleep(0.5)
    case.hook.cancel_job(job_id)
    job = wait_terminal(case.hook, job_id)
    assert job.state is JobState.CANCELLED and not job.is_success
    case.hook.cancel_job(job_id)  # cancelling a finished job again is not an error
    assert wait_accounting_final(case.hook, job_id).state is JobState.CANCELLED


def test_job_past_its_time_limit_ends_timeout(case):
    job = wait_terminal(case.hook, case.jobs["timeout"], timeout=200)
    assert job.state is JobState.TIMEOUT and not job.is_success
    assert wait_accounting_final(case.hook, case.jobs["timeout"]).state is JobState.TIMEOUT


def test_purged_job_is_read_from_accounting(case):
    job_id = case.jobs["ok"]
    wait_terminal(case.hook, job_id)
    deadline = time.monotonic() + 60  # MinJobAge=5: slurmctld forgets the job 6-10 s after its end
    while case.hook.get_controller_jobs(job_id) is not None and time.monotonic() < deadline:
        time.sleep(1)
    assert case.hook.get_controller_jobs(job_id) is None
    job = case.hook.get_job(job_id)
    assert (job.source, job.state, job.job_id) == ("slurmdb", JobState.COMPLETED, job_id)


def test_unknown_job_and_bad_job_ids(case):
    with pytest.raises(SlurmJobNotFound, match="999999"):
        case.hook.get_job(999999)
    assert case.hook.get_accounting_job(999999) is None
    with pytest.raises(MaxwellConfigError, match="job_id"):
        case.hook.get_job("12; rm -rf /")  # type: ignore[arg-type]


def test_a_cancel_that_did_nothing_raises(case, cluster, users, signing_key_b64, make_connection):
    # Another user's job: 22.05 answers with an HTTP error, 24.11 and 26.05 with HTTP 200 and the
    # refusal (2002) inside; either way the caller learns the job was not cancelled.
    other = make_connection(
        case.hook.config.host,
        users[1]["name"],
        auth_method="signing_key",
        signing_secret=signing_key_b64,
        api_version=case.hook.api_version,
    )
    theirs = MaxwellHook(other).submit_job(
        "#!/bin/bash\nsleep 60\n", name="not-yours", current_working_directory=cluster["jobs_dir"]
    )
    try:
        with pytest.raises(SlurmApiError) as failure:
            case.hook.cancel_job(theirs)
        assert not isinstance(failure.value, SlurmJobNotFound)
        assert case.hook.get_job(theirs).state is not JobState.CANCELLED
        with pytest.raises(SlurmJobNotFound):
            case.hook.cancel_job(999999)
    finally:
        MaxwellHook(other).cancel_job(theirs)


def test_bad_partition_is_refused_with_slurms_message(case):
    with pytest.raises(SlurmApiError) as failure:
        case.hook.submit_job("#!/bin/bash\ntrue\n", partition="nosuchpartition")
    message = str(failure.value)
    # 22.05 and 24.11 answer 500, 26.05 answers 422; the message is Slurm's own on all of them.
    assert failure.value.status in (422, 500)
    assert f"HTTP {failure.value.status} from {failure.value.url}" in message and failure.value.url.endswith(
        "/job/submit"
    )
    assert "error 2000 Invalid partition name specified" in message


def test_the_async_driver_agrees_with_the_sync_one(case):
    import asyncio

    job_id = case.jobs["ok"]
    sync = case.hook.get_job(job_id)
    fresh = MaxwellHook(case.hook.maxwell_conn_id)

    async def through_the_async_driver() -> SlurmJob:
        client = await fresh.aclient()
        return await client.arun(client.ops.job(job_id))

    asynchronous = asyncio.run(through_the_async_driver())
    assert (asynchronous.job_id, asynchronous.state, asynchronous.exit_code) == (
        sync.job_id,
        sync.state,
        sync.exit_code,
    )
