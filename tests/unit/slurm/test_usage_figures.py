"""The resource figures read from one accounting record (`parse_usage`), field by field: which TRES list
wins, how GPUs are counted, the units (time limit in seconds, memory in MiB, peak in bytes), and where CPU
time and peak memory come from when the job's own totals are missing or zero. Users size their next job
by these figures (the usage summary and right-sizing hints are built on them)."""

from __future__ import annotations

from typing import Any

from airflow_provider_maxwell.slurm.usage import MIB, JobUsage, parse_usage


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
