"""What a job asked for and what it used, as accounting (slurmdbd) records it: one typed shape for every
API version (v0.0.38's plain integers and later {set, number} structs alike).

Units as Slurm keeps them: job TRES memory in MiB, step usage memory in bytes, time limit in minutes,
elapsed and CPU time in seconds. Measured figures (peak memory) exist only where the cluster gathers
them (JobAcctGatherType other than jobacct_gather/none) and only in records that carry steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_maxwell.slurm.values import unwrapped

MIB = 1024 * 1024


@dataclass(frozen=True)
class JobUsage:
    """One job's (or array task's) resources: asked for, allocated, and used."""

    cpus: int | None = None  # allocated (else requested) CPUs
    memory_mib: int | None = None  # allocated (else requested) memory of the whole job, MiB
    nodes: int | None = None  # allocated nodes
    gpus: int | None = None  # allocated GPUs (gres/gpu), None when the job had none
    time_limit_s: int | None = None  # None: no limit (infinite) or unknown
    elapsed_s: int | None = None
    cpu_time_s: float | None = None  # user + system CPU time of all steps
    peak_memory_bytes: int | None = None  # largest memory a step held (sum over its tasks); None: not measured
    # The record lists the job's steps. Listings asked with skip_steps answer `steps: []` (measured on
    # 26.05), so an empty list counts only for a job that never started: one that did has a batch step.
    steps_known: bool = False
    # Every listed step has its end in accounting. slurmdbd writes a step's measured figures with its
    # end; a job seen ending (COMPLETING) may have its own end there before its steps'.
    steps_ended: bool = False


def _count(value: Any) -> int | None:
    """A TRES count, or a {set, number} struct; None for unset, infinite or negative (-2: 'not measured')."""
    value = unwrapped(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        count = int(value)
    except (ValueError, OverflowError):  # float('nan'), float('inf') from a broken server
        return None
    return count if count >= 0 else None


def _tres(entries: Any, kind: str, name_prefix: str | None = None) -> int | None:
    """The count of one TRES in a list of {type, name, count}; gres are matched by name ('gpu', 'gpu:a100')."""
    if not isinstance(entries, list):
        return None
    total: int | None = None
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("type") != kind:
            continue
        name = entry.get("name") or ""
        if name_prefix is not None and not (isinstance(name, str) and name.split(":")[0] == name_prefix):
            continue
        count = _count(entry.get("count"))
        if count is not None:
            total = (total or 0) + count
        if name_prefix is None:
            break  # one entry per plain TRES type; gres may be listed per GPU model
    return total


def _seconds(value: Any) -> float | None:
    """{seconds, microseconds} (every version) as seconds."""
    if not isinstance(value, Mapping):
        return None
    seconds, micro = _count(value.get("seconds")), _count(value.get("microseconds"))
    if seconds is None:
        return None
    return seconds + (micro or 0) / 1e6


def _cpu_time(times: Any) -> float | None:
    """User + system CPU time of a job's or step's `time` object (its `total`, else the two summed)."""
    if not isinstance(times, Mapping):
        return None
    total = _seconds(times.get("total"))
    if total is not None:
        return total
    user, system = _seconds(times.get("user")), _seconds(times.get("system"))
    return None if user is None and system is None else (user or 0.0) + (system or 0.0)


def _peak_memory(steps: list[Any]) -> int | None:
    peaks = []
    for step in steps:
        usage = step.get("tres") if isinstance(step, Mapping) else None
        used = usage.get("requested") if isinstance(usage, Mapping) else None  # 'requested' is what was used
        if not isinstance(used, Mapping):
            continue
        peak = _tres(used.get("total"), "mem")
        if peak is None:
            peak = _tres(used.get("max"), "mem")
        if peak is not None:
            peaks.append(peak)
    return max(peaks) if peaks else None


def _ended(step: Any) -> bool:
    """Accounting holds the step's end (slurmdbd writes a step's record when it starts, its end and
    figures when it ends)."""
    times = step.get("time") if isinstance(step, Mapping) else None
    return isinstance(times, Mapping) and bool(_count(times.get("end")))


def parse_usage(doc: Mapping[str, Any]) -> JobUsage | None:
    """The usage in one accounting job record; None when it carries neither TRES nor times."""
    tres = doc.get("tres")
    times = doc.get("time")
    if not isinstance(tres, Mapping) and not isinstance(times, Mapping):
        return None
    tres = tres if isinstance(tres, Mapping) else {}
    times = times if isinstance(times, Mapping) else {}
    allocated, requested = tres.get("allocated"), tres.get("requested")

    def either(kind: str, name: str | None = None) -> int | None:
        found = _tres(allocated, kind, name)
        return found if found is not None else _tres(requested, kind, name)

    limit = _count(times.get("limit"))
    cpu_time = _cpu_time(times)
    steps = doc.get("steps")
    if isinstance(steps, list):
        # The job's own totals stay 0 on 26.05 while its steps hold what was measured (batch step included).
        in_steps = [t for t in (_cpu_time(s.get("time")) for s in steps if isinstance(s, Mapping)) if t is not None]
        if in_steps and sum(in_steps) > (cpu_time or 0.0):
            cpu_time = sum(in_steps)
    listed: list[Any] = steps if isinstance(steps, list) else []
    known = isinstance(steps, list) and (bool(listed) or not _count(times.get("start")))
    nodes = _tres(allocated, "node")
    if nodes is None:
        nodes = _count(doc.get("allocation_nodes"))
    return JobUsage(
        cpus=either("cpu"),
        memory_mib=either("mem") or None,  # 0: no memory asked for (whole node)
        nodes=nodes,
        gpus=either("gres", "gpu") or None,
        time_limit_s=limit * 60 if limit else None,
        elapsed_s=_count(times.get("elapsed")),
        cpu_time_s=cpu_time,
        peak_memory_bytes=_peak_memory(listed) if known else None,
        steps_known=known,
        steps_ended=known and all(_ended(s) for s in listed),
    )
