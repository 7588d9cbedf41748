"""One REST call as protocol steps: token, one renewal when Slurm refuses it, retries where safe.

No I/O here: the steps yield effects (effects.py) and a driver (drivers.py) carries them out. What
Slurm's answers mean is in slurm/answers.py; this module decides what to do about them.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.client.state import ConnectionState
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import (
    GetToken,
    HttpCall,
    HttpResult,
    Note,
    Protocol,
    Send,
    Sleep,
    TransportFailure,
    header,
)
from airflow_provider_maxwell.exceptions import (
    MaxwellAuthError,
    SlurmAccountingUnavailable,
    SlurmApiError,
    SlurmTransientError,
    TokenServiceUnreachable,
    scrub,
    scrubbed_excerpt,
)
from airflow_provider_maxwell.slurm import answers
from airflow_provider_maxwell.slurm.answers import Answer
from airflow_provider_maxwell.slurm.dialects import Route, Service

MAX_BACKOFF = 30.0  # seconds: the longest pause between two attempts of one call
MAX_RETRY_AFTER = 120.0  # seconds: a longer Retry-After is taken as this
# Seconds of pauses a call may spend waiting out slurmctld's rate limit (answers that say it did
# nothing), beyond its retry limit: a busy cluster is weather, not a failure.
RATE_LIMIT_PATIENCE = 600.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is repeated when the answer did not come or was transient."""

    limit: int = 5  # attempts in all, the first included
    delay: float = 1.0  # first backoff in seconds; doubles per attempt, capped at MAX_BACKOFF, +-20 % jitter

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (0 for the first)."""
        return min(self.delay * 2**attempt, MAX_BACKOFF) * random.uniform(0.8, 1.2)


def mint(state: ConnectionState, policy: RetryPolicy) -> Protocol[MintedToken]:
    """A new token from the connection's source, repeated only while the token service gives no answer."""
    for attempt in range(policy.limit):
        try:
            return (yield from state.source.mint())
        except TokenServiceUnreachable:
            if attempt + 1 >= policy.limit:
                raise
            yield Sleep(policy.backoff(attempt))
    raise AssertionError("unreachable: the loop returns or raises")


