"""The triggerer's shared poller against a fake slurmrestd, for what the real daemons cannot be made to
do on cue: a listing that leaves jobs out, an outage with Retry-After. The same behaviour against
the real local Maxwell is in tests/cluster/test_shared_poller_cluster.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_maxwell import poll_round
from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
from airflow_provider_maxwell.triggers.poller import JobPoller
from airflow_provider_maxwell.watch import WatchSpec
from tests.fake_slurm import META

LISTING = "/slurmdb/v0.0.44/jobs"


def accounting_doc(job_id: int, state: str, exit_code: int = 0) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "name": f"job{job_id}",
        "user": "alice",
        "partition": "p",
        "state": {"current": [state], "reason": "None"},
        "exit_code": {"status": ["SUCCESS" if exit_code == 0 else "FAILED"], "return_code": exit_code},
        "time": {"submission": 1_700_000_000, "start": 1_700_000_001, "end": 1_700_000_009},
    }


def listing(*docs: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    return (200, {}, {**META, "jobs": list(docs)})


def trigger(conn_id: str, job_id: int, **spec: Any) -> MaxwellJobTrigger:
    values = {"job_id": job_id, "user": "alice", "submitted_after": 1_700_000_000, "poll_interval": 0.2, **spec}
    return MaxwellJobTrigger(maxwell_conn_id=conn_id, spec=WatchSpec(**values).to_kwargs())


async def first_event(t: MaxwellJobTrigger) -> dict[str, Any]:
    async for event in t.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


def test_one_listing_per_round_serves_every_trigger_its_own_outcome(fake):
    running = [accounting_doc(j, "RUNNING") for j in (7, 8, 9)]
    ended = [accounting_doc(7, "COMPLETED"), accounting_doc(8, "COMPLETED"), accounting_doc(9, "FAILED", 3)]
    fake.script[LISTING] = [listing(*running), listing(*running), listing(*ended)]

    async def main() -> list[dict[str, Any]]:
        events = await asyncio.gather(*(first_event(trigger(fake.conn_id, j)) for j in (7, 8, 9)))
        assert not JobPoller._pollers.get(asyncio.get_running_loop()), "the last trigger out stops the poller"
        return events

    events = asyncio.run(main())
    assert [(e["job_id"], e["status"]) for e in events] == [(7, "success"), (8, "success"), (9, "failed")]
    assert "exit code 3" in events[2]["message"]
    assert fake.count("GET", LISTING) == 3  # three rounds for three jobs, not nine requests
    assert not [p for _, p, _ in fake.hits if p.startswith("/slurm/v0.0.44/job/")]  # no per-job polling


def test_jobs_the_listing_misses_are_looked_up_a_bounded_number_per_round(fake, monkeypatch):
    monkeypatch.setattr(poll_round, "LOOKUPS_PER_ROUND", 2)
    fake.script[LISTING] = [listing()]  # accounting lists none of them (lag, or ended long ago)
    for job_id in range(10, 15):
        fake.script[f"/slurm/v0.0.44/job/{job_id}"] = [(404, {}, {**META, "errors": [{"error_number": 2017}]})]
        # A job's own record lists its steps (what it used), unlike the listing: no second read for usage.
        batch = {"step": {"name": "batch"}, "time": {"end": 1_700_000_009}}
        fake.script[f"/slurmdb/v0.0.44/job/{job_id}"] = [
            listing({**accounting_doc(job_id, "COMPLETED"), "steps": [batch]})
        ]

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(first_event(trigger(fake.conn_id, j)) for j in range(10, 15)))

    events = asyncio.run(main())
    assert all(e["status"] == "success" for e in events)
    assert fake.count("GET", LISTING) == 3  # 5 unlisted jobs, 2 lookups per round: 3 rounds
    for job_id in range(10, 15):
        assert fake.count("GET", f"/slurmdb/v0.0.44/job/{job_id}") == 1


def test_a_cancelled_trigger_leaves_the_others_waiting_and_the_last_stops_the_poller(fake):
    fake.script[LISTING] = [listing(accounting_doc(7, "RUNNING"), accounting_doc(8, "RUNNING"))] * 4 + [
        listing(accounting_doc(7, "RUNNING"), accounting_doc(8, "COMPLETED"))
    ]

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        doomed = asyncio.create_task(first_event(trigger(fake.conn_id, 7)))
        survivor = asyncio.create_task(first_event(trigger(fake.conn_id, 8)))
        # Both subscribed (after their token and version): waited for, not guessed (a loaded machine is slow).
        for _ in range(200):
            pollers = list(JobPoller._pollers.get(loop, {}).values())
            if pollers and len(pollers[0].subscribers) == 2:
                break
            await asyncio.sleep(0.05)
        (poller,) = JobPoller._pollers[loop].values()
        assert len(poller.subscribers) == 2
        doomed.cancel()  # the user marked the task failed; the triggerer cancels its trigger
        await asyncio.sleep(0)
        assert len(poller.subscribers) == 1
        event = await survivor
        assert not poller.subscribers and poller._task is None and not JobPoller._pollers[loop]
        return event

    assert asyncio.run(main())["status"] == "success"


def test_an_outage_longer_than_one_rounds_retries_is_waited_out(fake):
    # 5 attempts per request (the hook's retry_limit): 7 refusals fail the first round whole; the
    # trigger keeps waiting ("REST API unreachable, will retry") and the next round succeeds.
    outage = (503, {"Retry-After": "0.1"}, "<html>503 Service Unavailable</html>")
    fake.script[LISTING] = [outage] * 7 + [listing(accounting_doc(7, "COMPLETED"))]

    async def main() -> dict[str, Any]:
        return await first_event(trigger(fake.conn_id, 7))

    assert asyncio.run(main())["status"] == "success"
    assert fake.count("GET", LISTING) == 8


class _NoHook:
    pass


@pytest.mark.parametrize(
    ("failures", "retry_after", "low", "high"),
    [
        (0, 0.0, 27.0, 33.0),  # the interval, +-10 % jitter
        (1, 0.0, 54.0, 66.0),  # doubles after a failed round
        (9, 0.0, 270.0, 330.0),  # capped at 5 minutes
        (0, 120.0, 120.0, 132.0),  # Retry-After: 120 is honoured, never cut by the jitter
    ],
)
def test_pause_between_rounds(failures, retry_after, low, high):
    p = JobPoller(_NoHook(), "k")  # type: ignore[arg-type]
    p.failures = failures
    pauses = [p.pause(retry_after) for _ in range(200)]
    assert low <= min(pauses) and max(pauses) <= high
    assert max(pauses) - min(pauses) > (high - low) / 4  # jittered, not lockstep


def test_triggers_starting_together_look_their_connection_up_once(fake, monkeypatch):
    # In a triggerer each lookup is a round trip through its supervisor to the API server: a
    # thousand triggers of one connection starting together share one. An edit is read later.
    # The clock is in the test's hand: however slowly 1000 hooks start, they start "together".
    import json
    import os

    from airflow.sdk import BaseHook

    from airflow_provider_maxwell.hooks import maxwell as hook_module
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    lookups: list[str] = []
    original = BaseHook.aget_connection
    clock = [1000.0]

    async def counted(conn_id: str) -> Any:
        lookups.append(conn_id)
        await asyncio.sleep(0.05)  # a round trip
        return await original(conn_id)

    monkeypatch.setattr(BaseHook, "aget_connection", staticmethod(counted))
    monkeypatch.setattr(hook_module, "monotonic", lambda: clock[0])
    env = f"AIRFLOW_CONN_{fake.conn_id.upper()}"

    async def start(n: int) -> list[str]:
        clients = await asyncio.gather(*(MaxwellHook(fake.conn_id).aclient() for _ in range(n)))
        return sorted({c.state.config.login for c in clients})

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        first = await start(1000)
        edited = {**json.loads(os.environ[env]), "login": "bob"}
        monkeypatch.setenv(env, json.dumps(edited))
        clock[0] += hook_module.CONNECTION_LOOKUP_REUSE  # at the end of the window: still shared
        within = await start(10)
        clock[0] += 0.1  # past it: the edit is read
        return first, within, await start(10)

    first, within, later = asyncio.run(scenario())
    assert first == ["alice"] and within == ["alice"] and later == ["bob"]
    assert lookups == [fake.conn_id, fake.conn_id]


def test_while_slurmctld_says_the_jobs_run_as_before_rounds_ask_it_alone_and_accounting_when_they_end(fake):
    states = "/slurm/v0.0.44/jobs/state"

    def said(state: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        return (200, {}, {**META, "jobs": [{"job_id": str(j), "state": [state]} for j in (7, 8)]})

    fake.script[states] = [said("RUNNING")] * 5 + [said("COMPLETED")]
    fake.script[LISTING] = [listing(accounting_doc(7, "COMPLETED"), accounting_doc(8, "FAILED", 2))]

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(first_event(trigger(fake.conn_id, j)) for j in (7, 8)))

    events = asyncio.run(main())
    assert [(e["job_id"], e["status"]) for e in events] == [(7, "success"), (8, "failed")]
    assert "exit code 2" in events[1]["message"]
    assert fake.count("GET", states) == 6  # one per round
    assert fake.count("GET", LISTING) == 1  # once they ended: not each round
