"""Resource usage from accounting records, the figures users size their next job by: field by field
from one record (`parse_usage`: which TRES list wins, how GPUs are counted, the units, where CPU time and
peak memory come from when the job's own totals are missing or zero); from every API version's recorded
answers and from measured records (steps with TRES usage, as jobacct_gather/linux writes them); the
summary and right-sizing hints built on them; and the waits that read them, deferred and on the worker."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.efficiency import usage_line, usage_summary, with_measured_usage
from airflow_provider_maxwell.outcome import judge
from airflow_provider_maxwell.slurm.job import parse_accounting_job
from airflow_provider_maxwell.slurm.usage import MIB, JobUsage, parse_usage
from airflow_provider_maxwell.watch import WatchSpec
from tests.paths import DATA

# ---------------------------------------------------------------- one record, field by field


def tres(**counts: Any) -> list[dict[str, Any]]:
    """A TRES list as slurmdbd writes it; `gres_<name>` stands for a gres named <name> ('_' for ':')."""
    entries = []
    for kind, count in counts.items():
        if kind.startswith("gres_"):
            entries.append({"type": "gres", "name": kind[5:].replace("_", ":"), "id": 1001, "count": count})
        else:
            entries.append({"type": kind, "name": "", "id": 1, "count": count})
    return entries


def seconds(value: float) -> dict[str, int]:
    return {"seconds": int(value), "microseconds": round(value % 1 * 1e6)}


def step(*, total: Any = None, peak_total: Any = None, peak_max: Any = None) -> dict[str, Any]:
    used: dict[str, Any] = {}
    if peak_total is not None:
        used["total"] = tres(mem=peak_total)
    if peak_max is not None:
        used["max"] = tres(mem=peak_max)
    doc: dict[str, Any] = {"tres": {"requested": used}}
    if total is not None:
        doc["time"] = {"total": seconds(total)}
    return doc


def test_allocated_resources_win_over_requested_ones_and_fill_in_from_them():
    usage = parse_usage(
        {
            "tres": {
                "allocated": tres(cpu=8, node=2),  # no memory among the allocated TRES
                "requested": tres(cpu=2, mem=4096, node=1),
            },
            "time": {"limit": 90, "elapsed": 3600},
        }
    )
    assert usage == JobUsage(cpus=8, memory_mib=4096, nodes=2, time_limit_s=90 * 60, elapsed_s=3600)


def test_the_same_figures_from_the_struct_shapes_of_newer_versions():
    def struct(n: int) -> dict[str, Any]:
        return {"set": True, "infinite": False, "number": n}

    usage = parse_usage(
        {
            "tres": {"allocated": tres(cpu=struct(4), mem=2048, node={"number": 1})},  # no "set": a number
            "time": {"limit": struct(15), "elapsed": 61},
        }
    )
    assert usage == JobUsage(cpus=4, memory_mib=2048, nodes=1, time_limit_s=900, elapsed_s=61)


def test_gpus_are_the_gres_named_gpu_of_every_model_and_nothing_else():
    allocated = tres(cpu=1, gres_gpu_a100=2, gres_gpu_v100=1, gres_gpumem=80, gres_gpu=1)
    usage = parse_usage({"tres": {"allocated": allocated}})
    assert usage is not None and usage.gpus == 4  # gpu:a100 + gpu:v100 + gpu, not gpumem
    no_gpu = parse_usage({"tres": {"allocated": tres(cpu=1, gres_gpumem=80)}})
    assert no_gpu is not None and no_gpu.gpus is None
    zero = parse_usage({"tres": {"allocated": tres(cpu=1, gres_gpu=0)}})
    assert zero is not None and zero.gpus is None  # no GPU-hours line for a job without GPUs
    requested = tres(gres_gpumem=80, gres_gpu_a100=2)
    requested_only = parse_usage({"tres": {"allocated": tres(cpu=1), "requested": requested}})
    assert requested_only is not None and requested_only.gpus == 2  # what was asked for: still only gpu


def test_no_memory_no_limit_and_unmeasured_counts_are_unknown_not_zero():
    usage = parse_usage(
        {
            "tres": {"allocated": tres(cpu=1, mem=0, node=-2)},  # mem 0: the whole node; -2: not measured
            "time": {"limit": {"set": False, "infinite": True, "number": 0}, "elapsed": 0},
            "allocation_nodes": 3,
        }
    )
    assert usage == JobUsage(cpus=1, memory_mib=None, nodes=3, time_limit_s=None, elapsed_s=0)
    assert parse_usage({"time": {"limit": 0}}) == JobUsage(time_limit_s=None)
    unlimited = {"set": True, "infinite": True, "number": 60}  # infinite whatever number it carries
    assert parse_usage({"time": {"limit": unlimited}}) == JobUsage(time_limit_s=None)


def test_cpu_time_is_the_total_else_user_plus_system():
    assert parse_usage({"time": {"total": seconds(7.5), "user": seconds(1)}}) == JobUsage(cpu_time_s=7.5)
    summed = parse_usage({"time": {"user": seconds(3.5), "system": seconds(1.25)}})
    assert summed == JobUsage(cpu_time_s=4.75)
    assert parse_usage({"time": {"system": seconds(2)}}) == JobUsage(cpu_time_s=2.0)
    assert parse_usage({"time": {"user": seconds(3)}}) == JobUsage(cpu_time_s=3.0)
    assert parse_usage({"time": {"elapsed": 5}}) == JobUsage(elapsed_s=5, cpu_time_s=None)
    assert parse_usage({"time": {"total": {"microseconds": 5}}}) == JobUsage(cpu_time_s=None)  # no seconds


def test_cpu_time_of_the_steps_counts_when_the_jobs_own_is_smaller():
    steps = [step(total=2.5), step(total=1.0), {"time": None}, "junk"]
    usage = parse_usage({"time": {"total": seconds(0)}, "steps": steps})
    assert usage is not None and usage.cpu_time_s == 3.5 and usage.steps_known
    bigger = parse_usage({"time": {"total": seconds(10)}, "steps": steps})
    assert bigger is not None and bigger.cpu_time_s == 10.0
    no_own = parse_usage({"time": {}, "steps": steps})
    assert no_own is not None and no_own.cpu_time_s == 3.5
    short = parse_usage({"time": {}, "steps": [step(total=0.25), step(total=0.5)]})
    assert short is not None and short.cpu_time_s == 0.75


def test_peak_memory_is_the_largest_steps_in_bytes():
    steps = [
        step(),  # nothing measured (e.g. the extern step): the steps after it still count
        {"tres": None},
        step(peak_total=300 * MIB),
        step(peak_max=700 * MIB),  # a step with only the per-task maximum
    ]
    usage = parse_usage({"time": {}, "steps": steps})
    assert usage is not None and usage.peak_memory_bytes == 700 * MIB and usage.steps_known
    # where a step has both, the total over its tasks is its peak
    both = parse_usage({"time": {}, "steps": [step(peak_total=500 * MIB, peak_max=800 * MIB)]})
    assert both is not None and both.peak_memory_bytes == 500 * MIB
    unmeasured = parse_usage({"time": {}, "steps": [step(), step(peak_total=-2)]})
    assert unmeasured is not None and unmeasured.peak_memory_bytes is None and unmeasured.steps_known


def test_a_listing_without_steps_knows_no_peak():
    usage = parse_usage({"tres": {"allocated": tres(cpu=1)}})
    assert usage is not None and usage.peak_memory_bytes is None and not usage.steps_known


def test_tres_lists_of_odd_shape_are_skipped():
    usage = parse_usage(
        {
            "tres": {
                "allocated": ["junk", {"type": "cpu", "count": "8"}, {"type": "node", "count": 2.0}],
                "requested": {"cpu": 4},
            }
        }
    )
    # a count given as text is no count; 2.0 is two nodes; a requested mapping instead of a list is nothing
    assert usage == JobUsage(cpus=None, nodes=2)


# ---------------------------------------------------------------- recorded and measured records, summaries and hints

RECORDED = sorted(DATA.glob("slurm-*/v0.0.*/slurmdb_job_exit0_ended.json"))


def recorded(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())["body"]["jobs"][0]


def measured(doc: dict[str, Any], *, peak_mib: float, cpu_s: float, elapsed: int, limit_min: int) -> dict[str, Any]:
    """A recorded record made to look as a measuring cluster writes it (shapes of the record's own version)."""
    doc = copy.deepcopy(doc)
    doc["time"]["elapsed"] = elapsed
    limit = doc["time"]["limit"]
    doc["time"]["limit"] = {**limit, "number": limit_min} if isinstance(limit, dict) else limit_min
    doc["time"]["total"] = {"seconds": int(cpu_s), "microseconds": int(cpu_s % 1 * 1e6)}
    for entry in doc["tres"]["requested"]:
        if entry["type"] == "mem":
            entry["count"] = 2048  # --mem=2G (the recordings asked for the whole node's 8000 MiB)
    usage = [{"type": "cpu", "name": "", "id": 1, "count": int(cpu_s * 1000)}]
    usage.append({"type": "mem", "name": "", "id": 2, "count": int(peak_mib * MIB)})
    doc["steps"][0]["tres"]["requested"] = {"max": usage, "min": usage, "average": usage, "total": usage}
    return doc


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.parent.name + "-" + p.parent.parent.name)
def test_every_version_reports_what_the_job_asked_for_and_ran(path: Path):
    job = parse_accounting_job(recorded(path))
    usage = judge(job.job_id, [job]).summary["usage"]
    assert usage["cpus"] == 1 and usage["nodes"] == 1
    assert usage["time_limit_s"] == 15 * 60 and usage["elapsed_s"] == 1
    assert usage["memory_requested_mib"] == 8000  # the local node's RealMemory: no --mem given
    assert usage["node_hours"] == round(1 / 3600, 4)
    # The recording cluster gathered nothing: no peak is made up, and no memory advice given.
    assert usage["measured"] is False and "memory_peak_mib" not in usage
    assert not any("memory" in hint for hint in usage["hints"])
    assert "peak not measured" in usage_line(job.job_id, usage)
    # ... nor a CPU time of 0 s (what such a cluster records) passed off as an idle job.
    assert "cpu_time_s" not in usage and "cpu_efficiency" not in usage


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.parent.name + "-" + p.parent.parent.name)
def test_a_measured_job_reports_peak_memory_cpu_efficiency_and_right_sizing(path: Path):
    doc = measured(recorded(path), peak_mib=300, cpu_s=8.0, elapsed=10, limit_min=60)
    job = parse_accounting_job(doc)
    usage = judge(job.job_id, [job]).summary["usage"]
    assert usage["memory_peak_mib"] == 300.0 and usage["memory_used"] == round(300 / 2048, 3)
    assert usage["cpu_time_s"] == 8.0 and usage["cpu_efficiency"] == 0.8
    assert usage["time_used"] == round(10 / 3600, 3) and usage["measured"] is True
    assert usage["hints"] == [
        "used 15% of its memory (300 of 2048 MiB): memory_per_node=512M would do",
        "used <1% of its time limit (0:00:10 of 1:00:00): time_limit=5 (minutes) would do",
    ]
    line = usage_line(job.job_id, usage)
    assert line.startswith(f"Slurm job {job.job_id} ran 0:00:10 (<1% of its 1:00:00 limit), CPU time 0:00:08 on 1 CPU")
    assert "(80% efficient), peak memory 300 MiB of 2048 MiB (15%)" in line
    assert "right-sizing: it used 15% of its memory" in line
    json.dumps(usage)  # XCom takes plain JSON


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.parent.name + "-" + p.parent.parent.name)
def test_cpu_time_comes_from_the_steps_when_the_jobs_own_total_is_zero(path: Path):
    # Measured on 26.05 with jobacct_gather/linux: the job's time.total stays 0 s, its batch step holds
    # the 3.9 s a busy loop used (microseconds may exceed a second there).
    doc = measured(recorded(path), peak_mib=300, cpu_s=0.0, elapsed=10, limit_min=60)
    doc["steps"][0]["time"] = {**doc["steps"][0]["time"], "total": {"seconds": 2, "microseconds": 1905875}}
    job = parse_accounting_job(doc)
    usage = judge(job.job_id, [job]).summary["usage"]
    assert usage["cpu_time_s"] == 3.9 and usage["cpu_efficiency"] == 0.391


