"""One poller per connection in a triggerer's event loop, shared by every trigger waiting on that
connection's jobs.

Polling each job on its own costs slurmrestd and slurmdbd N requests per interval; HPC admins cut
off clients that do that. A round (`JobPoller._round`) costs what the waited jobs need, not what the
user's history holds (docs/waiting-at-scale.md):

- slurmctld's jobs/state for the waited ids (v0.0.42 on; ~230 bytes per job or task): is anything
  new? Plain ids share one request (~375 ids); more plain waits take turns, and their ends come from
  one accounting window a round (the user's jobs that ended since the last window). An array is
  asked on its own (its tasks carry ids of their own).
- accounting by id (`step=`, no time window) only for jobs that ended (an array: once none of its
  tasks lives), that slurmctld no longer holds (purged, or a sensor's old job), a job id given from
  outside (a sensor's: accounting says whose it is), and each job now and then (`REFRESH_AFTER`: a
  reused id in the same state).
  A state slurmctld reports changed (started, requeued) goes to the trigger as its progress.
  Releases without jobs/state (v0.0.38 to v0.0.41), or a proxy that blocks it, ask accounting by id
  for every waited job each round.

Each trigger gets the accounting records of its own job. Jobs accounting does not show yet (it lags
a submission by seconds; held jobs are never in it) are looked up one by one, at most
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
from airflow_provider_maxwell.exceptions import SlurmAccountingUnavailable, SlurmTransientError
from airflow_provider_maxwell.slurm.job import JobStatus, SlurmJob
from airflow_provider_maxwell.watch import JobWatch, Observation, WatchSpec, observe

LOOKUPS_PER_ROUND = 10  # one-by-one lookups of jobs accounting did not show, per round
EXIT_CODE_LOOKUPS = 20  # 22.05: ended jobs read from slurmctld per round (its accounting loses exit codes)
REFRESH_AFTER = 600.0  # seconds (+-50 %, spread): a quiet job is read from accounting at least this often
MAX_BACKOFF = 300.0  # seconds: the longest pause after repeated failures
JITTER = 0.1  # +-10 % on every pause, so triggerers started together do not poll in lockstep
STATE_REQUESTS = 1  # jobs/state requests for plain waits per round (~375 ids each); more waits take turns
ENDS_OVERLAP = 3.0  # seconds each window of ended jobs reaches back over the last (accounting writes ends late)
ENDS_AHEAD = 60.0  # seconds past our clock a window reaches: Slurm's clock may be ahead of ours
ARRAY_STATE_REQUESTS = 8  # array waits asked of jobs/state per round, a request each; the others read accounting
BUSY_RATIO = 5  # the server rests 5x its answer time: this poller takes at most 1/6 of its time on average
SERVER_BURST = 30.0  # seconds of server time saved up while quiet, for a round that must ask much (a wave of ends)

#: What slurmctld's jobs/state said of one job: its entries in a fixed order (compared round to round).
Said = tuple[JobStatus, ...]


@dataclass(eq=False)
class Subscriber:
    """One waiting trigger: its JobWatch, its mailbox, and when it was last looked up on its own."""

    watch: JobWatch
    inbox: asyncio.Queue[Observation] = field(default_factory=asyncio.Queue)
    registered_at: float = field(default_factory=time.time)
    looked_up_at: float = 0.0
    last_said: Said = ()  # what slurmctld's jobs/state said of the job when last asked
    states_asked_at: float = 0.0  # when jobs/state last answered about it (waits taking turns, arrays)
    refresh_at: float = 0.0  # when accounting is asked even if slurmctld says nothing changed (0: first round)

    @property
    def spec(self) -> WatchSpec:
        """What the trigger waits for (its JobWatch's spec)."""
        return self.watch.spec


@dataclass
class ServerTimeBudget:
    """This poller's share of the server's time (slurmctld's and slurmdbd's answers), as a bucket: it
    fills with 1/(BUSY_RATIO + 1) of the wall-clock time, up to `burst` seconds, and each round's
    server time is taken out. A round may overdraw it (a wave of 2,000 ended jobs is seconds of
    slurmdbd's time, and must be read); the next round then waits until it is back at zero. A server
    slow round after round so rests 5x its answer time after each, as before; one slow round after
    quiet ones no longer delays the events of the next interval."""

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


class JobPoller:
    """Fetches, once per interval, the accounting records of every job its subscribers wait for."""

    _pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, JobPoller]] = weakref.WeakKeyDictionary()

    def __init__(self, client: SlurmClient, key: str) -> None:
        self.client = client
        self.key = key
        self.subscribers: set[Subscriber] = set()
        self.rounds = 0
        self.failures = 0  # consecutive failed rounds, for the backoff
        self.listing_seconds = 0.0  # how long the server took to answer the last round's requests
        self.server_time = ServerTimeBudget()
        self.statuses_unavailable = False  # no jobs/state (older release, or a proxy blocks it): accounting only
        self.taking_turns = False  # more plain waits than STATE_REQUESTS can name: they take turns on jobs/state
        self.ends_asked_at: float | None = None  # when accounting was last asked which jobs ended (taking turns)
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
        base = self.interval()
        if self.failures:
            base = min(base * 2 ** min(self.failures, 10), MAX_BACKOFF)
        base = max(base, at_least)
        return max(base * random.uniform(1 - JITTER, 1 + JITTER), at_least)

    async def _round(self, subscribers: list[Subscriber]) -> None:
        """One round, and the server's time it took (`listing_seconds`, failed requests included)."""
        server_seconds = self.client.state.server_seconds
        try:
            await self._ask(subscribers)
        finally:
            self.listing_seconds = self.client.state.server_seconds - server_seconds

    async def _ask(self, subscribers: list[Subscriber]) -> None:
        """slurmctld's state of the waited jobs (some of them, when they take turns), the window of ended
        jobs while they do, accounting by id for those that need it, then a few one-by-one lookups of
        jobs accounting did not show."""
        client, ops = self.client, self.client.ops
        now = time.time()
        said = await self._controller_states(subscribers, now)
        ended = await self._ended_lately(now) if self.taking_turns else {}
        due: list[Subscriber] = []
        for subscriber in subscribers:
            subscriber.refresh_at = subscriber.refresh_at or _refresh_time(now)
            entries = said.get(subscriber) if said is not None else None
            seen_ending = [r for r in ended.get(subscriber.spec.job_id, ()) if subscriber.spec.belongs(r)]
            if seen_ending and subscriber.spec.expected_tasks <= 1:  # the window saw it end, its turn or not
                said_now = _as_jobs(subscriber, entries or ()) or None
                subscriber.inbox.put_nowait(Observation(live=said_now, final=seen_ending))
                subscriber.refresh_at = _refresh_time(now)
            elif entries is None and said is not None and subscriber.spec.expected_tasks <= 1:
                if not subscriber.states_asked_at or _alive(subscriber.last_said):
                    continue  # not its turn on jobs/state this round; its end comes from the window
                due.append(subscriber)  # ended or gone on its last turn: accounting by id until it answers
            elif entries is None or _needs_accounting(subscriber, entries, now):
                due.append(subscriber)
            elif entries != subscriber.last_said:  # started, requeued, suspended: progress, from slurmctld
                subscriber.inbox.put_nowait(Observation(live=_as_jobs(subscriber, entries)))
            subscriber.last_said = entries if entries is not None else subscriber.last_said
        records = await client.arun(ops.accounting_by_id([s.spec.job_id for s in due])) if due else []
        by_job = _by_job(records)
        reliable_exit_codes = (await client.arun(ops.dialect())).accounting_exit_code_reliable
        exit_code_reads = 0
        unlisted = []
        for subscriber in due:
            job_id = subscriber.spec.job_id
            final = by_job.get(job_id)
            if final is None:
                unlisted.append(subscriber)  # accounting lags a submission by seconds; held jobs are not in it
                continue
            # slurmctld's current word too: accounting may lag behind it, and progress lines show the newer.
            live = _as_jobs(subscriber, (said or {}).get(subscriber, ())) or None
            if not reliable_exit_codes and all(j.is_terminal for j in final):
                # 22.05's accounting loses exit codes; slurmctld still has them for MinJobAge (300 s by
                # default): read each ended job there, a bounded number per round, the rest next round.
                if exit_code_reads >= EXIT_CODE_LOOKUPS:
                    continue
                exit_code_reads += 1
                try:
                    live = await client.arun(ops.controller_jobs(job_id))
                except asyncio.CancelledError:
                    raise
                except SlurmTransientError:
                    continue  # next round
                except Exception:  # the job's end is known; only its exit code stays unknown
                    live = None
            subscriber.inbox.put_nowait(Observation(live=live, final=final))
            subscriber.refresh_at = _refresh_time(now)
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
        for subscriber in said or ():
            subscriber.states_asked_at = now  # only now: a round that failed leaves these their turn

    async def _controller_states(self, subscribers: list[Subscriber], now: float) -> dict[Subscriber, Said] | None:
        """What slurmctld's jobs/state says of each waited job it was asked about this round ((): it
        holds none of it), or None where jobs/state is unavailable. Plain ids go in `STATE_REQUESTS`
        requests, the least recently asked first (more waits take turns: `taking_turns`); each array
        on its own, at most `ARRAY_STATE_REQUESTS` a round (the others read accounting, as before):
        jobs/state names a task by its own id, not its array's, so only an array asked alone can be
        told apart."""
        if self.statuses_unavailable:
            return None
        client, ops = self.client, self.client.ops
        plain = sorted((s for s in subscribers if s.spec.expected_tasks <= 1), key=lambda s: s.states_asked_at)
        arrays = sorted((s for s in subscribers if s.spec.expected_tasks > 1), key=lambda s: s.states_asked_at)
        fits = (await client.arun(ops.dialect())).job_ids_within([s.spec.job_id for s in plain], STATE_REQUESTS)
        said: dict[Subscriber, Said] = {}
        if plain:
            statuses = await client.arun(ops.job_statuses([s.spec.job_id for s in plain[:fits]]))
            if statuses is None:
                self._give_up_states()
                return None
            by_job = _said_by_job(statuses)
            said.update((s, by_job.get(s.spec.job_id, ())) for s in plain[:fits])
        for subscriber in arrays[:ARRAY_STATE_REQUESTS]:
            statuses = await client.arun(ops.job_statuses([subscriber.spec.job_id]))
            if statuses is None:
                self._give_up_states()
                return None
            said[subscriber] = _in_order(statuses)
        self.taking_turns = fits < len(plain)
        if not self.taking_turns:
            # jobs/state has just named every plain wait: a window opened later need reach back only to here.
            self.ends_asked_at = now
        return said

    def _give_up_states(self) -> None:
        """jobs/state is unavailable (older release, or a proxy blocks it): accounting by id for every
        wait from now on, no turns, no windows."""
        self.statuses_unavailable, self.taking_turns = True, False

    async def _ended_lately(self, now: float) -> dict[int, list[SlurmJob]]:
        """Accounting's records of the user's jobs (not array tasks) that ended since the last window
        (or the last round that named every wait), reaching `ENDS_OVERLAP` back over it: accounting
        writes an end a moment after it happened. While slurmdbd is unavailable, none: the next window
        covers this one's time, and jobs still running are not failed for an outage (a job that ended
        meanwhile is asked of accounting by id, whose error its trigger waits out)."""
        since = (self.ends_asked_at if self.ends_asked_at is not None else now) - ENDS_OVERLAP
        try:
            records = await self.client.arun(self.client.ops.accounting_ended(since, now + ENDS_AHEAD))
        except SlurmAccountingUnavailable:
            return {}
        self.ends_asked_at = now
        ended: dict[int, list[SlurmJob]] = {}
        for record in records:
            if record.array_task_id is None:
                ended.setdefault(record.job_id, []).append(record)
        return ended


