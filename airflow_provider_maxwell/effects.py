"""The few things protocol logic asks of the outside world, as plain values (h11's habit).

Protocol code is written as generators that yield these effects and receive their results; a
sync driver (requests) and an async driver (httpx) carry them out. So retry, renewal and
fallback logic exists once, for workers and for the triggerer alike.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class HttpCall:
    """An HTTP request to make, as a value (the protocol decides, the driver sends)."""

    method: str
    url: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    form: Mapping[str, str] | None = field(default=None, repr=False)  # Keycloak's form holds the password
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    timeout: float | None = None  # seconds for the whole request; None: the connection's timeout

    def request_kwargs(self) -> dict[str, Any]:
        """The arguments requests and httpx share for this call."""
        return {
            "params": self.params,
            "json": self.json,
            "data": self.form,
            "headers": dict(self.headers),
            "auth": self.basic_auth,
        }


@dataclass(frozen=True)
class HttpResult:
    """An HTTP answer, as the drivers hand it back to a protocol."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A header's value, whatever case the server wrote its name in."""
        return header(self.headers, name)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value by its lower-case `name`, whatever case the server wrote it in."""
    return next((v for k, v in headers.items() if k.lower() == name), None)


@dataclass(frozen=True)
class TransportFailure:
    """No HTTP answer. `before_send` is True when the request certainly never left (connect failed)."""

    message: str
    before_send: bool


@dataclass(frozen=True)
class Send:
    """Effect: send this request and resume with an HttpResult or TransportFailure."""

    call: HttpCall


@dataclass(frozen=True)
class Sleep:
    """Effect: wait this many seconds (time.sleep or asyncio.sleep, by driver)."""

    seconds: float


@dataclass(frozen=True)
class GetToken:
    """Ask for the connection's Slurm token; `stale` is a token Slurm refused (renew past it)."""

    stale: str | None = field(default=None, repr=False)  # a token


@dataclass(frozen=True)
class Note:
    """Something worth a line in the task log (progress of a job)."""

    message: str


Effect = Send | Sleep | GetToken | Note
Protocol = Generator[Effect, Any, T]


def unhandled(effect: NoReturn) -> NoReturn:
    """Drivers end their dispatch on effects with this: mypy then proves every kind of effect is handled."""
    raise TypeError(f"no driver handles the effect {effect!r}")
