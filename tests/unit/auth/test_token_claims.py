"""The edges of what a token's claims may say, and when a token counts as fresh by the clock."""

from __future__ import annotations

import time

import pytest

from airflow_provider_maxwell.auth.tokens import MintedToken, UnusableToken, token_from_jwt
from tests.unit.config.test_messages import signed


def test_a_token_is_fresh_by_the_clock_until_its_renewal_is_due(monkeypatch: pytest.MonkeyPatch):
    token = MintedToken("t", issued_at=1000.0, expires_at=2000.0)  # renewal due at 1900
    monkeypatch.setattr(time, "time", lambda: 1899.5)
    assert token.is_fresh()
    monkeypatch.setattr(time, "time", lambda: 1900.0)
    assert not token.is_fresh()


def test_fractional_times_are_kept_and_a_token_issued_at_the_epoch_is_a_time(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    token = token_from_jwt(signed({"iat": 0, "exp": 6000.5}))
    assert (token.issued_at, token.expires_at) == (0.0, 6000.5)


def test_a_claim_beyond_any_float_is_refused():
    with pytest.raises(UnusableToken, match=r"^its iat/exp claims are not times a token can have$"):
        token_from_jwt(signed({"exp": 10**400}))
