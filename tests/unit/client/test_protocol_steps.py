"""The client's protocol steps driven by hand with scripted results: no server, no sleeping, no clock.

This is what the sans-IO split buys: every retry, renewal, fallback and wait decision is checked by
feeding a generator the answers it asks for and reading the effects it yields.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_maxwell import effects
from airflow_provider_maxwell.auth.sources import token_source
from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.client import lost_answers
from airflow_provider_maxwell.client.exchange import RetryPolicy, exchange, mint
from airflow_provider_maxwell.client.operations import SlurmOperations
from airflow_provider_maxwell.client.state import ConnectionState
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import GetToken, HttpCall, HttpResult, Note, Protocol, Send, Sleep
from airflow_provider_maxwell.exceptions import (
    MaxwellAuthError,
    SlurmAccountingUnavailable,
    SlurmApiError,
    SlurmJobNotFound,
    SlurmTransientError,
    TokenServiceUnreachable,
)
from airflow_provider_maxwell.slurm.dialects import DIALECTS
from airflow_provider_maxwell.watch import WatchSpec, watch

HOST = "https://rest.example"
META = {"meta": {"slurm": {"release": "26.05.5"}}, "errors": [], "warnings": []}
Reply = HttpResult | effects.TransportFailure | Callable[[list[HttpCall]], HttpResult]


def ok(document: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> HttpResult:
    return HttpResult(status, json.dumps(document).encode(), headers or {})


def slurm_error(status: int, code: int) -> HttpResult:
    return ok({**META, "errors": [{"error_number": code, "description": f"error {code}"}]}, status)


def job_doc(job_id: int, state: str, user: str = "alice", submit: int = 1_700_000_000, **more: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "job_state": [state],
        "user_name": user,
        "name": "reduce",
        "partition": "maxcpu",
        "submit_time": {"set": True, "number": submit},
        **more,
    }


def record(job_id: int, state: str, user: str = "alice", submit: int = 1_700_000_000, code: int = 0) -> dict[str, Any]:
    """An accounting record, shaped as /slurmdb answers."""
    return {
        "job_id": job_id,
        "state": {"current": [state], "reason": "None"},
        "user": user,
        "name": "reduce",
        "partition": "maxcpu",
        "time": {"submission": submit, "start": submit + 1, "end": submit + 60},
        "exit_code": {"status": ["SUCCESS" if code == 0 else "ERROR"], "return_code": {"set": True, "number": code}},
    }


def jobs(*docs: dict[str, Any]) -> HttpResult:
    return ok({**META, "jobs": list(docs)})


def state_with(dialect: str | None = "v0.0.45", **extra: Any) -> ConnectionState:
    config = MaxwellConnectionConfig.from_connection(
        "steps", host=HOST, login="alice", password="portal-token", extra=extra
    )
    state = ConnectionState(config, token_source(config))
    state.dialect = DIALECTS[dialect] if dialect else None
    return state


@dataclass
class Script:
    """Plays the driver: answers each Send from a per-path queue, hands out numbered tokens."""

    replies: dict[str, list[Reply]]
    sent: list[HttpCall] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tokens: list[GetToken] = field(default_factory=list)

    def run(self, protocol: Protocol[Any]) -> Any:
        result: Any = None
        try:
            while True:
                effect = protocol.send(result)
                result = self.answer(effect)
        except StopIteration as done:
            return done.value

    def answer(self, effect: Any) -> Any:
        if isinstance(effect, Send):
            self.sent.append(effect.call)
            path = effect.call.url.removeprefix(HOST)
            queue = self.replies[path]
            reply = queue.pop(0) if len(queue) > 1 else queue[0]
            return reply(self.sent) if callable(reply) else reply  # a reply may depend on what was sent
        if isinstance(effect, Sleep):
            self.sleeps.append(effect.seconds)
            return None
        if isinstance(effect, Note):
            self.notes.append(effect.message)
            return None
        assert isinstance(effect, GetToken)
        self.tokens.append(effect)
        return MintedToken(value=f"token-{len(self.tokens)}", issued_at=0, expires_at=2e9)

    def count(self, path: str) -> int:
        return sum(1 for c in self.sent if c.url == HOST + path)


def ops_for(state: ConnectionState, limit: int = 3) -> SlurmOperations:
    return SlurmOperations(state, RetryPolicy(limit=limit, delay=1.0))


JOB = "/slurm/v0.0.45/job/7"
ACCOUNTING_JOB = "/slurmdb/v0.0.45/job/7"


def test_a_transient_answer_is_retried_after_the_servers_retry_after():
    script = Script({JOB: [HttpResult(503, b"<html>busy</html>", {"Retry-After": "7"}), jobs(job_doc(7, "RUNNING"))]})
    records = script.run(ops_for(state_with()).controller_jobs(7))
    assert [r.state.value for r in records] == ["RUNNING"]
    assert script.sleeps == [7.0] and script.count(JOB) == 2
    assert "retry 1 of 2" in script.notes[0]


def test_retries_stop_at_the_limit_with_a_transient_error_naming_status_and_url():
    script = Script({JOB: [HttpResult(502, b"<html>bad gateway</html>", {})]})
    with pytest.raises(SlurmTransientError) as failure:
        script.run(ops_for(state_with(), limit=3).controller_jobs(7))
    assert script.count(JOB) == 3 and len(script.sleeps) == 2
    assert failure.value.status == 502 and failure.value.url == HOST + JOB


def test_backoff_doubles_between_attempts():
    script = Script({JOB: [effects.TransportFailure("refused", before_send=True)]})
    with pytest.raises(SlurmTransientError, match="after 4 attempt"):
        script.run(ops_for(state_with(), limit=4).controller_jobs(7))
    first, second, third = script.sleeps
    assert 0.8 <= first <= 1.2 and 1.6 <= second <= 2.4 and 3.2 <= third <= 4.8


def test_a_refused_token_is_renewed_once_past_the_refused_one():
    script = Script({JOB: [slurm_error(511, 1007), jobs(job_doc(7, "PENDING"))]})
    script.run(ops_for(state_with()).controller_jobs(7))
    assert [t.stale for t in script.tokens] == [None, "token-1"]
    tokens_sent = [c.headers["X-SLURM-USER-TOKEN"] for c in script.sent]
    assert tokens_sent == ["token-1", "token-2"]


def test_a_token_refused_twice_is_an_auth_error_not_a_third_try():
    script = Script({JOB: [slurm_error(511, 1007)]})
    with pytest.raises(MaxwellAuthError, match="refused a freshly minted token"):
        script.run(ops_for(state_with(), limit=5).controller_jobs(7))
    assert script.count(JOB) == 2


def test_accounting_7000_after_a_renewal_means_slurmdbd_is_down():
    script = Script({ACCOUNTING_JOB: [slurm_error(502, 7000)]})
    with pytest.raises(SlurmAccountingUnavailable):
        script.run(ops_for(state_with()).accounting_jobs(7))
    assert script.count(ACCOUNTING_JOB) == 2  # renewed once to tell a refused token from a down slurmdbd


def test_a_stopped_slurmctld_is_retried_without_doubting_the_token():
    script = Script(
        {
            JOB: [slurm_error(500, -1), jobs(job_doc(7, "RUNNING"))],
            "/slurm/v0.0.45/ping": [ok({**META, "pings": [{"pinged": "DOWN", "responding": False}]})],
        }
    )
    script.run(ops_for(state_with()).controller_jobs(7))
    assert [t.stale for t in script.tokens] == [None, None] and len(script.sleeps) == 1


SUBMIT = "/slurm/v0.0.45/job/submit"
ACCOUNTING_JOBS = "/slurmdb/v0.0.45/jobs"
LOST = effects.TransportFailure("read timed out", before_send=False)


def mark_of(call: HttpCall) -> str:
    """The submission mark a submit request put in the job's comment."""
    return next(word for word in call.json["job"]["comment"].split() if word.startswith("maxwell-submission:"))


