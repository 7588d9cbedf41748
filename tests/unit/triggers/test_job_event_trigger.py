"""The ended-job event trigger against a fake slurmrestd: its own poll (Airflow 3.1, 3.2), the shared
stream (3.3) fanned out to several watchers, and the cursor kept in a store shaped as Airflow's asset
state store. The same against the real local Maxwell is in tests/cluster/test_job_events.py."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.triggers.events import MaxwellJobEventTrigger
from tests.fake_slurm import META

LISTING = "/slurmdb/v0.0.44/jobs"


class Store:
    """What Airflow 3.3's triggerer gives an event trigger watching one asset (`aget`, `aset`)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values.get(key, default)))

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))  # stored as JSON, as Airflow's database does
        self.writes += 1


def ended_doc(job_id: int, name: str, end: float, state: str = "COMPLETED") -> dict[str, Any]:
    return {
        "job_id": job_id,
        "name": name,
        "user": "alice",
        "account": "p11",
        "partition": "maxcpu",
        "state": {"current": [state], "reason": "None"},
        "exit_code": {"status": ["SUCCESS"], "return_code": 0},
        "time": {"submission": int(end) - 60, "start": int(end) - 50, "end": int(end)},
        "working_directory": "/beamline/p11",
        "stdout": "/beamline/p11/%x-%j.out",
    }


def listing(*docs: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    return (200, {}, {**META, "jobs": list(docs)})


def watcher(conn_id: str, **filters: Any) -> MaxwellJobEventTrigger:
    return MaxwellJobEventTrigger(maxwell_conn_id=conn_id, poll_interval=0.2, **filters)


async def collect(events: Any, count: int, within: float = 5.0) -> list[dict[str, Any]]:
    """The payloads of the first `count` events, then whatever else comes within half a second (none should)."""
    got: list[dict[str, Any]] = []

    async def take() -> None:
        async for event in events:
            got.append(event.payload)

    task = asyncio.create_task(take())
    deadline = time.monotonic() + within
    while len(got) < count and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return got


def test_each_matching_job_fires_once_in_end_order_with_the_operators_summary(fake):
    now = time.time()
    early = [ended_doc(11, "beamtime.scan", now + 2), ended_doc(12, "calibration", now + 2)]
    # Accounting writes job 13's end (before job 11's) a round late, and keeps listing the others.
    later = [*early, ended_doc(13, "beamtime.merge", now + 1), ended_doc(14, "beamtime.x", now + 3, "FAILED")]
    history = ended_doc(10, "beamtime.old", now - 3600)  # ended before the watcher started: not replayed
    fake.script[LISTING] = [listing(history, *early), listing(history, *early), listing(history, *later)]
    trigger = watcher(fake.conn_id, name="beamtime.*", states=["COMPLETED"])
    trigger.asset_state_store = store = Store()

    events = asyncio.run(collect(trigger.run(), 2))

    assert [e["job_id"] for e in events] == [11, 13]
    first = events[0]
    assert (first["name"], first["user"]) == ("beamtime.scan", "alice")
    assert (first["state"], first["exit_code"]) == ("COMPLETED", 0)
    assert first["output"] == "/beamline/p11/beamtime.scan-11.out"
    assert {"nodes", "start", "end", "elapsed"} <= set(first)
    saved = store.values[trigger.cursor_key]
    assert set(saved["fired"]) == {"11", "13"}, "the cursor is kept after the events, in the asset's store"
    assert fake.count("GET", LISTING) >= 3


def test_a_restarted_watcher_resumes_from_its_saved_cursor_firing_what_ended_meanwhile_and_nothing_again(fake):
    now = int(time.time())  # whole seconds, as accounting's: the ends below are after the first start's second
    before = [ended_doc(21, "beamtime.a", now + 1)]
    fake.script[LISTING] = [listing(*before)]
    store = Store()
    first = watcher(fake.conn_id, name="beamtime.*")
    first.asset_state_store = store
    assert [e["job_id"] for e in asyncio.run(collect(first.run(), 1))] == [21]

    # No triggerer runs for a while: job 22 ends then. A new triggerer's watcher (a fresh instance, no
    # look-back) reads from the saved cursor: 22 fires, 21 does not again.
    fake.script[LISTING] = [listing(*before, ended_doc(22, "beamtime.b", now + 2))]
    second = watcher(fake.conn_id, name="beamtime.*")
    second.asset_state_store = store
    assert [e["job_id"] for e in asyncio.run(collect(second.run(), 1))] == [22]

    # Without a store (Airflow 3.1, 3.2) a fresh watcher starts afresh: what ended before it is history.
    time.sleep(max(now + 3 - time.time(), 0))
    third = watcher(fake.conn_id, name="beamtime.*")
    assert asyncio.run(collect(third.run(), 1, within=1.0)) == []


def test_watchers_sharing_a_stream_cost_one_read_per_round_and_each_fires_for_its_own_filter(fake):
    now = time.time()
    fake.script[LISTING] = [
        listing(ended_doc(31, "beamtime.a", now + 1), ended_doc(32, "calib.a", now + 1), ended_doc(33, "x", now + 2))
    ]
    beamtime = watcher(fake.conn_id, name="beamtime.*")
    calibration = watcher(fake.conn_id, name="calib.*")
    every = watcher(fake.conn_id)
    assert beamtime.shared_stream_key() == calibration.shared_stream_key() == every.shared_stream_key()
    assert watcher(fake.conn_id, users=["bob"]).shared_stream_key() != every.shared_stream_key()

    async def main() -> list[list[dict[str, Any]]]:
        # What the triggerer does for a group: one stream, each window handed to every watcher's filter.
        queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(3)]

        async def broadcast() -> None:
            async for window in MaxwellJobEventTrigger.open_shared_stream(beamtime.serialize()[1]):
                for queue in queues:
                    queue.put_nowait(window)

        async def lane(queue: asyncio.Queue[Any]) -> Any:
            while True:
                yield await queue.get()

        pump = asyncio.create_task(broadcast())
        watchers = (beamtime, calibration, every)
        got = await asyncio.gather(
            *(collect(w.filter_shared_stream(lane(q)), 1) for w, q in zip(watchers, queues, strict=True))
        )
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        return got

    started = time.monotonic()
    got = asyncio.run(main())
    rounds = (time.monotonic() - started) / 0.2
    assert [[e["job_id"] for e in events] for events in got] == [[31], [32], [31, 32, 33]]
    assert fake.count("GET", LISTING) <= rounds + 2, "one read per round for three watchers"


