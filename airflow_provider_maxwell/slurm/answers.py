"""What Slurm's answers mean: errors, auth failures, purged jobs, accounting lag. No I/O.

Slurm does not say 401 for a bad or expired token: slurmrestd passes the token on and slurmctld or
slurmdbd refuse it, so the refusal arrives as 500/511 on /slurm, or 200/502 with error 1007/7000
on /slurmdb (measured on 22.05, 24.11 and 26.05).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_maxwell.exceptions import SlurmError, scrubbed_excerpt
from airflow_provider_maxwell.slurm.dialects import Service

AUTH_ERROR_CODES = frozenset({1007, 5005})  # "Protocol authentication error", "Invalid authentication credential"
ACCOUNTING_CONNECT_ERROR = 7000  # "Unable to connect to database": a refused token or slurmdbd down
INVALID_JOB_ID = 2017
ALREADY_DONE = 2021  # "Job/step already completing or completed": signalling an ended job is no failure
NOTHING_FOUND = 9003
JOB_HELD = 2042  # "Job is in held state, pending scheduler release": 22.05's answer to a held submission, with its id
TRANSIENT_HTTP = frozenset({502, 503, 504})
# slurmctld told the client to back off (rl_enable's token bucket) or dropped the RPC unread: the
# request was not carried out, so even a submission may be sent again. 25.11+ answer these with 502.
RATE_LIMITED = frozenset({1804, 1805})  # SLURMCTLD_COMMUNICATIONS_BACKOFF, _HARD_DROP
CONTROLLER_UNREACHABLE = frozenset({1800, 1801, 1802, 1803})  # connection, send, receive, shutdown


@dataclass(frozen=True)
class Answer:
    """An HTTP answer reduced to what matters: status, JSON document (if any) and Slurm's errors."""

    status: int
    document: Mapping[str, Any] | None
    errors: tuple[SlurmError, ...]
    body_excerpt: str

    @property
    def is_slurm(self) -> bool:
        """True when slurmrestd itself answered (a JSON document with `meta`), not a proxy's error page."""
        return self.document is not None and "meta" in self.document

    def has_code(self, *codes: int) -> bool:
        """True if the answer carried any of these Slurm error numbers."""
        return any(e.code in codes for e in self.errors)

    @property
    def release(self) -> str | None:
        """The Slurm release that answered (from the answer's `meta`), if it said."""
        meta = (self.document or {}).get("meta")
        if not isinstance(meta, Mapping):
            return None
        slurm = meta.get("slurm") or meta.get("Slurm")
        release = slurm.get("release") if isinstance(slurm, Mapping) else None
        return release if isinstance(release, str) and release else None


def read_answer(status: int, body: bytes | str, secrets: Sequence[str] = ()) -> Answer:
    """An HTTP answer as Slurm's document, errors and status; bodies that are not JSON objects become document=None.

    The texts it keeps (excerpt, error texts) are scrubbed of `secrets` (the connection's and the Slurm
    token sent) and of anything token-shaped: a proxy may echo the request's headers.
    """
    # A listing of 1000 jobs is ~5 MB: no copies of the whole body (decode, strip, split) besides the parse.
    head = body[:1000]
    head_text = head.decode("utf-8", errors="replace") if isinstance(head, bytes) else head
    document: Mapping[str, Any] | None
    try:
        parsed = json.loads(body) if body and not body.isspace() else None
        document = parsed if isinstance(parsed, Mapping) else None
    except (ValueError, RecursionError):  # invalid JSON or UTF-8, or nested deeper than Python parses
        document = None
    excerpt = scrubbed_excerpt(head_text, secrets, 200)
    return Answer(status, document, tuple(parse_errors(document, secrets)), excerpt)


def parse_errors(document: Mapping[str, Any] | None, secrets: Sequence[str] = ()) -> list[SlurmError]:
    """Slurm's `errors` list, in either dialect (`error_code` on submit, `error_number` elsewhere)."""
    entries = (document or {}).get("errors") or []
    errors = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        code = entry.get("error_number", entry.get("error_code", entry.get("errno")))
        errors.append(
            SlurmError(
                code=error_code(code),
                message=quoted(entry.get("error") or entry.get("description"), secrets),
                description=quoted(entry.get("description"), secrets),
                source=quoted(entry.get("source"), secrets),
            )
        )
    return errors


MAX_ERROR_TEXT = 300  # characters of one of Slurm's error texts an error message quotes