def _said_by_job(statuses: list[JobStatus]) -> dict[int, Said]:
    """jobs/state's entries under each job's own id, in a comparable order."""
    said: dict[int, list[JobStatus]] = {}
    for status in statuses:
        said.setdefault(status.job_id, []).append(status)
    return {job_id: _in_order(entries) for job_id, entries in said.items()}


def _in_order(statuses: list[JobStatus]) -> Said:
    """Entries in a fixed order (by task index, then own id), so that rounds compare equal when nothing changed."""
    return tuple(sorted(statuses, key=lambda e: (e.array_task_id or 0, e.job_id)))


def _as_jobs(subscriber: Subscriber, said: Said) -> list[SlurmJob]:
    """slurmctld's entries as job records for the trigger's progress: an array's under the array's id."""
    array_job_id = subscriber.spec.job_id if subscriber.spec.expected_tasks > 1 else None
    return [entry.as_job(array_job_id) for entry in said]


def _ended_or_ending(entry: JobStatus) -> bool:
    """Ended, or ending (COMPLETING while its epilog runs): accounting has or soon has its final record."""
    return entry.state.is_terminal or "COMPLETING" in entry.flags


def _alive(said: Said) -> bool:
    """slurmctld's word shows the job living (not ended, not ending): nothing to ask accounting yet."""
    return bool(said) and not any(_ended_or_ending(e) for e in said)


