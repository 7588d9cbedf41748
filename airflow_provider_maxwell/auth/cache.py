"""One renewing token cache per process and connection, shared by threads and asyncio tasks.

A triggerer waiting on 1,000 jobs of one connection mints one token, not 1,000: concurrent
callers wait on one lock and reuse what the first one minted. Tokens live in memory only.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable

from airflow_provider_maxwell.auth.tokens import MintedToken


class TokenCache:
    """The current token of one connection in one process, renewed before it expires, minted once for all callers."""

    def __init__(self) -> None:
        self._token: MintedToken | None = None
        # Reentrant: Airflow runs on_kill (which cancels the job through this cache) in a SIGTERM
        # handler on the task's main thread, which may be holding this lock at that moment.
        self._lock = threading.RLock()
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self.mints = 0

    def _usable(self, stale: str | None) -> MintedToken | None:
        token = self._token
        if token is not None and token.is_fresh() and token.value != stale:
            return token
        return None

    def get(self, mint: Callable[[], MintedToken], stale: str | None = None) -> MintedToken:
        """The cached token, or a new one from `mint` when it is due for renewal or was refused (`stale`)."""
        with self._lock:
            token = self._usable(stale)
            if token is None:
                token = self._token = mint()
                self.mints += 1
            return token

    async def aget(self, mint: Callable[[], Awaitable[MintedToken]], stale: str | None = None) -> MintedToken:
        """The async twin of `get`: one mint per event loop at a time, however many callers wait."""
        token = self._usable(stale)
        if token is not None:
            return token
        loop = asyncio.get_running_loop()
        lock = self._async_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            token = self._usable(stale)  # another task may have minted while this one waited
            if token is None:
                token = await mint()
                with self._lock:
                    self._token = token
                    self.mints += 1
            return token