def the_submitted_job(job_id: int) -> Callable[[list[HttpCall]], HttpResult]:
    """Accounting's answer to the search for a lost submission: the job it created, with its mark."""

    def answer(sent: list[HttpCall]) -> HttpResult:
        posted = next(call for call in sent if call.method == "POST")
        return jobs({**record(job_id, "PENDING"), "comment": {"job": f"nightly {mark_of(posted)}"}})

    return answer


def test_a_submission_whose_answer_was_lost_is_found_by_its_mark_not_sent_again():
    other = jobs({**record(5, "PENDING"), "comment": {"job": "maxwell-submission:0123456789abcdef"}})
    script = Script({SUBMIT: [LOST], ACCOUNTING_JOBS: [other, the_submitted_job(42)]})
    fields = {"name": "reduce", "comment": "nightly"}
    job_id = script.run(ops_for(state_with(), limit=5).submit("#!/bin/bash\ntrue\n", fields))
    assert job_id == 42 and script.count(SUBMIT) == 1
    searches = [c for c in script.sent if c.url == HOST + ACCOUNTING_JOBS]
    assert len(searches) == 2 and searches[0].params["job_name"] == "reduce"
    assert "found" in script.notes[-1] and "42" in script.notes[-1]


def test_a_lost_submissions_live_job_is_recognised_by_slurmctlds_comment():
    # Accounting stores a comment only when the job ends (measured on 22.05-26.05): a pending or
    # running job shows there without one, and slurmctld, asked by id, has it. Nearest first.
    def live_in_accounting(sent: list[HttpCall]) -> HttpResult:
        now = int(time.time())
        return jobs(record(50, "RUNNING", submit=now - 3000), record(51, "PENDING", submit=now))

    def slurmctld_has_the_mark(sent: list[HttpCall]) -> HttpResult:
        posted = next(call for call in sent if call.method == "POST")
        return jobs(job_doc(51, "PENDING", comment=f"nightly {mark_of(posted)}"))

    script = Script(
        {SUBMIT: [LOST], ACCOUNTING_JOBS: [live_in_accounting], "/slurm/v0.0.45/job/51": [slurmctld_has_the_mark]}
    )
    job_id = script.run(ops_for(state_with(), limit=5).submit("#!/bin/bash\ntrue\n", {"comment": "nightly"}))
    assert job_id == 51 and script.count(SUBMIT) == 1
    assert script.count("/slurm/v0.0.45/jobs") == 0  # never the whole queue
    assert [c.url.removeprefix(HOST) for c in script.sent if "/slurm/" in c.url][1:] == ["/slurm/v0.0.45/job/51"]


