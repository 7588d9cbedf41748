"""The token cache under the ways Airflow calls into it."""

from __future__ import annotations

import threading
import time

from airflow_provider_maxwell.auth.cache import TokenCache
from airflow_provider_maxwell.auth.tokens import MintedToken


def token(value: str, lifetime: float = 600) -> MintedToken:
    now = time.time()
    return MintedToken(value=value, issued_at=now, expires_at=now + lifetime)


def test_reentry_from_the_same_thread_does_not_deadlock():
    # Airflow calls on_kill from a SIGTERM handler on the task's main thread; if the signal lands
    # while that thread is inside the cache, on_kill's cancel_job re-enters it on the same thread.
    cache = TokenCache()
    result: list[str] = []

    def mint_interrupted_by_on_kill() -> MintedToken:
        result.append(cache.get(lambda: token("from-on-kill")).value)
        return token("from-main")

    worker = threading.Thread(target=lambda: result.append(cache.get(mint_interrupted_by_on_kill).value), daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "the cache deadlocked on re-entry from the same thread"
    assert result == ["from-on-kill", "from-main"]


def test_renews_only_when_due_or_refused():
    cache = TokenCache()
    first = cache.get(lambda: token("a"))
    assert cache.get(lambda: token("b")) is first
    assert cache.get(lambda: token("c"), stale="a").value == "c"  # Slurm refused "a": renew past it
    assert cache.mints == 2
    # Renewal before expiry, with the clock in hand: tests/unit/test_rules_users_rely_on.py.
