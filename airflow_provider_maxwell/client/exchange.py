"""One REST call as protocol steps: token, one renewal when Slurm refuses it, retries where safe.

No I/O here: the steps yield effects (effects.py) and a driver (drivers.py) carries them out. What
Slurm's answers mean is in slurm/answers.py; this module decides what to do about them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.client.state import ConnectionState
from airflow_provider_maxwell.effects import GetToken, HttpCall, Note, Protocol, Send, Sleep, TransportFailure
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
) -> Protocol[Answer]:
    """One REST call with token, one renewal on a refused token, and retries where they are safe.

    `resend_safe=False` (job submission): the request is repeated only when it certainly was not
    carried out (it never reached slurmrestd, or slurmctld said it backed off), so a job is never
    submitted twice by a blind retry; SlurmTransientError leaves the caller to find out.
    `timeout`: seconds for this request as a whole, instead of the connection's.
    """
    config = state.config
    url = f"{config.host}{route.path}"
    stale: str | None = None
    renewed = False
    attempt = 0
    rate_limited_for, rate_limited_rounds = 0.0, 0  # pauses for slurmctld's rate limit so far
    while True:
        token: MintedToken = yield GetToken(stale)
        # Whatever the server says is quoted scrubbed of these: it may echo the token it was sent.
        secrets = [*config.secret_texts, token.value]
        headers = {"X-SLURM-USER-NAME": config.login, "X-SLURM-USER-TOKEN": token.value, "Accept": "application/json"}
        result = yield Send(HttpCall(method, url, params=params, json=body, headers=headers, timeout=timeout))
        attempt += 1
        if isinstance(result, TransportFailure):
            if (resend_safe or result.before_send) and attempt < policy.limit:
                yield from _pause_to_retry(
                    policy, f"Slurm REST API unreachable ({scrub(result.message, secrets)})", attempt, method, url
                )
                continue
            raise SlurmTransientError(
                f"Slurm REST API unreachable after {attempt} attempt(s) ({scrub(result.message, secrets)})",
                status=None,
                url=url,
                never_sent=result.before_send,
            )
        answer = answers.read_answer(result.status, result.body, secrets)
        if 300 <= answer.status < 400:
            location = header(result.headers, "location")
            # A sign-on proxy's Location may carry the token it was sent, or a session, in its query.
            shown = scrubbed_excerpt(location, secrets) if location is not None else None
            raise SlurmApiError(
                f"Slurm REST API redirected to {shown!r}; "
                "credentials are not sent on. Set the connection's host to the final URL",
                status=answer.status,
                url=url,
            )
        definite = answers.is_auth_failure(answer)
        ambiguous = not definite and answers.may_be_auth_failure(answer, route.service)
        if ambiguous and (down := (yield from _controller_down(state, route, headers))):
            # slurmctld is stopped or restarting: its "error -1" is no verdict on the token.
            if resend_safe and attempt < policy.limit:
                yield from _pause_to_retry(policy, down, attempt, method, url)
                continue
            raise SlurmTransientError(down, status=answer.status, url=url, errors=answer.errors)
        if definite or ambiguous:
            if not renewed:
                renewed, stale = True, token.value
                continue
            if route.service is Service.SLURMDB and answer.has_code(answers.ACCOUNTING_CONNECT_ERROR):
                raise SlurmAccountingUnavailable(
                    "Slurm accounting (slurmdbd) is unavailable", status=answer.status, url=url, errors=answer.errors
                )
            raise MaxwellAuthError(
                f"Slurm {'refused' if definite else 'failed on'} a freshly minted token for user "
                f"{config.login!r} (connection {config.conn_id!r}, auth_method={config.auth_method}): "
                f"HTTP {answer.status} from {url}"
                + (f": {'; '.join(map(str, answer.errors))}" if answer.errors else "")
                + ". Check the token's source (portal token, password, key) and that the user has a Slurm account"
            )
        if answers.is_rate_limited(answer) and rate_limited_for < RATE_LIMIT_PATIENCE:
            # Not counted as an attempt: slurmctld did nothing and asks for patience, not for giving up.
            pause = retry_after(result.headers) or policy.backoff(min(rate_limited_rounds, 4))
            rate_limited_for, rate_limited_rounds = rate_limited_for + pause, rate_limited_rounds + 1
            attempt -= 1
            yield Note(f"slurmctld's rate limit: {method} {url} again in {pause:.1f} s")
            yield Sleep(pause)
            continue
        malformed = answer.status < 300 and answer.document is None
        if (
            malformed
            or answers.is_transient(answer)
            or (answer.status >= 500 and not answer.is_slurm and not answer.errors)
        ):
            wait = retry_after(result.headers)
            if resend_safe and attempt < policy.limit:
                yield from _pause_to_retry(
                    policy, f"Slurm REST API answered HTTP {answer.status}", attempt, method, url, wait
                )
                continue
            what = "answered with a body that is not a JSON object" if malformed else "unavailable"
            raise SlurmTransientError(
                f"Slurm REST API {what} ({answer.body_excerpt!r})",  # scrubbed by read_answer
                status=answer.status,
                url=url,
                retry_after=wait,
            )
        if state.release is None and answer.release:
            state.release = answer.release
        return answer


def _pause_to_retry(
    policy: RetryPolicy, why: str, attempt: int, method: str, url: str, delay: float | None = None
) -> Protocol[None]:
    """Say why and when the request is repeated, then wait: `delay` (a Retry-After) or the backoff."""
    delay = delay or policy.backoff(attempt - 1)
    yield Note(f"{why}; retry {attempt} of {policy.limit - 1} in {delay:.1f} s: {method} {url}")
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


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever case the server wrote its name in."""
    return next((v for k, v in headers.items() if k.lower() == name), None)


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
