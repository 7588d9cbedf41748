"""Retry edge cases the real daemons cannot be made to produce on demand, against a fake HTTP server:
a proxy's 503 with Retry-After, a submit whose answer never came, a redirect to another origin."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_maxwell.client import lost_answers
from airflow_provider_maxwell.exceptions import SlurmApiError, SlurmTransientError
from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
from tests.fake_slurm import META


def job_doc(state: str) -> dict[str, Any]:
    return {**META, "jobs": [{"job_id": 7, "job_state": [state], "user_name": "alice", "name": "x", "partition": "p"}]}


def test_proxy_503_is_retried_honouring_retry_after(fake):
    fake.script["/slurm/v0.0.44/job/7"] = [
        (503, {"Retry-After": "1"}, "<html>503 Service Unavailable</html>"),
        (200, {}, job_doc("RUNNING")),
    ]
    began = time.monotonic()
    job = MaxwellHook(fake.conn_id, retry_delay=0.01).get_job(7)
    assert job.state.value == "RUNNING"
    assert fake.count("GET", "/slurm/v0.0.44/job/7") == 2
    assert time.monotonic() - began >= 0.9  # waited as Retry-After asked, not the 0.01 s backoff


def test_retries_are_bounded_and_end_in_a_clear_error(fake):
    fake.script["/slurm/v0.0.44/job/7"] = [(502, {}, "<html>502 Bad Gateway</html>")]
    with pytest.raises(SlurmTransientError) as failure:
        MaxwellHook(fake.conn_id, retry_limit=3, retry_delay=0.01).get_job(7)
    assert fake.count("GET", "/slurm/v0.0.44/job/7") == 3
    assert "HTTP 502" in str(failure.value) and fake.url in str(failure.value)


def test_a_submit_whose_answer_is_lost_is_looked_for_before_it_is_sent_again(fake, monkeypatch):
    monkeypatch.setattr(lost_answers, "LOST_ANSWER_LOOKS", (0.01, 0.01))
    submit, search = "/slurm/v0.0.44/job/submit", "/slurmdb/v0.0.44/jobs"
    fake.script[submit] = [(200, {}, "DROP"), (502, {}, "<html>502</html>"), (200, {}, {**META, "job_id": 9})]
    fake.script[search] = [(200, {}, {**META, "jobs": []})]
    assert MaxwellHook(fake.conn_id, retry_delay=0.01).submit_job("#!/bin/bash\ntrue\n") == 9
    sent = [(method, path) for method, path, _ in fake.hits if path in (submit, search)]
    # Each lost answer (a dropped connection, then a proxy's 502) is followed by two looks in accounting.
    assert sent == [("POST", submit), ("GET", search), ("GET", search)] * 2 + [("POST", submit)]


def test_redirects_are_not_followed_with_credentials(fake):
    fake.script["/slurm/v0.0.44/job/7"] = [(302, {"Location": "http://127.0.0.2:9/steal"}, "")]
    with pytest.raises(SlurmApiError, match="redirected"):
        MaxwellHook(fake.conn_id).get_job(7)


def test_html_and_truncated_answers_are_typed_errors(fake):
    fake.script["/slurm/v0.0.44/job/7"] = [(200, {}, '{"jobs": [')]
    fake.script["/slurm/v0.0.44/job/8"] = [(500, {}, "<html>Internal Server Error</html>")]
    with pytest.raises(SlurmApiError):
        MaxwellHook(fake.conn_id, retry_delay=0.01, retry_limit=2).get_job(8)
    # A truncated answer is neither a job nor "no such job": retried, then reported as what it is.
    with pytest.raises(SlurmTransientError, match="not a JSON object"):
        MaxwellHook(fake.conn_id, retry_delay=0.01, retry_limit=3).get_job(7)
    assert fake.count("GET", "/slurm/v0.0.44/job/7") == 3
    assert fake.count("GET", "/slurmdb/v0.0.44/job/7") == 0


def test_a_stopped_controller_is_waited_for_not_taken_for_a_refused_token(fake):
    # 22.05-24.11 answer a job query with 500 + error -1 both for a refused token (22.05) and while
    # slurmctld is down; ping (which checks no token) tells them apart, and no token is re-minted.
    unspecified = {**META, "errors": [{"error_number": -1, "description": "Unable to query JobId=7"}]}
    fake.script["/slurm/v0.0.44/job/7"] = [(500, {}, unspecified), (200, {}, job_doc("RUNNING"))]
    fake.script["/slurm/v0.0.44/ping"] = [(200, {}, {**META, "pings": [{"pinged": "DOWN", "responding": False}]})]
    hook = MaxwellHook(fake.conn_id, retry_delay=0.01)
    hook.client.run(hook.client.ops.dialect())  # version discovery pings too: count only the job's
    assert fake.count("GET", "/slurm/v0.0.44/ping") == 1
    assert hook.get_job(7).state.value == "RUNNING"
    assert fake.count("GET", "/slurm/v0.0.44/ping") == 2
    assert hook.state.tokens.mints == 1  # the token was not doubted


def test_a_stopped_controller_past_the_retries_is_a_transient_error(fake):
    unspecified = {**META, "errors": [{"error_number": -1, "description": "Unable to query JobId=7"}]}
    fake.script["/slurm/v0.0.44/job/7"] = [(500, {}, unspecified)]
    fake.script["/slurm/v0.0.44/ping"] = [(500, {}, {**META, "errors": [{"error_number": -1}]})]
    with pytest.raises(SlurmTransientError, match="slurmctld is not responding"):
        MaxwellHook(fake.conn_id, retry_limit=2, retry_delay=0.01).get_job(7)
