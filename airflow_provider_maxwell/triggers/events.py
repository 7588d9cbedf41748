"""MaxwellJobEventTrigger: an event trigger for Airflow's asset watchers that fires once for each Slurm
job that ends and matches its filter, wherever the job was submitted (Airflow, `sbatch`, a beamline's
scripts). What fires and how far it has got is job_events.py's protocol; this module reads accounting's
windows through the hook's client, keeps the cursor where Airflow keeps event triggers' state, and
fires."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_maxwell.exceptions import MaxwellConfigError, MaxwellError, SlurmTransientError
from airflow_provider_maxwell.job_events import (
    Cursor,
    EndedWindow,
    JobFilter,
    covers,
    next_since,
    read_window,
    step,
)
from airflow_provider_maxwell.outcome import summarize
from airflow_provider_maxwell.triggers.poller import JITTER, MAX_BACKOFF, backed_off

if TYPE_CHECKING:
    from airflow_provider_maxwell.client.drivers import SlurmClient
    from airflow_provider_maxwell.slurm.job import SlurmJob

CURSOR_KEY = "maxwell_job_events"  # the asset state store's key, followed by the filter's digest


class MaxwellJobEventTrigger(BaseEventTrigger):
    """Fires once for each Slurm job that ends and matches the filter; the event's payload is the job's
    summary, with the keys of the operator's ``slurm_job`` XCom (job_id, name, user, state, exit_code,
    nodes, start, end, elapsed, output, usage where measured). Use it in an ``AssetWatcher``; the
    triggered DAG reads it from ``triggering_asset_events`` (``event.extra["payload"]``).

    :param maxwell_conn_id: an Airflow connection of type ``maxwell``.
    :param name: a glob on the job name (``"beamtime.*"``; case-sensitive); None: any name.
    :param users: the Slurm users whose jobs are watched (the connection's token must be allowed to
        read their accounting); None: the connection's login.
    :param account: only jobs charged to this Slurm account; None: any.
    :param partition: only jobs that ran in this partition; None: any.
    :param states: the end states that fire (``["COMPLETED"]``); None: every end state.
    :param poll_interval: seconds between reads of accounting's window of ended jobs.
    :param look_back: on the very first start, also fire for jobs that ended this many seconds
        before it (default 0: no history is replayed).

    How far it has got is a cursor (the earliest end second still to fire, and the ids fired since):
    on Airflow 3.3 it is kept in the watched asset's ``asset_state_store``, under a key naming this
    filter, after each event, so a restarted triggerer, or another taking over, carries on where it
    stopped: jobs that ended meanwhile fire then, none twice. Airflow 3.1 and 3.2 give event triggers
    no store: the cursor lives in the triggerer's memory, and a restart starts afresh (``look_back``
    then says how far back it reaches). The cursor is saved as soon as the triggerer has taken an
    event, also when it stops the trigger right after; a triggerer killed outright between taking an
    event and storing it may lose it (Airflow acknowledges event triggers' events only in ack mode,
    which is made for a broker's shared offset, not for each watcher's own cursor).

    On Airflow 3.3 every watcher of one connection and one set of users shares one read per round
    (a shared stream keyed by the connection id and the users); each applies its own filter and
    cursor. The shared read runs at the poll interval of the watcher that opened it. On 3.1 and 3.2
    each watcher reads on its own. A trigger used by two assets (identical arguments) keeps its
    cursor in memory only: Airflow's store then names no single asset.

    Its kwargs are stored in plain text in Airflow's database: the connection id and the filter,
    never a token; credentials are fetched inside the triggerer.
    """

    def __init__(
        self,
        *,
        maxwell_conn_id: str,
        name: str | None = None,
        users: Sequence[str] | str | None = None,
        account: str | None = None,
        partition: str | None = None,
        states: Sequence[str] | str | None = None,
        poll_interval: float = 30.0,
        look_back: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(maxwell_conn_id, str) or not maxwell_conn_id:
            raise MaxwellConfigError(f"maxwell_conn_id must name an Airflow connection, not {maxwell_conn_id!r}")
        self.maxwell_conn_id = maxwell_conn_id
        self.job_filter = JobFilter.of(name=name, users=users, account=account, partition=partition, states=states)
        self.poll_interval = _seconds("poll_interval", poll_interval, least=0.1)
        self.look_back = _seconds("look_back", look_back, least=0.0)
        self._every_state = states is None
        self._cursor: Cursor | None = None
        self._store_refused = False  # the asset state store names no single asset: memory only

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and kwargs, as stored (in plain text) in Airflow's database: no secrets."""
        f = self.job_filter
        return (
            "airflow_provider_maxwell.triggers.events.MaxwellJobEventTrigger",
            {
                "maxwell_conn_id": self.maxwell_conn_id,
                "name": f.name,
                "users": list(f.users) or None,
                "account": f.account,
                "partition": f.partition,
                "states": None if self._every_state else sorted(f.states),
                "poll_interval": self.poll_interval,
                "look_back": self.look_back,
            },
        )

    # ------------------------------------------------------------------ shared stream (Airflow 3.3)

    def shared_stream_key(self) -> Hashable:
        """Watchers of one connection and one set of users share one read per round (configuration only)."""
        return ("maxwell-ended-jobs", self.maxwell_conn_id, self.job_filter.users)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[EndedWindow]:
        """Accounting's window of ended jobs, once per round for every watcher of the stream, each window
        beginning where the last one's reach-back does; forever (read errors are waited out)."""
        reader = cls(**kwargs)
        client = await reader.client()
        position = {"since": float(next_since(time.time()))}
        async for window in reader.windows(client, lambda: position["since"]):
            position["since"] = float(next_since(window.read_at))
            yield window

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """This watcher's events from the shared windows; a window that does not reach back to its cursor
        (resumed from before the stream began) is replaced by one read from the cursor, once."""
        client = await self.client()
        await self.load_cursor()
        async for shared in shared_stream:
            window = shared
            if not covers(shared, self.cursor):
                since = self.cursor.since
                try:
                    window = await client.arun(read_window(client.ops, since, time.time(), self.job_filter.users))
                except MaxwellConfigError:
                    raise
                except MaxwellError as error:  # the next shared window does not cover it either: read then
                    self.log.warning("Could not read the Slurm jobs that ended since %s: %s", since, error)
                    continue
            async with aclosing(self.fire(window)) as events:  # a close reaches fire(): it saves the cursor
                async for event in events:
                    yield event

    # ------------------------------------------------------------------ its own poll (Airflow 3.1, 3.2)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Read the window from the cursor each round and fire; forever."""
        client = await self.client()
        await self.load_cursor()
        async for window in self.windows(client, lambda: float(self.cursor.since)):
            async with aclosing(self.fire(window)) as events:  # a close reaches fire(): it saves the cursor
                async for event in events:
                    yield event

    # ------------------------------------------------------------------ the parts

    async def client(self) -> SlurmClient:
        """The hook's client: the connection looked up once for all triggers of this loop starting together."""
        from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

        return await MaxwellHook(self.maxwell_conn_id).aclient()

    async def windows(self, client: SlurmClient, since: Callable[[], float]) -> AsyncIterator[EndedWindow]:
        """A window each round from `since()`; a failed read is logged and retried after a backoff (the
        next window covers the missed time). A wrong connection is raised: no retry mends it."""
        failures = 0
        while True:
            began = time.monotonic()
            pause_at_least = 0.0
            try:
                window = await client.arun(read_window(client.ops, since(), time.time(), self.job_filter.users))
            except MaxwellConfigError:
                raise
            except MaxwellError as error:
                failures += 1
                if isinstance(error, SlurmTransientError) and error.retry_after:
                    pause_at_least = error.retry_after
                self.log.warning("Could not read the Slurm jobs that ended lately (try %s): %s", failures, error)
            else:
                failures = 0
                yield window
            pause = backed_off(self.poll_interval, failures, longest=max(MAX_BACKOFF, self.poll_interval))
            pause = max(pause * random.uniform(1 - JITTER, 1 + JITTER), pause_at_least)
            await asyncio.sleep(max(pause - (time.monotonic() - began), pause_at_least))

    async def fire(self, window: EndedWindow) -> AsyncGenerator[TriggerEvent, None]:
        """An event for each job of `window` that fires, and the cursor after the window. The cursor is
        saved after each event as soon as the consumer (Airflow's triggerer) has taken it: when it asks
        for the next, or when it closes the generator holding it (a triggerer stopping)."""
        result = step(self.cursor, window, self.job_filter)
        for job in result.fires:
            try:
                yield TriggerEvent(self.payload(job))
            finally:
                await self.save_cursor(self.cursor.with_fired(job))
            self.log.info("Slurm job %s (%s) of %s ended %s: fired", job.job_id, job.name, job.user, job.state.value)
        if result.cursor != self.cursor:
            await self.save_cursor(result.cursor)

    @staticmethod
    def payload(job: SlurmJob) -> dict[str, Any]:
        """The job's summary, as the operator pushes it to XCom as ``slurm_job``."""
        return summarize(job.job_id, [job])

    # ------------------------------------------------------------------ the cursor

    @property
    def cursor(self) -> Cursor:
        """How far this watcher has got (`load_cursor` first)."""
        if self._cursor is None:
            raise RuntimeError("load_cursor() before reading the cursor")
        return self._cursor

    @property
    def cursor_key(self) -> str:
        """The asset state store's key for this filter's cursor: another filter on the same asset, or this
        one changed, keeps a cursor of its own."""
        f = self.job_filter
        named = [self.maxwell_conn_id, list(f.users), f.name, f.account, f.partition, sorted(f.states)]
        return f"{CURSOR_KEY}.{hashlib.sha256(json.dumps(named).encode()).hexdigest()[:16]}"

    async def load_cursor(self) -> Cursor:
        """The saved cursor when Airflow keeps one (3.3's asset state store), else a first one."""
        store = self._store()
        saved = None
        if store is not None:
            try:
                saved = Cursor.from_json(await store.aget(self.cursor_key))
            except ValueError as error:  # the trigger serves several assets: no single one to keep it in
                self._refuse_store(error)
        self._cursor = saved or Cursor.first(time.time(), self.look_back)
        if saved is not None:
            self.log.info("Carrying on from ended jobs at %s on (cursor %s)", saved.since, self.cursor_key)
        return self._cursor

    async def save_cursor(self, cursor: Cursor) -> None:
        """Keep `cursor` (in the asset state store where Airflow gives one)."""
        self._cursor = cursor
        store = self._store()
        if store is None:
            return
        try:
            await store.aset(self.cursor_key, cursor.to_json())
        except ValueError as error:
            self._refuse_store(error)

    def _store(self) -> Any:
        return None if self._store_refused else getattr(self, "asset_state_store", None)

    def _refuse_store(self, error: ValueError) -> None:
        self._store_refused = True
        self.log.warning("The cursor is kept in memory only (a restart starts afresh): %s", error)


def _seconds(name: str, value: object, *, least: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= least:
        raise MaxwellConfigError(f"{name} must be a number of seconds, at least {least:g}, not {value!r}")
    return float(value)
