"""One poller per connection in a triggerer's event loop, shared by every trigger waiting on that
connection's jobs.

Polling each job on its own costs slurmrestd and slurmdbd N requests per interval; HPC admins cut
off clients that do that. The poller runs one round per interval for all its triggers: what a round
asks, and what it learns for which trigger, is the protocol in poll_round.py (slurmctld's jobs/state
for the waited ids, accounting only for the jobs that need it, a bounded number of lookups, so the
cost per interval stays bounded whatever N is; docs/waiting-at-scale.md). This module only runs
rounds through the async driver, fills each trigger's inbox with what a round learnt, and rests
between rounds: the interval with jitter, a backoff after failures, a server's Retry-After, and the
server's share of time (`ServerTimeBudget`).

State lives only in this process (several triggerers each run their own): a registry keyed by event
loop and connection settings. The last trigger out stops the poller.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from airflow_provider_maxwell.client.drivers import SlurmClient
from airflow_provider_maxwell.exceptions import SlurmTransientError
from airflow_provider_maxwell.poll_round import PollRound, PollState, Wait
from airflow_provider_maxwell.watch import JobWatch, Observation

MAX_BACKOFF = 300.0  # seconds: the longest pause after repeated failures
JITTER = 0.1  # +-10 % on every pause, so triggerers started together do not poll in lockstep
BUSY_RATIO = 5  # the server rests 5x its answer time: this poller takes at most 1/6 of its time on average
SERVER_BURST = 30.0  # seconds of server time saved up while quiet, for a round that must ask much (a wave of ends)


@dataclass(eq=False)
class Subscriber(Wait):
    """One waiting trigger: its wait as the rounds see it, and its mailbox."""

    inbox: asyncio.Queue[Observation] = field(default_factory=asyncio.Queue)


@dataclass
class ServerTimeBudget:
    """This poller's share of the server's time (slurmctld's and slurmdbd's answers), as a bucket: it
    fills with 1/(BUSY_RATIO + 1) of the wall-clock time, up to `burst` seconds, and each round's
    server time is taken out. A round may overdraw it (a wave of 2,000 ended jobs is seconds of
    slurmdbd's time, and must be read); the next round then waits until it is back at zero. A server
    slow round after round so rests 5x its answer time after each; one slow round after quiet ones
    does not delay the events of the next interval."""

    burst: float = SERVER_BURST
    saved: float = SERVER_BURST
    last_taken_at: float | None = None  # the clock when a round's time was last taken out

    def rest_after(self, server_seconds: float, now: float) -> float:
        """Take out a round's `server_seconds`, ended at clock reading `now`; the seconds from now the
        server is owed before the next round (0 while the bucket holds enough)."""
        if self.last_taken_at is not None:
            self.saved = min(self.burst, self.saved + (now - self.last_taken_at) / (BUSY_RATIO + 1))
        self.last_taken_at = now
        self.saved -= server_seconds
        return max(-self.saved * (BUSY_RATIO + 1), 0.0)


def backed_off(interval: float, failures: int, longest: float = MAX_BACKOFF) -> float:
    """The pause after `failures` failed reads in a row: the interval, doubled per failure (up to 2**10
    times), never longer than `longest`."""
    return min(interval * 2 ** min(failures, 10), longest) if failures else interval


class JobPoller:
    """Runs one round per interval for every trigger waiting on one connection's jobs."""

    _pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, JobPoller]] = weakref.WeakKeyDictionary()

    def __init__(self, client: SlurmClient, key: str) -> None:
        self.client = client
        self.key = key
        self.subscribers: set[Subscriber] = set()
        self.rounds = 0
        self.failures = 0  # consecutive failed rounds, for the backoff
        self.listing_seconds = 0.0  # how long the server took to answer the last round's requests
        self.server_time = ServerTimeBudget()
        self.poll_state = PollState()  # what the rounds carry from one to the next: turns, the window
        self.clock = time.monotonic  # how long a round took (tests step it)
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_client(cls, client: SlurmClient) -> JobPoller:
        """The poller of `client`'s connection settings in the running event loop (made on first use)."""
        key = client.state.config.fingerprint
        pollers = cls._pollers.setdefault(asyncio.get_running_loop(), {})
        poller = pollers.get(key)
        if poller is None:
            poller = pollers[key] = cls(client, key)
        return poller

    @asynccontextmanager
    async def subscribe(self, job_watch: JobWatch) -> AsyncIterator[asyncio.Queue[Observation]]:
        """Receive observations of the watched job until the block is left (event, cancel, shutdown)."""
        subscriber = Subscriber(job_watch)
        self.subscribers.add(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"maxwell-poller-{job_watch.spec.user}")
        try:
            yield subscriber.inbox
        finally:
            self.subscribers.discard(subscriber)
            if not self.subscribers:
                self._stop()

    def _stop(self) -> None:
        """The last one out stops the poller and forgets it; the next trigger starts a fresh one."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        pollers = self._pollers.get(asyncio.get_running_loop(), {})
        if pollers.get(self.key) is self:
            del pollers[self.key]

    def interval(self) -> float:
        """The pause between rounds before jitter and backoff: the smallest poll interval asked for."""
        return min((s.spec.poll_interval for s in self.subscribers), default=30.0)

    async def _loop(self) -> None:
        while self.subscribers:
            pause_at_least = 0.0
            began = self.clock()
            try:
                await self._round(list(self.subscribers))
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # every failure goes to the waiting triggers
                self.failures += 1
                for subscriber in list(self.subscribers):
                    subscriber.inbox.put_nowait(Observation(error=error))
                if isinstance(error, SlurmTransientError) and error.retry_after:
                    pause_at_least = error.retry_after
            self.rounds += 1
            # The interval runs from one round's start to the next: a long round (thousands of waits, a
            # wave of ended jobs read from accounting) must not push every later event back by its length.
            # The server still gets its rest (ServerTimeBudget) and its Retry-After, whatever the round took.
            took = self.clock() - began
            rest = self.server_time.rest_after(self.listing_seconds, self.clock())
            await asyncio.sleep(max(self.pause(pause_at_least) - took, rest, pause_at_least))

    def pause(self, at_least: float = 0.0) -> float:
        """Seconds from one round's start to the next's: the interval with jitter, longer after failures,
        never shorter than a server's Retry-After. (The server's rest after a slow round is added by
        the loop: ServerTimeBudget.)"""
        base = max(backed_off(self.interval(), self.failures), at_least)
        return max(base * random.uniform(1 - JITTER, 1 + JITTER), at_least)

    async def _round(self, subscribers: list[Subscriber]) -> None:
        """One round, and the server's time it took (`listing_seconds`, failed requests included)."""
        server_seconds = self.client.state.server_seconds
        poll_round = PollRound(self.client.ops, self.poll_state, subscribers, time.time())
        try:
            await self.client.arun(poll_round.run())
        finally:
            self.listing_seconds = self.client.state.server_seconds - server_seconds
            # A round that failed half way still hands over what it learnt before failing; the loop
            # then tells every trigger of the failure.
            for subscriber, seen in poll_round.deliveries:
                subscriber.inbox.put_nowait(seen)
