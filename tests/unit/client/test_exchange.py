"""One REST call's decisions in full: which answers are redirects, retried or refused, how long each
pause is, and the exact words of the notes and errors a user reads in the task log (issue 18: each
test pins behaviour mutation testing found unasserted)."""

from __future__ import annotations

import pytest

from airflow_provider_maxwell.client import exchange as exchange_module
from airflow_provider_maxwell.client.exchange import RetryPolicy, exchange
from airflow_provider_maxwell.effects import HttpResult, TransportFailure
from airflow_provider_maxwell.exceptions import (
    MaxwellAuthError,
    SlurmAccountingUnavailable,
    SlurmApiError,
    SlurmTransientError,
)
from airflow_provider_maxwell.slurm.dialects import DIALECTS
from tests.unit.client.test_protocol_steps import (
    ACCOUNTING_JOB,
    HOST,
    JOB,
    META,
    Script,
    job_doc,
    jobs,
    ok,
    slurm_error,
    state_with,
)

PING = "/slurm/v0.0.45/ping"
URL = HOST + JOB
DOWN = ok({**META, "pings": [{"pinged": "DOWN", "responding": False}]})


@pytest.fixture
def jitter_at(monkeypatch: pytest.MonkeyPatch):
    """Fix the backoff's random factor at one end of its range."""

    def fix(end: str) -> None:
        monkeypatch.setattr(exchange_module.random, "uniform", lambda low, high: high if end == "high" else low)

    return fix


def call_job(limit: int = 3, **options):
    return exchange(state_with(), RetryPolicy(limit=limit, delay=1.0), "GET", DIALECTS["v0.0.45"].job(7), **options)


def call_accounting(limit: int = 3):
    route = DIALECTS["v0.0.45"].accounting_job(7)
    return exchange(state_with(), RetryPolicy(limit=limit, delay=1.0), "GET", route)


# ---------------------------------------------------------------- pauses


def test_pauses_double_from_the_first_delay_within_a_fifth_either_way_up_to_half_a_minute(jitter_at):
    policy = RetryPolicy(limit=9, delay=1.0)
    jitter_at("high")
    assert [policy.backoff(n) for n in (0, 1, 2, 5, 10)] == [1.2, 2.4, 4.8, 36.0, 36.0]
    jitter_at("low")
    assert [policy.backoff(n) for n in (0, 1, 2, 5, 10)] == [0.8, 1.6, 3.2, 24.0, 24.0]


# ---------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [300, 301, 399])
def test_every_3xx_is_refused_as_a_redirect_naming_where_it_led_and_the_fix(status):
    script = Script({JOB: [HttpResult(status, b"", {"location": "https://elsewhere.example/x"})]})
    with pytest.raises(SlurmApiError) as failure:
        script.run(call_job())
    assert str(failure.value) == (
        "Slurm REST API redirected to 'https://elsewhere.example/x'; credentials are not sent on. "
        f"Set the connection's host to the final URL: HTTP {status} from {URL}"
    )
    assert (failure.value.status, failure.value.url, len(script.sent)) == (status, URL, 1)


def test_a_400_is_slurms_answer_not_a_redirect():
    script = Script({JOB: [slurm_error(400, 2000)]})
    answer = script.run(call_job())
    assert answer.status == 400 and [e.code for e in answer.errors] == [2000] and len(script.sent) == 1


# ---------------------------------------------------------------- the token


def test_a_token_refused_after_its_renewal_names_user_connection_answer_and_fix():
    script = Script({JOB: [slurm_error(401, 1007)]})
    with pytest.raises(MaxwellAuthError) as failure:
        script.run(call_job())
    assert str(failure.value) == (
        "Slurm refused a freshly minted token for user 'alice' (connection 'steps', auth_method=portal): "
        f"HTTP 401 from {URL}: error 1007 error 1007. "
        "Check the token's source (portal token, password, key) and that the user has a Slurm account"
    )


def test_a_bare_401_after_renewal_quotes_no_errors():
    script = Script({JOB: [HttpResult(401, b"", {})]})
    with pytest.raises(MaxwellAuthError) as failure:
        script.run(call_job())
    assert str(failure.value) == (
        "Slurm refused a freshly minted token for user 'alice' (connection 'steps', auth_method=portal): "
        f"HTTP 401 from {URL}. "
        "Check the token's source (portal token, password, key) and that the user has a Slurm account"
    )


def test_an_error_minus_one_twice_while_slurmctld_answers_its_ping_is_put_on_the_token():
    up = ok({**META, "pings": [{"pinged": "UP", "responding": True}]})
    script = Script({JOB: [slurm_error(500, -1)], PING: [up]})
    with pytest.raises(MaxwellAuthError) as failure:
        script.run(call_job())
    assert str(failure.value).startswith("Slurm failed on a freshly minted token for user 'alice'")
    assert f"HTTP 500 from {URL}: error -1 error -1. Check the token's source" in str(failure.value)


