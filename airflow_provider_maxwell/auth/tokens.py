"""A minted Slurm token and when to renew it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import jwt

MAX_RENEW_MARGIN = 300.0  # seconds; Slurm gives no grace after `exp`, so renew well before


@dataclass(frozen=True)
class MintedToken:
    """A token with what the hook needs to know about it: its value, user (`sun`) and expiry."""

    value: str = field(repr=False)
    issued_at: float
    expires_at: float
    user: str | None = None  # the `sun` (or `username`) claim: whom Slurm will act as

    @property
    def lifetime(self) -> float:
        """Seconds between issue and expiry."""
        return max(self.expires_at - self.issued_at, 0.0)

    @property
    def renew_at(self) -> float:
        """10 % of the lifetime before expiry, at most 5 minutes before."""
        return self.expires_at - min(0.1 * self.lifetime, MAX_RENEW_MARGIN)

    def is_fresh(self, now: float | None = None) -> bool:
        """True while the token is not yet due for renewal (10 % of its lifetime, at most 5 minutes, before expiry)."""
        return (time.time() if now is None else now) < self.renew_at


MAX_TOKEN_LIFE = 366 * 86400.0  # seconds: a claimed expiry further out is not a time Slurm honours either


class UnusableToken(ValueError):
    """A token endpoint handed out something that cannot be a Slurm token (the caller says where from)."""


def token_from_jwt(value: object, *, expires_in: float | None = None) -> MintedToken:
    """Read `exp`/`iat` from a JWT without checking its signature (Slurm does that).

    Raises UnusableToken (never quoting the value) for what no HTTP header can carry or no clock can read.
    """
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() or " " in value:
        raise UnusableToken(f"not a token (a {type(value).__name__} of {len(str(value))} characters)")
    now = time.time()
    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.PyJWTError:
        claims = {}
    issued = _seconds(claims.get("iat"), now)
    expires = _seconds(claims.get("exp"), now + (expires_in if expires_in is not None else 300))
    if not (issued >= 0 and 0 <= expires <= now + MAX_TOKEN_LIFE):  # nan fails every comparison
        raise UnusableToken("its iat/exp claims are not times a token can have")
    user = claims.get("sun") or claims.get("username")
    return MintedToken(value=value, issued_at=issued, expires_at=expires, user=str(user) if user else None)


def _seconds(claim: object, default: float) -> float:
    """A numeric claim as epoch seconds; the default when absent, nan (refused above) when not a number."""
    if claim is None:
        return default
    if isinstance(claim, bool) or not isinstance(claim, int | float):
        return math.nan
    try:
        return float(claim)
    except OverflowError:  # an int beyond any float (JSON allows 10**400): no time either
        return math.nan