def test_a_lost_submission_no_job_carries_is_sent_again_with_the_same_mark():
    nothing = ok({**META, "jobs": []})
    script = Script({SUBMIT: [LOST, ok({**META, "job_id": 43})], ACCOUNTING_JOBS: [nothing]})
    job_id = script.run(ops_for(state_with(), limit=5).submit("#!/bin/bash\ntrue\n", {"comment": "nightly"}))
    posts = [c for c in script.sent if c.method == "POST"]
    assert job_id == 43 and len(posts) == 2 and mark_of(posts[0]) == mark_of(posts[1])
    assert posts[0].json["job"]["comment"].startswith("nightly ")  # the user's comment stays first
    assert script.count(ACCOUNTING_JOBS) == len(lost_answers.LOST_ANSWER_LOOKS)  # looked before resending


def test_a_lost_submission_never_found_ends_in_an_error_naming_its_mark():
    nothing = ok({**META, "jobs": []})
    script = Script({SUBMIT: [LOST], ACCOUNTING_JOBS: [nothing]})
    with pytest.raises(SlurmTransientError, match=r"maxwell-submission:[0-9a-f]{16}") as failure:
        script.run(ops_for(state_with(), limit=2).submit("#!/bin/bash\ntrue\n", {}))
    assert script.count(SUBMIT) == 2 and "2 sending(s)" in str(failure.value)


def test_a_rate_limited_submission_is_waited_out_not_searched_for():
    busy = slurm_error(502, 1805)  # 25.11+: slurmctld told slurmrestd to back off; nothing was created
    script = Script({SUBMIT: [busy, busy, ok({**META, "job_id": 44})]})
    assert script.run(ops_for(state_with(), limit=2).submit("#!/bin/bash\ntrue\n", {})) == 44
    assert script.count(SUBMIT) == 3 and len(script.sleeps) == 2  # past the retry limit: weather, not failure


def test_a_submission_that_never_left_is_sent_again():
    submit = "/slurm/v0.0.45/job/submit"
    script = Script({submit: [effects.TransportFailure("refused", before_send=True), ok({**META, "job_id": 42})]})
    assert script.run(ops_for(state_with(), limit=5).submit("#!/bin/bash\ntrue\n", {})) == 42
    assert script.count(submit) == 2


def test_a_purged_job_is_read_from_accounting():
    script = Script({JOB: [slurm_error(404, 2017)], ACCOUNTING_JOB: [jobs(record(7, "COMPLETED"))]})
    job = script.run(ops_for(state_with()).job(7))
    assert job.state.value == "COMPLETED" and job.source == "slurmdb"


def test_a_job_neither_slurmctld_nor_accounting_knows_is_not_found():
    script = Script({JOB: [slurm_error(404, 2017)], ACCOUNTING_JOB: [ok({**META, "jobs": []})]})
    with pytest.raises(SlurmJobNotFound) as failure:
        script.run(ops_for(state_with()).job(7))
    assert failure.value.job_id == 7