def test_a_watcher_resumed_behind_the_shared_stream_reads_its_gap_once(fake):
    now = time.time()
    fake.script[LISTING] = [listing(ended_doc(41, "beamtime.a", now - 600))]
    store = Store()
    resumed = watcher(fake.conn_id, name="beamtime.*")
    resumed.asset_state_store = store
    store.values[resumed.cursor_key] = {"since": int(now - 900), "fired": {}}

    async def main() -> list[dict[str, Any]]:
        stream = MaxwellJobEventTrigger.open_shared_stream(resumed.serialize()[1])
        return await collect(resumed.filter_shared_stream(stream), 1, within=2.0)

    assert [e["job_id"] for e in asyncio.run(main())] == [41]


def test_kwargs_hold_the_filter_and_no_secret_and_wrong_ones_are_refused_naming_the_field(fake):
    classpath, kwargs = watcher(fake.conn_id, name="beamtime.*", users="alice", states=["completed"]).serialize()
    again = MaxwellJobEventTrigger(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["states"] == ["COMPLETED"] and kwargs["users"] == ["alice"]
    assert set(kwargs) == {
        "maxwell_conn_id", "name", "users", "account", "partition", "states", "poll_interval", "look_back"
    }  # fmt: skip
    for wrong, field in (
        ({"poll_interval": 0}, "poll_interval"),
        ({"look_back": -1}, "look_back"),
        ({"states": ["PENDING"]}, "states"),
        ({"maxwell_conn_id": ""}, "maxwell_conn_id"),
    ):
        with pytest.raises(MaxwellConfigError, match=field):
            MaxwellJobEventTrigger(**{**kwargs, **wrong})


def test_a_failed_read_of_a_resumed_watchers_gap_is_tried_again_with_the_next_shared_window(fake):
    now = time.time()
    refused = (400, {}, {**META, "errors": [{"error_number": 9000, "error": "Query empty"}]})
    answer = listing(ended_doc(51, "beamtime.a", now - 600))
    fake.script[LISTING] = [answer, refused, answer]  # the stream's read, the gap's (refused), then all answered
    store = Store()
    resumed = watcher(fake.conn_id, name="beamtime.*")
    resumed.asset_state_store = store
    store.values[resumed.cursor_key] = {"since": int(now - 900), "fired": {}}

    async def main() -> list[dict[str, Any]]:
        stream = MaxwellJobEventTrigger.open_shared_stream(resumed.serialize()[1])
        return await collect(resumed.filter_shared_stream(stream), 1, within=3.0)

    assert [e["job_id"] for e in asyncio.run(main())] == [51]
