"""Typed errors of the Maxwell provider. None of them ever carries a token or a password."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

# A JWT (three base64url parts, the first starting with '{"' encoded) or a bearer-looking long token.
_TOKEN_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*|[A-Za-z0-9_-]{32,}")
MIN_SECRET = 4  # characters: a shorter secret is left in text, where it would stand for ordinary words
# The shortest beginning of a secret that is scrubbed on its own (a server echoing a token cut short).
# 8 characters are 48 bits of a random token and most of a typical password; shorter beginnings are
# ordinary words ("pass", "correct") that error messages keep.
MIN_SECRET_PREFIX = 8
SHOWN_LENGTH = 60  # characters of a bad value an error message quotes: enough to recognise it
# How servers write &, <, >, " and ' in HTML: Python's html.escape, Jinja/markupsafe, PHP, XML, quotes as is.
_HTML_SPELLINGS = [
    str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", **quotes})
    for quotes in (
        {'"': "&quot;", "'": "&#x27;"},
        {'"': "&#34;", "'": "&#39;"},
        {'"': "&quot;", "'": "&#039;"},
        {'"': "&quot;", "'": "&apos;"},
        {},
    )
]
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


@functools.lru_cache(maxsize=64)  # every answer is scrubbed of the same few secrets: worked out once each
def secret_forms(secret: str) -> tuple[str, ...]:
    """`secret` as a server may echo it: as is, URL-encoded (with '/' encoded or left, '+' or %20 for a
    space, upper- or lower-case hex), JSON-escaped (ASCII or not, '/' as is or as '\\/'), HTML-escaped."""
    urls = [quote(secret, safe=""), quote(secret), quote_plus(secret), quote_plus(secret, safe="/")]
    urls += [_PERCENT_ESCAPE.sub(lambda m: m.group().lower(), u) for u in urls]
    jsons = [json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]
    jsons += [j.replace("/", "\\/") for j in jsons]
    htmls = [secret.translate(spelling) for spelling in _HTML_SPELLINGS]
    return tuple(dict.fromkeys([secret, *urls, *jsons, *htmls]))


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every given secret (in any form `secret_forms` lists, or its beginning of at least
    MIN_SECRET_PREFIX characters) and anything shaped like a token replaced by '***', for messages that
    quote what a server answered."""
    forms = {form for s in secrets if s and len(s) >= MIN_SECRET for form in secret_forms(s)}
    pieces, done = [], 0
    for start, end in _merged(span for form in forms for span in _matches(text, form)):
        pieces += [text[done:start], "***"]
        done = end
    return _TOKEN_LIKE.sub("***", "".join(pieces) + text[done:])


def _matches(text: str, form: str) -> Iterable[tuple[int, int]]:
    """Where `text` holds `form`, or a beginning of it at least MIN_SECRET_PREFIX characters long, each
    as long as it goes."""
    head = form[:MIN_SECRET_PREFIX]
    at = text.find(head)
    while at >= 0:
        end = at + len(head)
        while end - at < len(form) and end < len(text) and text[end] == form[end - at]:
            end += 1
        yield at, end
        at = text.find(head, at + 1)


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching spans as one: the longest match of any form wins wherever forms share a
    beginning (a secret URL-encoded with '/' left as is starts like its double encoding)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def scrubbed_excerpt(text: str, secrets: Iterable[str | None] = (), limit: int = 300) -> str:
    """A server's words (a body, a Location, an error text) as a message quotes them: on one line, scrubbed
    of `secrets` and token-shaped parts, then cut to `limit` characters. Cut after scrubbing: a secret cut
    in two would no longer be recognised as one."""
    # Scrubbed before the whitespace is folded: a secret with two spaces in a row would no longer match.
    return " ".join(scrub(text[: 8 * limit], secrets).split())[:limit]


def shown(value: object) -> str:
    """A (non-secret) bad value as an error message quotes it: its repr, cut short if it is long. A huge
    integer is named, not written out (Python refuses to print one of more than 4300 digits)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**100 else "a huge number"
    return text if len(text) <= SHOWN_LENGTH else f"{text[:SHOWN_LENGTH]}... ({len(text)} characters)"


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
