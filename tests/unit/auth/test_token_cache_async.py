"""The token cache's async path, as the triggerer uses it: one mint for however many waiting tasks, reuse
while the token is fresh, renewal past a refused one, and the host's shared file under its lock."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_maxwell.auth import cache as cache_module
from airflow_provider_maxwell.auth.cache import TokenCache
from airflow_provider_maxwell.auth.tokens import MintedToken
from tests.unit.auth.test_shared_tokens import shared_file


class AsyncMinter:
    """An async mint that lets other tasks run while it waits on the token service; counts its calls."""

    def __init__(self, life: float = 3600.0) -> None:
        self.values: list[str] = []
        self.life = life

    async def __call__(self) -> MintedToken:
        await asyncio.sleep(0)  # the request in flight: every other waiting task gets to run
        self.values.append(f"slurm-token-{len(self.values) + 1}-" + "x" * 40)
        now = time.time()
        return MintedToken(self.values[-1], now, now + self.life, "alice")


def test_many_waiting_tasks_get_one_minted_token():
    cache, minter = TokenCache(), AsyncMinter()

    async def thousand_triggers() -> list[MintedToken]:
        return await asyncio.gather(*(cache.aget(minter) for _ in range(50)))

    tokens = asyncio.run(thousand_triggers())
    assert minter.values == ["slurm-token-1-" + "x" * 40]
    assert {t.value for t in tokens} == set(minter.values) and cache.mints == 1


def test_a_fresh_token_is_reused_and_a_refused_one_renewed_once_for_all_waiters():
    cache, minter = TokenCache(), AsyncMinter()
    first = asyncio.run(cache.aget(minter))
    assert asyncio.run(cache.aget(minter)) is first and cache.mints == 1

    async def refused_by_all(stale: str) -> list[MintedToken]:
        return await asyncio.gather(*(cache.aget(minter, stale=stale) for _ in range(10)))

    renewed = asyncio.run(refused_by_all(first.value))
    assert len(minter.values) == 2 and {t.value for t in renewed} == {minter.values[1]}
    assert cache.mints == 2


def test_a_token_due_for_renewal_is_minted_anew(monkeypatch: pytest.MonkeyPatch):
    cache, short = TokenCache(), AsyncMinter(life=10.0)  # renewal due 1 s before expiry
    first = asyncio.run(cache.aget(short))
    monkeypatch.setattr(time, "time", lambda: first.renew_at + 0.001)
    assert asyncio.run(cache.aget(short)).value == short.values[1] != first.value


def test_the_async_mint_is_stored_for_the_hosts_other_processes_and_the_lock_let_go():
    shared, minter = shared_file(), AsyncMinter()
    cache = TokenCache(shared)
    minted = asyncio.run(cache.aget(minter))
    assert shared.load() == minted and (cache.mints, cache.adopted) == (1, 0)
    assert shared.lock.acquire(0)  # released after the mint: the next process is not kept waiting
    shared.lock.release()


def test_a_task_adopts_what_another_process_stored_instead_of_minting():
    shared, minter = shared_file(), AsyncMinter()
    now = time.time()
    stored = MintedToken("minted-elsewhere-" + "y" * 30, now, now + 3600, "alice")
    shared.save(stored)
    cache = TokenCache(shared_file())  # this process's own view of the same file
    assert asyncio.run(cache.aget(minter)) == stored
    assert minter.values == [] and (cache.mints, cache.adopted) == (0, 1)
    assert asyncio.run(cache.aget(minter)) == stored and cache.adopted == 1  # kept in memory since


def test_without_the_hosts_lock_in_time_the_task_mints_for_itself(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cache_module, "LOCK_WAIT", 0.0)  # the lock is held past the wait
    shared, minter = shared_file(), AsyncMinter()
    assert shared.lock.acquire(0)  # held by another thread of this process, minting through the sync path
    try:
        cache = TokenCache(shared)
        minted = asyncio.run(cache.aget(minter))
        assert minted.value == minter.values[0] and cache.mints == 1
        assert shared.load() == minted  # stored all the same, for the processes that come later
        # It did not let go of the lock it never got: the other thread still holds it.
        assert not shared_file().lock.acquire(0)
    finally:
        shared.lock.release()