def test_no_hint_for_a_job_that_used_what_it_asked_for_or_failed():
    doc = measured(recorded(RECORDED[-1]), peak_mib=1800, cpu_s=50, elapsed=55 * 60, limit_min=60)
    assert usage_summary([parse_accounting_job(doc)])["hints"] == []  # type: ignore[index]
    small = measured(recorded(RECORDED[-1]), peak_mib=10, cpu_s=1, elapsed=5, limit_min=60)
    small["state"]["current"] = ["FAILED"]
    small["exit_code"]["return_code"]["number"] = 3
    usage = usage_summary([parse_accounting_job(small)])
    assert usage is not None and usage["hints"] == []  # a job that died early says nothing about its size


def test_no_time_hint_when_a_shorter_limit_would_not_be_shorter():
    doc = measured(recorded(RECORDED[-1]), peak_mib=1800, cpu_s=1, elapsed=10, limit_min=5)
    assert usage_summary([parse_accounting_job(doc)])["hints"] == []  # type: ignore[index]


def test_gpus_and_node_hours_of_a_multi_node_job():
    doc = measured(recorded(RECORDED[-1]), peak_mib=1000, cpu_s=7200, elapsed=3600, limit_min=120)
    doc["tres"]["allocated"] = [
        {"type": "cpu", "name": "", "id": 1, "count": 8},
        {"type": "mem", "name": "", "id": 2, "count": 4096},
        {"type": "node", "name": "", "id": 4, "count": 2},
        {"type": "gres", "name": "gpu:a100", "id": 1001, "count": 4},
        {"type": "gres", "name": "gpumem", "id": 1002, "count": 80},
    ]
    usage = usage_summary([parse_accounting_job(doc)])
    assert usage is not None
    assert (usage["cpus"], usage["nodes"], usage["gpus"]) == (8, 2, 4)
    assert (usage["node_hours"], usage["gpu_hours"], usage["cpu_efficiency"]) == (2.0, 4.0, 0.25)
    assert "4.0 GPU-hours" in usage_line(1, usage)


