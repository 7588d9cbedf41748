"""Typed errors of the Maxwell provider. None of them ever carries a token or a password."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A JWT (three base64url parts, the first starting with '{"' encoded) or a bearer-looking long token.
_TOKEN_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*|[A-Za-z0-9_-]{32,}")


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every given secret and anything shaped like a token replaced by '***', for messages
    that quote what a server answered."""
    # Longest first: a secret containing a shorter one would otherwise be replaced only in part.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return _TOKEN_LIKE.sub("***", text)


def scrubbed_excerpt(text: str, secrets: Iterable[str | None] = (), limit: int = 300) -> str:
    """A server's words (a body, a Location, an error text) as a message quotes them: on one line, scrubbed
    of `secrets` and token-shaped parts, then cut to `limit` characters. Cut after scrubbing: a secret cut
    in two would no longer be recognised as one."""
    return scrub(" ".join(text[: 8 * limit].split()), secrets)[:limit]


class MaxwellError(Exception):
    """Base class of every error this provider raises."""


class MaxwellConfigError(MaxwellError, ValueError):
    """A connection or an argument is invalid; the message names the field and the fix."""


class MaxwellAuthError(MaxwellError):
    """No valid Slurm token could be had, or Slurm refused it even after one renewal."""


class TokenServiceUnreachable(MaxwellAuthError):
    """The token service (DESY's portal, Keycloak) gave no answer at all: worth retrying, unlike a refusal."""


@dataclass(frozen=True)
class SlurmError:
    """One entry of the `errors` list Slurm puts in its answers (both of its dialects)."""

    code: int | None
    message: str
    description: str = ""
    source: str = ""

    def __str__(self) -> str:
        parts = [f"error {self.code}" if self.code is not None else "error", self.message]
        if self.description and self.description != self.message:
            parts.append(f"({self.description})")
        if self.source:
            parts.append(f"in {self.source}")
        return " ".join(p for p in parts if p)


class SlurmApiError(MaxwellError):
    """Slurm (or a proxy in front of it) answered with an error."""

    def __init__(self, message: str, *, status: int | None, url: str, errors: Sequence[SlurmError] = ()) -> None:
        self.status = status
        self.url = url
        self.errors = tuple(errors)
        detail = "; ".join(str(e) for e in self.errors)
        status_text = f"HTTP {status}" if status is not None else "no HTTP answer"
        super().__init__(f"{message}: {status_text} from {url}" + (f": {detail}" if detail else ""))

    def has_code(self, *codes: int) -> bool:
        """True if Slurm's answer carried any of these error numbers."""
        return any(e.code in codes for e in self.errors)


class SlurmTransientError(SlurmApiError):
    """Slurm could not be reached or was briefly unavailable (connection error, timeout, 502/503/504)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        url: str,
        errors: Sequence[SlurmError] = (),
        retry_after: float | None = None,
        never_sent: bool = False,
    ) -> None:
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if it said
        self.never_sent = never_sent  # True: the request certainly did not reach slurmrestd
        super().__init__(message, status=status, url=url, errors=errors)


class SlurmAccountingUnavailable(SlurmApiError):
    """slurmrestd answers, but the accounting database (slurmdbd) does not: /slurmdb is down for now."""


class SlurmJobNotFound(SlurmApiError):
    """Slurm does not know the job (error 2017), or accounting has no record of it."""

    def __init__(self, job_id: int, *, status: int | None, url: str, errors: Sequence[SlurmError] = ()) -> None:
        self.job_id = job_id
        super().__init__(f"Slurm job {job_id} not found", status=status, url=url, errors=errors)