def test_the_newest_record_under_a_reused_id_is_taken():
    old, new = record(7, "FAILED", submit=1_000, code=3), record(7, "COMPLETED", submit=2_000)
    script = Script({ACCOUNTING_JOB: [jobs(old, new)]})
    assert script.run(ops_for(state_with()).accounting_job(7)).state.value == "COMPLETED"


def test_the_wait_rides_out_accounting_lag_then_returns_the_final_record():
    script = Script(
        {
            JOB: [jobs(job_doc(7, "COMPLETED"))],
            ACCOUNTING_JOB: [ok({**META, "jobs": []}), ok({**META, "jobs": []}), jobs(record(7, "COMPLETED"))],
        }
    )
    spec = WatchSpec(job_id=7, user="alice", submitted_after=1_700_000_000, poll_interval=5)
    final = script.run(watch(ops_for(state_with()), spec))
    assert [j.state.value for j in final] == ["COMPLETED"] and final[0].source == "slurmdb"
    assert script.sleeps == [5, 5] and script.count(ACCOUNTING_JOB) == 3


def test_the_wait_asks_only_slurmctld_while_the_job_runs():
    script = Script(
        {
            JOB: [jobs(job_doc(7, "RUNNING")), jobs(job_doc(7, "COMPLETED"))],
            ACCOUNTING_JOB: [jobs(record(7, "COMPLETED"))],
        }
    )
    spec = WatchSpec(job_id=7, user="alice", poll_interval=1)
    script.run(watch(ops_for(state_with()), spec))
    assert script.count(JOB) == 2 and script.count(ACCOUNTING_JOB) == 1
    assert any("RUNNING" in n for n in script.notes)


def test_version_discovery_falls_back_to_older_openapi_paths_and_says_what_it_chose():
    # A proxy that refuses the newest version's ping (neither "answers" nor "no such path"): the
    # server's own document decides, read from the older path where an older server publishes it.
    openapi = {"paths": {"/slurm/v0.0.42/jobs": {}, "/slurmdb/v0.0.42/jobs": {}}, "info": {}}
    script = Script(
        {
            "/slurm/v0.0.45/ping": [ok(META, status=400)],
            "/openapi/v3": [HttpResult(404, b"", {})],
            "/openapi.json": [ok(openapi)],
        }
    )
    state = state_with(dialect=None)
    assert script.run(ops_for(state).dialect()).version == "v0.0.42"
    assert state.release == "26.05.5"  # from the first answer's meta, as the document named none
    assert "REST API v0.0.42" in script.notes[-1] and "server offers v0.0.42" in script.notes[-1]
    assert script.run(ops_for(state).dialect()).version == "v0.0.42" and len(script.sent) == 3  # decided once


def test_minting_retries_only_while_the_token_service_gives_no_answer(monkeypatch):
    state = state_with()
    outcomes: list[Callable[[], MintedToken]] = []

    def fake_mint() -> Protocol[MintedToken]:
        return outcomes.pop(0)()
        yield  # a generator, like the real sources

    def unreachable() -> MintedToken:
        raise TokenServiceUnreachable("no answer from the portal")

    def refused() -> MintedToken:
        raise MaxwellAuthError("HTTP 401 from the portal")

    monkeypatch.setattr(state.source, "mint", fake_mint)
    good = MintedToken(value="t", issued_at=0, expires_at=2e9)
    outcomes[:] = [unreachable, unreachable, lambda: good]
    script = Script({})
    assert script.run(mint(state, RetryPolicy(limit=3, delay=1.0))) is good
    assert len(script.sleeps) == 2
    outcomes[:] = [refused, lambda: good]
    with pytest.raises(MaxwellAuthError, match="401"):
        Script({}).run(mint(state, RetryPolicy(limit=3, delay=1.0)))
    outcomes[:] = [unreachable, unreachable]
    with pytest.raises(TokenServiceUnreachable):
        Script({}).run(mint(state, RetryPolicy(limit=2, delay=1.0)))


def test_a_redirect_is_refused_and_nothing_follows_it():
    route = DIALECTS["v0.0.45"].job(7)
    script = Script({JOB: [HttpResult(302, b"", {"Location": "https://elsewhere.example/steal"})]})
    with pytest.raises(SlurmApiError, match=re.escape("redirected to 'https://elsewhere.example/steal'")):
        script.run(exchange(state_with(), RetryPolicy(), "GET", route))
    assert len(script.sent) == 1