def test_array_figures_are_summed_and_the_worst_task_named():
    base = recorded(RECORDED[-1])
    tasks = []
    for index, peak in enumerate([100, 400, 200]):
        doc = measured(base, peak_mib=peak, cpu_s=4, elapsed=10, limit_min=60)
        doc["array"] = {"job_id": 50, "task_id": {"set": True, "infinite": False, "number": index}}
        doc["job_id"] = 51 + index
        tasks.append(parse_accounting_job(doc))
    summary = judge(50, tasks).summary
    usage = summary["usage"]
    assert usage["tasks"] == 3 and usage["cpu_time_s"] == 12.0 and usage["elapsed_s"] == 30
    assert usage["longest_task_s"] == 10
    assert usage["cpu_efficiency"] == 0.4 and usage["memory_peak_mib"] == 400.0
    assert usage["worst_task"]["index"] == 1 and usage["worst_task"]["memory_used"] == round(400 / 2048, 3)
    # Sizing follows the largest task: 400 MiB + half again, rounded up to 64 MiB.
    assert usage["hints"][0] == "used 20% of its memory (400 of 2048 MiB): memory_per_node=640M would do"
    assert usage_line(50, usage).startswith("Slurm job 50 (3 tasks) ran 0:00:30 (longest task <1% of its")