def test_the_ping_that_asks_whether_slurmctld_is_down_carries_the_calls_credentials():
    script = Script({JOB: [slurm_error(500, -1), jobs(job_doc(7, "RUNNING"))], PING: [DOWN]})
    script.run(call_job())
    ping = next(c for c in script.sent if c.url == HOST + PING)
    assert (ping.method, ping.headers) == (
        "GET",
        {"X-SLURM-USER-NAME": "alice", "X-SLURM-USER-TOKEN": "token-1", "Accept": "application/json"},
    )


def test_accounting_refusing_a_renewed_token_with_7000_says_slurmdbd_is_unavailable():
    script = Script({ACCOUNTING_JOB: [slurm_error(502, 7000)]})
    with pytest.raises(SlurmAccountingUnavailable) as failure:
        script.run(call_accounting())
    assert str(failure.value) == (
        f"Slurm accounting (slurmdbd) is unavailable: HTTP 502 from {HOST}{ACCOUNTING_JOB}: error 7000 error 7000"
    )
    assert [e.code for e in failure.value.errors] == [7000]


# ---------------------------------------------------------------- retries and their notes


def test_an_unreachable_server_is_retried_with_notes_naming_the_failure_the_attempt_and_the_call(jitter_at):
    jitter_at("high")
    script = Script({JOB: [TransportFailure("ConnectError: refused", before_send=True)]})
    with pytest.raises(SlurmTransientError) as failure:
        script.run(call_job(limit=3))
    assert script.notes == [
        f"Slurm REST API unreachable (ConnectError: refused); retry 1 of 2 in 1.2 s: GET {URL}",
        f"Slurm REST API unreachable (ConnectError: refused); retry 2 of 2 in 2.4 s: GET {URL}",
    ]
    assert script.sleeps == [1.2, 2.4]
    assert str(failure.value) == (
        f"Slurm REST API unreachable after 3 attempt(s) (ConnectError: refused): no HTTP answer from {URL}"
    )
    assert failure.value.never_sent is True


def test_a_stopped_slurmctld_is_retried_limit_minus_one_times_then_named(jitter_at):
    jitter_at("high")
    script = Script({JOB: [slurm_error(500, -1)], PING: [DOWN]})
    with pytest.raises(SlurmTransientError) as failure:
        script.run(call_job(limit=3))
    down = f"slurmctld is not responding (ping at {HOST}{PING})"
    assert script.notes == [f"{down}; retry 1 of 2 in 1.2 s: GET {URL}", f"{down}; retry 2 of 2 in 2.4 s: GET {URL}"]
    assert script.count(JOB) == 3
    assert str(failure.value) == f"{down}: HTTP 500 from {URL}: error -1 error -1"
    assert (failure.value.status, failure.value.url) == (500, URL)


def test_a_proxy_error_is_retried_after_its_retry_after_and_the_last_one_carries_it():
    busy = HttpResult(503, b"<html>busy</html>", {"Retry-After": "7"})
    script = Script({JOB: [busy]})
    with pytest.raises(SlurmTransientError) as failure:
        script.run(call_job(limit=2))
    assert script.notes == [f"Slurm REST API answered HTTP 503; retry 1 of 1 in 7.0 s: GET {URL}"]
    assert script.sleeps == [7.0]
    assert str(failure.value) == f"Slurm REST API unavailable ('<html>busy</html>'): HTTP 503 from {URL}"
    assert (failure.value.status, failure.value.url, failure.value.retry_after) == (503, URL, 7.0)


def test_a_success_whose_body_is_no_json_object_is_retried_then_named():
    script = Script({JOB: [HttpResult(200, b"<html>portal login</html>", {})]})
    with pytest.raises(SlurmTransientError) as failure:
        script.run(call_job(limit=2))
    assert script.count(JOB) == 2
    assert str(failure.value) == (
        f"Slurm REST API answered with a body that is not a JSON object ('<html>portal login</html>'): "
        f"HTTP 200 from {URL}"
    )


def test_a_bare_500_is_retried_like_a_proxy_error_but_slurms_own_500_is_its_answer():
    bare = Script({JOB: [HttpResult(500, b"Internal Server Error", {}), jobs(job_doc(7, "RUNNING"))]})
    assert bare.run(call_job()).status == 200 and bare.count(JOB) == 2
    slurms = Script({JOB: [slurm_error(500, 2002)]})
    answer = slurms.run(call_job())
    assert answer.status == 500 and [e.code for e in answer.errors] == [2002] and slurms.count(JOB) == 1