def _needs_accounting(subscriber: Subscriber, said: Said, now: float) -> bool:
    """Whether this round asks accounting about the job: not while slurmctld says it still lives (its
    state changes come from slurmctld), unless it is due a refresh."""
    if not said:
        return True  # slurmctld does not hold it (purged, ended long ago, or never ours): accounting knows
    ended = [e for e in said if _ended_or_ending(e)]
    if subscriber.spec.expected_tasks > 1 and len(ended) == len(said):
        return True  # every task slurmctld still holds has ended (the others it purged): the array's end
    if subscriber.spec.expected_tasks <= 1 and ended:
        return True
    if subscriber.spec.submitted_after is None and not subscriber.last_said:
        return True  # an id given from outside (a sensor's), first seen: accounting says whose job it is
    return now >= subscriber.refresh_at


def _refresh_time(now: float) -> float:
    """When a quiet job is next read from accounting: spread, so waits started together do not refresh together."""
    return now + REFRESH_AFTER * random.uniform(0.5, 1.5)


def _by_job(records: list[SlurmJob]) -> dict[int, list[SlurmJob]]:
    """Records under each id a trigger may wait on: a job's own, and an array's for each of its tasks."""
    by_job: dict[int, list[SlurmJob]] = {}
    for record in records:
        by_job.setdefault(record.job_id, []).append(record)
        if record.array_job_id is not None and record.array_job_id != record.job_id:
            by_job.setdefault(record.array_job_id, []).append(record)
    return by_job