def test_a_listing_without_steps_takes_the_usage_of_the_jobs_own_record():
    doc = measured(recorded(RECORDED[-1]), peak_mib=300, cpu_s=8.0, elapsed=10, limit_min=60)
    listed = copy.deepcopy(doc)
    del listed["steps"]
    from_listing = parse_accounting_job(listed)
    assert from_listing.usage is not None and not from_listing.usage.steps_known
    older = copy.deepcopy(doc)  # another job under a reused id: its usage is not ours
    older["time"]["submission"] -= 3600
    merged = with_measured_usage([from_listing], [parse_accounting_job(older), parse_accounting_job(doc)])
    assert merged[0].usage is not None and merged[0].usage.peak_memory_bytes == 300 * MIB
    assert with_measured_usage([from_listing], [parse_accounting_job(older)])[0].usage == from_listing.usage


@pytest.mark.parametrize(
    "junk",
    [None, "x", -2, float("nan"), float("inf"), {"set": False, "number": 5}, {"infinite": True}, True, [1]],
)
def test_junk_counts_are_unknown_not_errors(junk: Any):
    doc = recorded(RECORDED[-1])
    doc["tres"]["allocated"][0]["count"] = junk
    doc["tres"]["requested"] = junk
    doc["time"]["limit"] = junk
    doc["time"]["elapsed"] = junk
    doc["time"]["total"] = junk
    doc["steps"] = [{"tres": {"requested": {"total": [{"type": "mem", "count": junk}]}}}, junk]
    usage = parse_usage(doc)
    assert usage is not None and usage.cpus is None and usage.peak_memory_bytes is None
    assert usage.time_limit_s is None and usage.elapsed_s is None
    json.dumps(usage_summary([parse_accounting_job(doc)]))