def test_a_call_not_safe_to_resend_is_not_repeated_after_a_server_error():
    script = Script({JOB: [HttpResult(502, b"<html>bad gateway</html>", {})]})
    with pytest.raises(SlurmTransientError):
        script.run(call_job(limit=3, resend_safe=False))
    assert script.count(JOB) == 1 and script.sleeps == []


def test_slurmctlds_rate_limit_is_waited_out_as_asked_with_a_note():
    busy = HttpResult(502, ok({**META, "errors": [{"error_number": 1805}]}).body, {"Retry-After": "4"})
    script = Script({JOB: [busy, busy, jobs(job_doc(7, "RUNNING"))]})
    assert script.run(call_job(limit=1)).status == 200
    assert script.sleeps == [4.0, 4.0]
    assert script.notes == [f"slurmctld's rate limit: GET {URL} again in 4.0 s"] * 2


def test_the_rate_limit_is_waited_out_for_ten_minutes_then_counts_as_a_failure():
    busy = HttpResult(502, ok({**META, "errors": [{"error_number": 1805}]}).body, {"Retry-After": "120"})
    script = Script({JOB: [busy]})
    with pytest.raises(SlurmTransientError):
        script.run(call_job(limit=1))
    assert script.sleeps == [120.0] * 5 and script.count(JOB) == 6


def test_without_retry_after_rate_limit_pauses_follow_the_backoff_up_to_its_fifth_step(jitter_at):
    jitter_at("high")
    busy = HttpResult(502, ok({**META, "errors": [{"error_number": 1804}]}).body, {})
    script = Script({JOB: [busy] * 7 + [jobs(job_doc(7, "RUNNING"))]})
    assert script.run(call_job(limit=1)).status == 200
    assert script.sleeps == [1.2, 2.4, 4.8, 9.6, 19.2, 19.2, 19.2]


def test_rate_limited_answers_are_not_counted_as_attempts():
    busy = HttpResult(502, ok({**META, "errors": [{"error_number": 1805}]}).body, {"Retry-After": "1"})
    gateway = HttpResult(503, b"<html>busy</html>", {"Retry-After": "2"})
    script = Script({JOB: [busy, busy, gateway, jobs(job_doc(7, "RUNNING"))]})
    assert script.run(call_job(limit=2)).status == 200  # two attempts: the 503, then the answer
    assert script.sleeps == [1.0, 1.0, 2.0]


def test_a_read_timeout_of_a_call_safe_to_resend_is_retried_but_not_of_one_that_is_not():
    timed_out = TransportFailure("ReadTimeout: read timed out", before_send=False)
    script = Script({JOB: [timed_out, jobs(job_doc(7, "RUNNING"))]})
    assert script.run(call_job()).status == 200 and script.count(JOB) == 2
    once = Script({JOB: [timed_out]})
    with pytest.raises(SlurmTransientError) as failure:
        once.run(call_job(resend_safe=False))
    assert once.count(JOB) == 1 and failure.value.never_sent is False


def test_a_stopped_slurmctld_is_not_asked_again_for_a_call_that_is_not_safe_to_resend():
    script = Script({JOB: [slurm_error(500, -1)], PING: [DOWN]})
    with pytest.raises(SlurmTransientError, match="slurmctld is not responding"):
        script.run(call_job(resend_safe=False))
    assert script.count(JOB) == 1 and script.sleeps == []


def test_accounting_refusing_a_renewed_token_outright_is_an_auth_error_not_slurmdbd_down():
    script = Script({ACCOUNTING_JOB: [slurm_error(401, 1007)]})
    with pytest.raises(MaxwellAuthError) as failure:
        script.run(call_accounting())
    assert str(failure.value).startswith("Slurm refused a freshly minted token for user 'alice'")


def test_the_slurm_release_is_learnt_from_the_first_answer_that_names_it_and_kept():
    state = state_with()
    route = DIALECTS["v0.0.45"].job(7)
    first = Script({JOB: [jobs(job_doc(7, "RUNNING"))]})
    first.run(exchange(state, RetryPolicy(), "GET", route))
    assert state.release == "26.05.5"
    other = ok({"meta": {"slurm": {"release": "25.11.1"}}, "errors": [], "warnings": [], "jobs": []})
    Script({JOB: [other]}).run(exchange(state, RetryPolicy(), "GET", route))
    assert state.release == "26.05.5"


def test_a_proxy_page_quoting_the_connections_password_never_shows_it():
    echoed = HttpResult(502, b"<pre>Authorization: Basic portal-token</pre>", {})
    with pytest.raises(SlurmTransientError) as failure:
        Script({JOB: [echoed]}).run(call_job(limit=1))
    assert "portal-token" not in str(failure.value)
    assert str(failure.value).startswith("Slurm REST API unavailable ('<pre>Authorization: Basic ***</pre>')")