def error_code(value: Any) -> int | None:
    """A Slurm error number, plain or as ASCII digits (Slurm's are 32-bit); None for anything else, e.g.
    '²' (which isdigit() takes and int() refuses) or a bool."""
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit() and len(value) <= 11:
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**32 else None


def quoted(value: Any, secrets: Sequence[str] = ()) -> str:
    """One of Slurm's texts in an answer as an error message quotes it: text only, `secrets` and
    token-shaped parts removed (a proxy may echo the request's headers), cut short."""
    return scrubbed_excerpt(value, secrets, MAX_ERROR_TEXT) if isinstance(value, str) else ""


GENERIC_ERROR = -1


def is_auth_failure(answer: Answer) -> bool:
    """Slurm certainly refused the token (as opposed to the request)."""
    return answer.status in (401, 403, 511) or answer.has_code(*AUTH_ERROR_CODES)


def may_be_auth_failure(answer: Answer, service: Service) -> bool:
    """Slurm's answer to a refused token on some releases, but also to other faults: renew once to tell.

    On /slurmdb a refused token looks like an unreachable database (7000); 22.05 answers a refused
    token on /slurm with HTTP 500 and the generic error -1 (measured).
    """
    if service is Service.SLURMDB:
        return answer.has_code(ACCOUNTING_CONNECT_ERROR)
    return answer.status == 500 and answer.has_code(GENERIC_ERROR)


def is_transient(answer: Answer) -> bool:
    """A proxy, a restarting daemon or a busy slurmctld, worth retrying with backoff; not a Slurm verdict."""
    return (
        (answer.status in TRANSIENT_HTTP and not answer.errors)
        or is_rate_limited(answer)
        or answer.has_code(*CONTROLLER_UNREACHABLE)
    )


def is_rate_limited(answer: Answer) -> bool:
    """slurmctld refused to carry out the request for now (rate limit, full RPC queue): certainly not done."""
    return answer.has_code(*RATE_LIMITED) or any(
        "rate limit" in text or "back off" in text
        for text in (f"{e.message} {e.description}".lower() for e in answer.errors)
    )


def is_unknown_job(answer: Answer) -> bool:
    """slurmctld no longer (or never) knew the job: 500 on 22.05, 404 from 23.02 on, error 2017."""
    return answer.has_code(INVALID_JOB_ID) or (answer.status == 404 and answer.is_slurm)


def is_error(answer: Answer) -> bool:
    """Anything other than success. Slurm may answer 200 with errors; 9003 (nothing found) is no error."""
    if answer.status >= 400:
        return True
    return any(e.code not in (NOTHING_FOUND, None) for e in answer.errors)


def only_held(answer: Answer) -> bool:
    """A submission's answer whose only error says the job was created held (22.05): a success."""
    return answer.status < 400 and bool(answer.errors) and all(e.code == JOB_HELD for e in answer.errors)


def signal_failures(answer: Answer) -> list[SlurmError]:
    """Per-job errors of a cancel or signal (DELETE /slurm/vX/job/{id}): 24.11 on answer HTTP 200 even
    when nothing happened, with the reason in `status[].error` (2002 for another user's job, 2017 for
    an unknown id; measured). An already ended job is not a failure."""
    entries = (answer.document or {}).get("status")
    failures = []
    for entry in entries if isinstance(entries, list) else []:
        error = entry.get("error") if isinstance(entry, Mapping) else None
        if not isinstance(error, Mapping):
            continue
        code = error_code(error.get("code"))  # a proxy or another release may send "2002" as text
        if code is None or code in (0, ALREADY_DONE):
            continue
        message = quoted(error.get("message") or error.get("string"))
        failures.append(SlurmError(code=code, message=message, description=quoted(error.get("string"))))
    return failures


def controller_down(answer: Answer) -> bool:
    """A ping answer saying slurmctld does not respond (ping itself checks no token).

    24.11 on: HTTP 200 with `pinged: DOWN`, `responding: false`; 22.05: HTTP 500 with error -1
    ("slurmctld config is unable to load"). Both measured with slurmctld stopped.
    """
    if answer.document is None:
        return False
    pings = answer.document.get("pings")
    if isinstance(pings, list) and pings:
        return not any(
            isinstance(p, Mapping) and (p.get("responding") is True or "UP" in (p.get("pinged"), p.get("ping")))
            for p in pings
        )
    return answer.status >= 500 and answer.has_code(GENERIC_ERROR)
