"""One poller per connection in a triggerer's event loop, shared by every trigger waiting on that
connection's jobs.

Polling each job on its own costs slurmrestd and slurmdbd N requests per interval; HPC admins cut
off clients that do that. The poller asks accounting once per interval for all waiting jobs of the
connection's user (`JobPoller._round`), then hands each trigger the records of its own job. Each
trigger keeps its own `JobWatch` and yields its own event; the poller only fetches.

Jobs the listing does not show (accounting lags a few seconds behind a submission; a sensor may wait
on a job that ended before the listing's window) are looked up one by one, at most
`LOOKUPS_PER_ROUND` per round, so the cost per interval stays bounded whatever N is.

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
from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.watch import SUBMIT_CLOCK_SLACK, JobWatch, Observation, WatchSpec, observe

LOOKUPS_PER_ROUND = 10  # one-by-one lookups of jobs the listing missed, per round
MAX_BACKOFF = 300.0  # seconds: the longest pause after repeated failures
JITTER = 0.1  # +-10 % on every pause, so triggerers started together do not poll in lockstep
BUSY_RATIO = 5  # pause at least 5x the listing's answer time: a slow server gets fewer requests
UNDATED_WINDOW = 86400.0  # a job without a known submit time: list a day back, else look it up


@dataclass(eq=False)
class Subscriber:
    """One waiting trigger: its JobWatch, its mailbox, and when it was last looked up on its own."""

    watch: JobWatch
    inbox: asyncio.Queue[Observation] = field(default_factory=asyncio.Queue)
    registered_at: float = field(default_factory=time.time)
    looked_up_at: float = 0.0

    @property
    def spec(self) -> WatchSpec:
        """What the trigger waits for (its JobWatch's spec)."""
        return self.watch.spec


class JobPoller:
    """Fetches, once per interval, the accounting records of every job its subscribers wait for."""

    _pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, JobPoller]] = weakref.WeakKeyDictionary()

    def __init__(self, client: SlurmClient, key: str) -> None:
        self.client = client
        self.key = key
        self.subscribers: set[Subscriber] = set()
        self.rounds = 0
        self.failures = 0  # consecutive failed rounds, for the backoff
        self.listing_seconds = 0.0  # how long the server took to answer the last listing
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
            await asyncio.sleep(self.pause(self.listing_seconds, pause_at_least))

    def pause(self, listing_seconds: float, at_least: float = 0.0) -> float:
        """Seconds until the next round: the interval with jitter, longer after failures or when the
        listing was slow to answer, never shorter than a server's Retry-After."""
        base = self.interval()
        if self.failures:
            base = min(base * 2 ** min(self.failures, 10), MAX_BACKOFF)
        base = max(base, BUSY_RATIO * listing_seconds, at_least)
        return max(base * random.uniform(1 - JITTER, 1 + JITTER), at_least)

    async def _round(self, subscribers: list[Subscriber]) -> None:
        """One accounting listing for all, then a few one-by-one lookups of jobs it did not show."""
        client, ops = self.client, self.client.ops
        now = time.time()
        since = (
            min((s.spec.submitted_after or s.registered_at - UNDATED_WINDOW) for s in subscribers) - SUBMIT_CLOCK_SLACK
        )
        records = await client.arun(ops.accounting_listing([s.spec.job_id for s in subscribers], since))
        self.listing_seconds = client.state.last_response_seconds  # the server's time, not our parsing
        by_job = _by_job(records)
        found = {s: by_job[s.spec.job_id] for s in subscribers if s.spec.job_id in by_job}
        live_by_job: dict[int, list[SlurmJob]] = {}
        some_ended = any(all(j.is_terminal for j in jobs) for jobs in found.values())
        if some_ended and not (await client.arun(ops.dialect())).accounting_exit_code_reliable:
            # 22.05's accounting loses exit codes; slurmctld still has them for MinJobAge
            # (300 s by default): one listing of its jobs for all that just ended.
            live_by_job = _by_job(await client.arun(ops.controller_listing()))
        unlisted = []
        for subscriber in subscribers:
            if subscriber in found:
                live = live_by_job.get(subscriber.spec.job_id)
                subscriber.inbox.put_nowait(Observation(live=live, final=found[subscriber]))
            else:
                unlisted.append(subscriber)  # accounting lags a submission by seconds; or an old job
        unlisted.sort(key=lambda s: s.looked_up_at)
        for subscriber in unlisted[:LOOKUPS_PER_ROUND]:
            subscriber.looked_up_at = now
            try:
                seen = await client.arun(observe(ops, subscriber.watch))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # one job's error is that trigger's, not everyone's
                seen = Observation(error=error)
            subscriber.inbox.put_nowait(seen)


def _by_job(records: list[SlurmJob]) -> dict[int, list[SlurmJob]]:
    """Records under each id a trigger may wait on: a job's own, and an array's for each of its tasks."""
    by_job: dict[int, list[SlurmJob]] = {}
    for record in records:
        by_job.setdefault(record.job_id, []).append(record)
        if record.array_job_id is not None and record.array_job_id != record.job_id:
            by_job.setdefault(record.array_job_id, []).append(record)
    return by_job