def kill_answer(code: int, text: str) -> HttpResult:
    entry = {"error": {"string": text, "code": code, "message": text}, "step_id": "7", "job_id": 7}
    return ok({**META, "status": [entry]})


def test_a_cancel_answered_200_with_a_per_job_error_raises_it():
    # 24.11 and 26.05 answer HTTP 200 even when nothing was cancelled: the reason is per job.
    script = Script({JOB: [kill_answer(2002, "Access/permission denied")]})
    with pytest.raises(SlurmApiError, match=r"did not cancel job 7.*2002 Access/permission denied"):
        script.run(ops_for(state_with()).cancel(7))
    script = Script({JOB: [kill_answer(2017, "Invalid job id specified")]})
    with pytest.raises(SlurmJobNotFound):
        script.run(ops_for(state_with()).cancel(7))


def test_cancelling_a_job_that_already_ended_is_no_failure():
    for answer in (kill_answer(2021, "Job/step already completing or completed"), kill_answer(0, "No error")):
        assert Script({JOB: [answer]}).run(ops_for(state_with()).cancel(7)) is None
    assert Script({JOB: [ok({**META, "status": []})]}).run(ops_for(state_with()).cancel(7)) is None


def test_where_the_answer_cannot_tell_the_job_record_confirms_the_cancel():
    # v0.0.40 and v0.0.41 answer 200 with nothing per job, whatever happened (measured on 24.11).
    job40 = "/slurm/v0.0.40/job/7"
    silent = ok({**META})
    script = Script({job40: [silent, jobs(job_doc(7, "RUNNING", user="bob"))]})
    with pytest.raises(SlurmApiError, match="did not cancel job 7 \\(a job of user 'bob'\\): it is still RUNNING"):
        script.run(ops_for(state_with("v0.0.40")).cancel(7))
    script = Script({job40: [silent, jobs({**job_doc(7, "CANCELLED"), "job_state": ["CANCELLED", "COMPLETING"]})]})
    assert script.run(ops_for(state_with("v0.0.40")).cancel(7)) is None
    script = Script({job40: [silent, slurm_error(404, 2017)]})
    with pytest.raises(SlurmJobNotFound):
        script.run(ops_for(state_with("v0.0.40")).cancel(7))
    script = Script({job40: [silent]})  # a signal leaves the job running: nothing to confirm
    assert script.run(ops_for(state_with("v0.0.40")).cancel(7, signal="USR1")) is None and len(script.sent) == 1


def test_22_05s_lost_submission_search_gives_its_window_as_uts_seconds():
    # 22.05 answers start_time=<seconds> with HTTP 500 "Unable to parse time format" (measured).
    nothing = ok({**META, "jobs": []})
    script = Script({"/slurm/v0.0.38/job/submit": [LOST], "/slurmdb/v0.0.38/jobs": [nothing]})
    with pytest.raises(SlurmTransientError):
        script.run(ops_for(state_with("v0.0.38"), limit=1).submit("#!/bin/bash\ntrue\n", {"name": "reduce"}))
    search = next(c for c in script.sent if c.url.endswith("/slurmdb/v0.0.38/jobs"))
    assert re.fullmatch(r"uts\d{10}", search.params["start_time"]) and search.params["job_name"] == "reduce"


def test_a_live_job_read_without_the_mark_is_not_read_again_in_later_looks():
    now = int(time.time())

    def other_then_ours(sent: list[HttpCall]) -> HttpResult:
        looks = sum(c.url == HOST + ACCOUNTING_JOBS for c in sent)
        found = [record(50, "RUNNING", submit=now)] + ([record(51, "PENDING", submit=now)] if looks > 1 else [])
        return jobs(*found)

    def ours(sent: list[HttpCall]) -> HttpResult:
        posted = next(call for call in sent if call.method == "POST")
        return jobs(job_doc(51, "PENDING", comment=mark_of(posted)))

    script = Script(
        {
            SUBMIT: [LOST],
            ACCOUNTING_JOBS: [other_then_ours],
            "/slurm/v0.0.45/job/50": [jobs(job_doc(50, "RUNNING", comment="someone else's"))],
            "/slurm/v0.0.45/job/51": [ours],
        }
    )
    assert script.run(ops_for(state_with(), limit=5).submit("#!/bin/bash\ntrue\n", {"name": "reduce"})) == 51
    assert script.count(ACCOUNTING_JOBS) == 2 and script.count("/slurm/v0.0.45/job/50") == 1
