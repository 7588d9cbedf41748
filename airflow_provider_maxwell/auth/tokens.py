"""A minted Slurm token and when to renew it."""

from __future__ import annotations

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


def token_from_jwt(value: str, *, expires_in: float | None = None) -> MintedToken:
    """Read `exp`/`iat` from a JWT without checking its signature (Slurm does that)."""
    now = time.time()
    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.PyJWTError:
        claims = {}
    issued = float(claims.get("iat") or now)
    expires = claims.get("exp")
    if expires is None:
        expires = now + (expires_in if expires_in is not None else 300)
    user = claims.get("sun") or claims.get("username")
    return MintedToken(value=value, issued_at=issued, expires_at=float(expires), user=str(user) if user else None)