@dataclass
class _Call:
    """One REST call across its attempts: what it asks, and what it has been through so far."""

    policy: RetryPolicy
    method: str
    url: str
    resend_safe: bool
    attempts: int = 0  # sent and answered (or not), rate-limited ones aside
    stale: str | None = None  # the token Slurm refused: the next GetToken renews past it
    rate_limited_for: float = 0.0  # seconds paused for slurmctld's rate limit so far
    rate_limited_rounds: int = 0
    deadline: float | None = None  # epoch seconds: no attempt, and no pause, reaches past it
    sent_any: bool = False  # an attempt reached the server (or may have): its answer, if any, was lost
    # The attempt under way: its token, its headers, and what its answer is scrubbed of (the server may echo the token).
    token: str = field(default="", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    secrets: list[str] = field(default_factory=list, repr=False)

    def bounded(self, seconds: float) -> float:
        """`seconds` (an attempt's timeout, a pause) cut to what is left before the deadline; raises
        SlurmTransientError once nothing is left."""
        if self.deadline is None:
            return seconds
        left = self.deadline - time.time()
        if left <= 0:
            raise SlurmTransientError(
                f"Slurm REST API gave no answer within the call's bound, after {self.attempts} attempt(s)",
                status=None,
                url=self.url,
                never_sent=not self.sent_any,
            )
        return min(seconds, left)

    def may_repeat(self, never_sent: bool = False) -> bool:
        """Whether another attempt is allowed: safe to send again (or certainly not carried out), and left."""
        return (self.resend_safe or never_sent) and self.attempts < self.policy.limit


def exchange(
    state: ConnectionState,
    policy: RetryPolicy,
    method: str,
    route: Route,
    *,
    params: Mapping[str, Any] | None = None,
    body: Any = None,
    resend_safe: bool = True,
    timeout: float | None = None,
    deadline: float | None = None,
) -> Protocol[Answer]:
    """One REST call with token, one renewal on a refused token, and retries where they are safe.

    Each attempt: get a token, send, then judge the answer (`_judge`): done, ask again (after the pause
    it yielded), or raise. `resend_safe=False` (job submission): the request is repeated only when it
    certainly was not carried out (it never reached slurmrestd, or slurmctld said it backed off), so a
    job is never submitted twice by a blind retry; SlurmTransientError leaves the caller to find out.
    `timeout`: seconds for this request as a whole, instead of the connection's. `deadline` (epoch
    seconds): the call's attempts and pauses end by it (each attempt's timeout is cut to what is left;
    a request runs at most `whole_request_seconds` of that), then SlurmTransientError.
    """
    config = state.config
    call = _Call(policy, method, f"{config.host}{route.path}", resend_safe, deadline=deadline)
    while True:
        token: MintedToken = yield GetToken(call.stale)
        call.token, call.secrets = token.value, [*config.secret_texts, token.value]
        call.headers = {
            "X-SLURM-USER-NAME": config.login,
            "X-SLURM-USER-TOKEN": token.value,
            "Accept": "application/json",
        }
        attempt_timeout = call.bounded(timeout or config.timeout) if deadline is not None else timeout
        result = yield Send(
            HttpCall(method, call.url, params=params, json=body, headers=call.headers, timeout=attempt_timeout)
        )
        call.attempts += 1
        if isinstance(result, TransportFailure):
            call.sent_any = call.sent_any or not result.before_send
            yield from _unanswered(call, result)
            continue
        answer = answers.read_answer(result.status, result.body, call.secrets)
        # slurmctld's rate limit answers that it did nothing; any other answer may follow a request carried out
        call.sent_any = call.sent_any or not answers.is_rate_limited(answer)
        if (yield from _judge(state, route, call, answer, result)):
            continue
        if state.release is None and answer.release:
            state.release = answer.release
        return answer


def _unanswered(call: _Call, result: TransportFailure) -> Protocol[None]:
    """No answer came: pause before the next attempt, or raise when none may follow."""
    if not call.may_repeat(never_sent=result.before_send):
        raise SlurmTransientError(
            f"Slurm REST API unreachable after {call.attempts} attempt(s) ({scrub(result.message, call.secrets)})",
            status=None,
            url=call.url,
            never_sent=result.before_send,
        )
    yield from _pause_to_retry(call, f"Slurm REST API unreachable ({scrub(result.message, call.secrets)})")


def _judge(state: ConnectionState, route: Route, call: _Call, answer: Answer, result: HttpResult) -> Protocol[bool]:
    """Whether the call must be made again (after the pause this yields); False: `answer` is the answer.
    Raises what the answer means when it ends the call: a redirect, a refusal, the last transient failure."""
    if 300 <= answer.status < 400:
        raise _redirected(call, answer, result)
    definite = answers.is_auth_failure(answer)
    ambiguous = not definite and answers.may_be_auth_failure(answer, route.service)
    if ambiguous and (down := (yield from _controller_down(state, route, call.headers))):
        # slurmctld is stopped or restarting: its "error -1" is no verdict on the token.
        if not call.may_repeat():
            raise SlurmTransientError(down, status=answer.status, url=call.url, errors=answer.errors)
        yield from _pause_to_retry(call, down)
        return True
    if definite or ambiguous:
        if call.stale is None:  # renewed once only: a fresh token refused is the answer
            call.stale = call.token
            return True
        raise _refused(state.config, route, call, answer, definite)
    if answers.is_rate_limited(answer) and call.rate_limited_for < RATE_LIMIT_PATIENCE:
        yield from _wait_out_rate_limit(call, result)
        return True
    malformed = answer.status < 300 and answer.document is None
    if (
        malformed
        or answers.is_transient(answer)
        or (answer.status >= 500 and not answer.is_slurm and not answer.errors)
    ):
        wait = retry_after(result.headers)
        if not call.may_repeat():
            what = "answered with a body that is not a JSON object" if malformed else "unavailable"
            raise SlurmTransientError(
                f"Slurm REST API {what} ({answer.body_excerpt!r})",  # scrubbed by read_answer
                status=answer.status,
                url=call.url,
                retry_after=wait,
            )
        yield from _pause_to_retry(call, f"Slurm REST API answered HTTP {answer.status}", wait)
        return True
    return False


def _wait_out_rate_limit(call: _Call, result: HttpResult) -> Protocol[None]:
    """Pause as slurmctld's rate limit asks. Not counted as an attempt: slurmctld did nothing and asks for
    patience, not for giving up (RATE_LIMIT_PATIENCE bounds it)."""
    pause = retry_after(result.headers) or call.policy.backoff(min(call.rate_limited_rounds, 4))
    call.rate_limited_for, call.rate_limited_rounds = call.rate_limited_for + pause, call.rate_limited_rounds + 1
    call.attempts -= 1
    pause = call.bounded(pause)
    yield Note(f"slurmctld's rate limit: {call.method} {call.url} again in {pause:.1f} s")
    yield Sleep(pause)


def _redirected(call: _Call, answer: Answer, result: HttpResult) -> SlurmApiError:
    location = result.header("location")
    # A sign-on proxy's Location may carry the token it was sent, or a session, in its query.
    shown = scrubbed_excerpt(location, call.secrets) if location is not None else None
    return SlurmApiError(
        f"Slurm REST API redirected to {shown!r}; credentials are not sent on. Set the connection's host to the "
        "final URL",
        status=answer.status,
        url=call.url,
    )


def _refused(
    config: MaxwellConnectionConfig, route: Route, call: _Call, answer: Answer, definite: bool
) -> SlurmApiError | MaxwellAuthError:
    """What a renewed token refused again means: accounting down (slurmdbd says so), else the credentials."""
    if route.service is Service.SLURMDB and answer.has_code(answers.ACCOUNTING_CONNECT_ERROR):
        return SlurmAccountingUnavailable(
            "Slurm accounting (slurmdbd) is unavailable", status=answer.status, url=call.url, errors=answer.errors
        )
    return MaxwellAuthError(
        f"Slurm {'refused' if definite else 'failed on'} a freshly minted token for user "
        f"{config.login!r} (connection {config.conn_id!r}, auth_method={config.auth_method}): "
        f"HTTP {answer.status} from {call.url}"
        + (f": {'; '.join(map(str, answer.errors))}" if answer.errors else "")
        + ". Check the token's source (portal token, password, key) and that the user has a Slurm account"
    )


def _pause_to_retry(call: _Call, why: str, delay: float | None = None) -> Protocol[None]:
    """Say why and when the request is repeated, then wait: `delay` (a Retry-After) or the backoff."""
    delay = call.bounded(delay or call.policy.backoff(call.attempts - 1))
    yield Note(f"{why}; retry {call.attempts} of {call.policy.limit - 1} in {delay:.1f} s: {call.method} {call.url}")
    yield Sleep(delay)


def _controller_down(state: ConnectionState, route: Route, headers: Mapping[str, str]) -> Protocol[str | None]:
    """Why slurmctld cannot answer, if its ping says so (ping checks no token); else None."""
    ping = route.ping()
    if ping is None:
        return None
    url = f"{state.config.host}{ping.path}"
    result = yield Send(HttpCall("GET", url, headers=dict(headers)))
    if isinstance(result, TransportFailure):
        return None
    if answers.controller_down(answers.read_answer(result.status, result.body)):
        return f"slurmctld is not responding (ping at {url})"
    return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a Retry-After header asks for (at most MAX_RETRY_AFTER); None when absent or unreadable."""
    value = header(headers, "retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:  # an HTTP date, or junk: our own backoff applies
        return None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)