def test_a_record_without_tres_or_times_has_no_usage():
    assert parse_usage({"job_id": 1}) is None
    assert "usage" not in judge(1, [parse_accounting_job({"job_id": 1, "state": {"current": ["COMPLETED"]}})]).summary


def trigger_event(conn_id: str, spec: WatchSpec) -> dict[str, Any]:
    """The one event a trigger waiting on `spec` fires (its payload), run in an event loop of its own."""
    import asyncio

    from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger

    async def first_event() -> dict[str, Any]:
        async for event in MaxwellJobTrigger(maxwell_conn_id=conn_id, spec=spec.to_kwargs()).run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(first_event())


def skip_steps_listing(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` as a listing asked with skip_steps=true answers it: `steps: []` (measured on 26.05)."""
    return {**doc, "steps": []}


@pytest.mark.parametrize(
    "listing", [skip_steps_listing, lambda doc: {k: v for k, v in doc.items() if k != "steps"}], ids=["empty", "absent"]
)
def test_the_trigger_reads_the_jobs_own_record_once_for_what_the_listing_left_out(fake, listing):
    from tests.fake_slurm import META

    doc = measured(recorded(RECORDED[-1]), peak_mib=300, cpu_s=8.0, elapsed=10, limit_min=60)
    doc["user"], job_id = "alice", doc["job_id"]
    listed = listing(doc)
    fake.script["/slurmdb/v0.0.44/jobs"] = [(200, {}, {**META, "jobs": [listed]})]
    fake.script[f"/slurmdb/v0.0.44/job/{job_id}"] = [(200, {}, {**META, "jobs": [doc]})]
    spec = WatchSpec(job_id=job_id, user="alice", submitted_after=doc["time"]["submission"], poll_interval=0.2)
    event = trigger_event(fake.conn_id, spec)
    assert event["status"] == "success"
    assert event["summary"]["usage"]["memory_peak_mib"] == 300.0
    assert fake.count("GET", f"/slurmdb/v0.0.44/job/{job_id}") == 1


def test_the_trigger_still_reports_the_outcome_when_the_usage_read_fails(fake):
    from tests.fake_slurm import META

    doc = recorded(RECORDED[-1])
    doc["user"], job_id = "alice", doc["job_id"]
    listed = {k: v for k, v in doc.items() if k != "steps"}
    fake.script["/slurmdb/v0.0.44/jobs"] = [(200, {}, {**META, "jobs": [listed]})]
    fake.script[f"/slurmdb/v0.0.44/job/{job_id}"] = [(500, {}, {**META, "errors": [{"error_number": 1}]})] * 9
    spec = WatchSpec(job_id=job_id, user="alice", submitted_after=doc["time"]["submission"], poll_interval=0.2)
    event = trigger_event(fake.conn_id, spec)
    assert event["status"] == "success" and event["summary"]["usage"]["measured"] is False


def step_not_ended(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` as accounting holds it a moment after the job's end, before its batch step's end (and with it
    what the step measured) is written: the step still RUNNING, no end time, no figures."""
    doc = copy.deepcopy(doc)
    step = doc["steps"][0]
    step["state"] = ["RUNNING"]
    step["time"]["end"] = {**step["time"]["end"], "number": 0}
    step["tres"]["requested"] = {"max": [], "min": [], "average": [], "total": []}
    return doc


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.parent.name + "-" + p.parent.parent.name)
def test_steps_have_ended_once_accounting_holds_the_end_of_each(path: Path):
    doc = measured(recorded(path), peak_mib=300, cpu_s=8.0, elapsed=10, limit_min=60)
    assert parse_usage(doc).steps_ended  # type: ignore[union-attr]
    running = copy.deepcopy(doc)
    end = running["steps"][0]["time"]["end"]
    running["steps"][0]["time"]["end"] = {**end, "number": 0} if isinstance(end, dict) else 0
    assert not parse_usage(running).steps_ended  # type: ignore[union-attr]
    # skip_steps answers `steps: []`: no steps known of a job that started (it has a batch step) ...
    listed = parse_usage({**doc, "steps": []})
    assert listed is not None and not listed.steps_known and not listed.steps_ended
    # ... while one that never started (cancelled while pending) has none to come.
    never_ran = parse_usage({**doc, "steps": [], "time": {**doc["time"], "start": 0}})
    assert never_ran is not None and never_ran.steps_known and never_ran.steps_ended
    listed = {k: v for k, v in doc.items() if k != "steps"}
    assert not parse_usage(listed).steps_ended  # type: ignore[union-attr]


def ended_job_with_late_steps(fake, monkeypatch, *, settles: bool) -> tuple[int, WatchSpec]:
    """A job that ended and that accounting lists (steps skipped), whose own record first carries its batch
    step not yet ended; `settles`: the next read holds the step's end and its 300 MiB peak."""
    from tests.fake_slurm import META

    monkeypatch.setattr("airflow_provider_maxwell.watch.USAGE_READ_PAUSES", (0.0, 0.01, 0.01, 0.01), raising=False)
    monkeypatch.setattr(
        "airflow_provider_maxwell.triggers.job.USAGE_READ_PAUSES", (0.0, 0.01, 0.01, 0.01), raising=False
    )
    doc = measured(recorded(RECORDED[-1]), peak_mib=300, cpu_s=8.0, elapsed=10, limit_min=60)
    doc["user"], job_id = "alice", doc["job_id"]
    early = step_not_ended(doc)
    fake.script["/slurmdb/v0.0.44/jobs"] = [(200, {}, {**META, "jobs": [skip_steps_listing(doc)]})]
    answers = [early, early, doc] if settles else [early]
    fake.script[f"/slurmdb/v0.0.44/job/{job_id}"] = [(200, {}, {**META, "jobs": [d]}) for d in answers]
    return job_id, WatchSpec(job_id=job_id, user="alice", submitted_after=doc["time"]["submission"], poll_interval=0.2)


def usage_of_wait(fake, spec: WatchSpec, deferred: bool) -> dict[str, Any]:
    """The `usage` of the XCom summary a wait ends with, in the triggerer (deferred) or in the worker."""
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    if not deferred:
        return judge(spec.job_id, MaxwellHook(fake.conn_id).wait_for_job(spec)).summary["usage"]
    event = trigger_event(fake.conn_id, spec)
    assert event["status"] == "success", event
    return event["summary"]["usage"]


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "worker"])
def test_a_wait_reads_the_usage_again_until_the_steps_ended_in_accounting(fake, monkeypatch, deferred: bool):
    job_id, spec = ended_job_with_late_steps(fake, monkeypatch, settles=True)
    usage = usage_of_wait(fake, spec, deferred)
    assert usage["measured"] is True and usage["memory_peak_mib"] == 300.0
    assert any("memory_per_node=" in hint for hint in usage["hints"]), usage
    assert usage_line(job_id, usage).count("peak memory 300 MiB of 2048 MiB (15%)") == 1


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "worker"])
def test_steps_that_never_end_in_accounting_cost_a_bounded_number_of_reads(fake, monkeypatch, deferred: bool):
    job_id, spec = ended_job_with_late_steps(fake, monkeypatch, settles=False)
    usage = usage_of_wait(fake, spec, deferred)
    assert usage["measured"] is False and "memory_peak_mib" not in usage
    # The worker's wait read the record once to see the job end: the usage reads follow it.
    assert fake.count("GET", f"/slurmdb/v0.0.44/job/{job_id}") == 4 + (0 if deferred else 1)
