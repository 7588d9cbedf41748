"""One renewing token cache per process and connection, shared by threads and asyncio tasks.

A triggerer waiting on 1,000 jobs of one connection mints one token, not 1,000: concurrent
callers wait on one lock and reuse what the first one minted. With a shared file (auth/shared.py)
the task processes of a host do the same among themselves: a process first adopts the token an
earlier one stored, and mints only under the host-wide lock, after looking again.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable

from airflow_provider_maxwell.auth.shared import LOCK_WAIT, SharedTokenFile
from airflow_provider_maxwell.auth.tokens import MintedToken


class TokenCache:
    """The current token of one connection in one process, renewed before it expires, minted once for all callers."""

    def __init__(self, shared: SharedTokenFile | None = None) -> None:
        self._token: MintedToken | None = None
        self.shared = shared
        # Reentrant: Airflow runs on_kill (which cancels the job through this cache) in a SIGTERM
        # handler on the task's main thread, which may be holding this lock at that moment.
        self._lock = threading.RLock()
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self.mints = 0  # by this process
        self._minted: MintedToken | None = None  # the token this process minted last
        self._told: MintedToken | None = None  # the token last handed to the masker and the log
        self._telling = threading.Lock()
        self.adopted = 0  # tokens taken from the shared file, minted by another process

    @staticmethod
    def _good(token: MintedToken | None, stale: str | None) -> MintedToken | None:
        return token if token is not None and token.is_fresh() and token.value != stale else None

    def _from_shared(self, stale: str | None) -> MintedToken | None:
        token = self._good(self.shared.load(), stale) if self.shared is not None else None
        if token is not None:
            self._token = token
            self.adopted += 1
        return token

    def _keep(self, token: MintedToken) -> MintedToken:
        self._token = self._minted = token
        self.mints += 1
        if self.shared is not None:
            self.shared.save(token)
        return token

    def first_use(self, token: MintedToken) -> bool:
        """Whether this process uses `token` for the first time: every hook, sensor poke and trigger of the
        connection in a process shares this cache, and the masker and the log are told of a token once."""
        with self._telling:
            if token is self._told:
                return False
            self._told = token
            return True

    def minted_here(self, token: MintedToken) -> bool:
        """Whether this process minted `token` (False: adopted from the host's shared file)."""
        return token is self._minted

    def get(self, mint: Callable[[], MintedToken], stale: str | None = None) -> MintedToken:
        """The cached token, or a new one from `mint` when it is due for renewal or was refused (`stale`)."""
        with self._lock:
            token = self._good(self._token, stale) or self._from_shared(stale)
            if token is not None:
                return token
            if self.shared is None:
                return self._keep(mint())
            with self.shared.lock.held(LOCK_WAIT):
                # Look again: the process that held the lock may have just stored a fresh token.
                return self._from_shared(stale) or self._keep(mint())

    async def aget(self, mint: Callable[[], Awaitable[MintedToken]], stale: str | None = None) -> MintedToken:
        """The async twin of `get`: one mint per event loop at a time, however many callers wait."""
        token = self._good(self._token, stale)
        if token is not None:
            return token
        loop = asyncio.get_running_loop()
        lock = self._async_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            token = self._good(self._token, stale) or self._from_shared(stale)  # another task may have minted
            if token is not None:
                return token
            shared = self.shared
            held = shared is not None and await asyncio.to_thread(shared.lock.acquire, LOCK_WAIT)
            try:
                token = self._from_shared(stale) if held else None
                if token is None:
                    token = await mint()
                    with self._lock:
                        self._keep(token)
                return token
            finally:
                if held and shared is not None:
                    shared.lock.release()
