"""The hook (sync: requests in a worker; async: httpx in the triggerer) against a hostile server over
real sockets: every answer ends in the provider's typed error or the right result within the
connection's timeout, and no secret appears in the error or the log (issue 15)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from airflow_provider_maxwell.client.drivers import whole_request_seconds
from airflow_provider_maxwell.exceptions import MaxwellError, SlurmApiError, SlurmJobNotFound, SlurmTransientError
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
from airflow_provider_maxwell.watch import WatchSpec
from tests.hostile_server import BEHAVIOURS, HostileServer, redirect_to
from tests.strategies import MARK

TIMEOUT = 0.3  # seconds: short, so that the slow cases keep the unit suite fast
_ids = itertools.count()
# what the hostile server may answer, and the typed error that must come of it
EXPECTED: dict[str, type[MaxwellError]] = {
    "slow headers": SlurmTransientError,
    "trickled body": SlurmTransientError,
    "truncated body": SlurmTransientError,
    "huge body": SlurmJobNotFound,  # a well-formed answer without the job, from both slurmctld and accounting
    "deeply nested JSON": SlurmTransientError,
    "HTML labelled JSON": SlurmTransientError,
    "echoed request": SlurmTransientError,
    "gzip bomb": SlurmTransientError,
    "wrong types": SlurmJobNotFound,  # no record with a readable job id is taken for job 7
    "redirect quoting the token": SlurmApiError,  # refused, its Location quoted without the token
}


def slurm_token() -> str:
    now = int(time.time())
    return jwt.encode({"sun": "alice", "iat": now, "exp": now + 600, "note": MARK}, "k" * 32, algorithm="HS256")


def hook_for(server: HostileServer, monkeypatch: pytest.MonkeyPatch, token: str) -> MaxwellHook:
    conn_id = f"hostile_{os.getpid()}_{next(_ids)}"
    # api_version pinned: no discovery request is made (the servers answer ping sanely all the same)
    extra = {"auth_method": "token", "api_version": "v0.0.44", "timeout": TIMEOUT}
    conn = {"conn_type": "maxwell", "host": server.url, "login": "alice", "password": token, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return MaxwellHook(conn_id, retry_limit=1)


def get_job(hook: MaxwellHook, mode: str) -> Any:
    if mode == "sync":
        return hook.get_job(7)

    async def through_the_async_driver() -> Any:
        client = await hook.aclient()
        return await client.arun(client.ops.job(7))

    return asyncio.run(through_the_async_driver())


def assert_no_secret(text: str, token: str) -> None:
    for part in (token, *token.split(".")[1:], MARK):
        assert part not in text, text


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_a_hostile_answer_ends_in_a_typed_error_in_time(behaviour, mode, hostile_servers, monkeypatch, capfd):
    server = hostile_servers(BEHAVIOURS[behaviour])
    token = slurm_token()
    hook = hook_for(server, monkeypatch, token)
    began = time.monotonic()
    with pytest.raises(MaxwellError) as failure:
        get_job(hook, mode)
    took = time.monotonic() - began
    assert type(failure.value) is EXPECTED[behaviour], failure.value
    # one request at most per call (ping, slurmctld, accounting), each bounded by the whole-request deadline
    assert took < 3 * whole_request_seconds(TIMEOUT) + 1.0
    logged = "".join(capfd.readouterr())  # Airflow's structlog writes the task log to the standard streams
    assert "Minted a Slurm token for alice" in logged  # the log was captured: its check below means something
    assert_no_secret(f"{failure.value!s} {failure.value!r} {logged}", token)
    assert server.requests, "the hostile server was asked"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redirect_elsewhere_is_refused_and_the_token_never_sent_there(mode, hostile_servers, monkeypatch):
    elsewhere = hostile_servers(BEHAVIOURS["wrong types"])
    server = hostile_servers(redirect_to(elsewhere.url))
    token = slurm_token()
    with pytest.raises(SlurmApiError, match=r"redirected to .*credentials are not sent on") as failure:
        get_job(hook_for(server, monkeypatch, token), mode)
    assert elsewhere.requests == [] and failure.value.status == 307
    assert_no_secret(str(failure.value), token)


def test_a_redirect_quoting_the_token_is_told_in_the_trigger_event_without_it(hostile_servers, monkeypatch):
    """The event is stored in Airflow's database, where the log masker does not apply."""
    server = hostile_servers(BEHAVIOURS["redirect quoting the token"])
    token = slurm_token()
    hook = hook_for(server, monkeypatch, token)
    spec = WatchSpec(job_id=7, user="alice", poll_interval=0.1)
    trigger = MaxwellJobTrigger(maxwell_conn_id=hook.maxwell_conn_id, spec=spec.to_kwargs())

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    payload = asyncio.run(first_event())
    assert payload["status"] == "error" and f"redirected to '{server.url}/sso?ticket=***'" in payload["message"]
    assert_no_secret(json.dumps(payload), token)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redirect_loop_is_refused_at_once(mode, hostile_servers, monkeypatch):
    server = hostile_servers(redirect_to(None))
    with pytest.raises(SlurmApiError, match="redirected"):
        get_job(hook_for(server, monkeypatch, slurm_token()), mode)
    job_requests = [r for r in server.requests if b"/ping " not in r.split(b"\r\n", 1)[0]]
    assert len(job_requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_json_labelled_as_html_is_read_all_the_same(mode, hostile_servers, monkeypatch):
    """The portal labels its JSON text/html; a proxy may do so for slurmrestd: the body decides."""
    record = {"job_id": 7, "job_state": ["RUNNING"], "user_name": "alice", "name": "reduce"}

    def mislabelled(conn: Any, request: bytes, server: HostileServer) -> None:
        from tests.hostile_server import job_answer, whole

        conn.sendall(whole(job_answer([record]), content_type="text/html; charset=latin-1"))

    server = hostile_servers(mislabelled)
    job = get_job(hook_for(server, monkeypatch, slurm_token()), mode)
    assert (job.job_id, job.state.value, job.user) == (7, "RUNNING", "alice")


def test_the_servers_cover_what_the_issue_lists() -> None:
    listed: Callable[[str], bool] = lambda name: name in BEHAVIOURS  # noqa: E731
    assert all(map(listed, ["slow headers", "trickled body", "truncated body", "huge body", "gzip bomb"]))
    assert all(map(listed, ["deeply nested JSON", "HTML labelled JSON", "wrong types", "echoed request"]))


def _never_answers(conn: Any, request: bytes, server: HostileServer) -> None:
    server.stopped.wait(60)  # reads the request, then says nothing until the test ends


def test_a_submit_to_a_server_that_never_answers_fails_within_the_connections_submit_bound(
    hostile_servers, monkeypatch
):
    from airflow_provider_maxwell.client.drivers import submit_bound

    server = hostile_servers(_never_answers)
    conn_id = f"hostile_submit_{os.getpid()}"
    extra = {"auth_method": "token", "api_version": "v0.0.44", "timeout": 2, "submit_timeout": 4}
    conn = {"conn_type": "maxwell", "host": server.url, "login": "alice", "password": slurm_token(), "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    hook = MaxwellHook(conn_id)
    hook.get_token()  # the connection read and its token made: what the bound leaves out
    began = time.monotonic()
    with pytest.raises(SlurmTransientError) as failure:
        hook.submit_job("#!/bin/bash\ntrue\n", name="never-answered")
    took = time.monotonic() - began
    # Exactly once: one sending, whose answer is lost, and no time left to look for its job and send again.
    assert [r.split(b" ", 2)[:2] for r in server.requests] == [[b"POST", b"/slurm/v0.0.44/job/submit"]]
    assert took < submit_bound(hook.config) == 1.1 * 4 + 1.5, took
    assert "extra.submit_timeout" in str(failure.value) and "look for it by name" in str(failure.value)


def test_a_submit_timeout_that_is_no_number_of_seconds_is_refused_naming_the_field():
    from airflow_provider_maxwell.config import MaxwellConnectionConfig
    from airflow_provider_maxwell.exceptions import MaxwellConfigError

    for value in (0, -5, "soon", 10_000, True):
        with pytest.raises(MaxwellConfigError, match=r"'x': extra\.submit_timeout is .*Give a number of seconds"):
            MaxwellConnectionConfig.from_connection(
                "x", host="https://rest.example/sapi", login="a", password="p", extra={"submit_timeout": value}
            )
