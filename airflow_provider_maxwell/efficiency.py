"""How well a finished job used what it asked for: the figures of the XCom summary's `usage`, the one line
in the task log, and right-sizing hints. No Airflow imports, no I/O: operators, sensors and the trigger
share it. Input is accounting's records (slurm/usage.py); output is plain JSON values.

Keys of `usage` (absent: not known):
  elapsed_s, time_limit_s, time_used        run time (s), its limit (s), their ratio (0..1)
  cpus, cpu_time_s, cpu_efficiency          allocated CPUs, user+system CPU time (s), CPU time / (cpus x elapsed);
                                            absent where the cluster measured nothing
  memory_requested_mib, memory_peak_mib, memory_used   memory asked for, the largest a step held, their ratio
  nodes, node_hours                         allocated nodes, nodes x elapsed
  gpus, gpu_hours                           only for jobs that had GPUs
  measured                                  True when peak memory was measured (the cluster gathers usage)
  hints                                     right-sizing advice (successful jobs only), [] when none
Arrays: `tasks`, the sums over tasks (elapsed_s, cpu_time_s, node_hours, gpu_hours), the ratios over all
tasks, `longest_task_s`, the largest of memory_peak_mib / memory_used / time_used, and `worst_task`: the task that came
closest to a limit, {index, memory_used, time_used, cpu_efficiency}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_maxwell.slurm.job import SlurmJob
from airflow_provider_maxwell.slurm.usage import MIB, JobUsage
from airflow_provider_maxwell.slurm.values import duration_text

UNDER_USED = 0.25  # below this share of its memory or time limit a job asked for too much
HEADROOM = 1.5  # advice: the peak seen plus half again
MIN_ADVISED_MINUTES = 5  # shorter limits save the scheduler nothing
MIN_ADVISED_MIB = 256


def _ratio(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return round(part / whole, 3)


def task_figures(usage: JobUsage) -> dict[str, Any]:
    """The figures of one job or array task (keys as in the module's doc, without hints)."""
    elapsed = usage.elapsed_s
    peak_mib = round(usage.peak_memory_bytes / MIB, 1) if usage.peak_memory_bytes is not None else None
    figures: dict[str, Any] = {
        "elapsed_s": elapsed,
        "time_limit_s": usage.time_limit_s,
        "time_used": _ratio(elapsed, usage.time_limit_s),
        "cpus": usage.cpus,
        "cpu_time_s": round(usage.cpu_time_s, 1) if usage.cpu_time_s is not None else None,
        "cpu_efficiency": _ratio(usage.cpu_time_s, (usage.cpus or 0) * (elapsed or 0)),
        "memory_requested_mib": usage.memory_mib,
        "memory_peak_mib": peak_mib,
        "memory_used": _ratio(peak_mib, usage.memory_mib),
        "nodes": usage.nodes,
        "node_hours": round(usage.nodes * elapsed / 3600, 4) if usage.nodes and elapsed is not None else None,
        "measured": usage.peak_memory_bytes is not None,
    }
    if not figures["measured"] and not usage.cpu_time_s:
        # A cluster that gathers nothing (jobacct_gather/none) records 0 s of CPU time: unknown, not idle.
        figures["cpu_time_s"] = figures["cpu_efficiency"] = None
    if usage.gpus:
        figures["gpus"] = usage.gpus
        figures["gpu_hours"] = round(usage.gpus * (elapsed or 0) / 3600, 4)
    return {k: v for k, v in figures.items() if v is not None}


def _sum(tasks: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [t[key] for t in tasks if key in t]
    return round(sum(values), 4) if values else None


def _max(tasks: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [t[key] for t in tasks if key in t]
    return max(values) if values else None


def usage_summary(jobs: Sequence[SlurmJob]) -> dict[str, Any] | None:
    """The `usage` of the XCom summary for a job or all tasks of an array; None when no record has usage."""
    measured = [(j.array_task_id, j.usage) for j in jobs if j.usage is not None]
    if not measured:
        return None
    tasks = [task_figures(u) for _, u in measured]
    succeeded = all(j.succeeded() for j in jobs)
    if len(jobs) == 1 and jobs[0].array_task_id is None:
        summary = tasks[0]
    else:
        core_seconds = sum(t.get("cpus", 0) * t.get("elapsed_s", 0) for t in tasks)
        summary = {
            "tasks": len(tasks),
            "elapsed_s": _sum(tasks, "elapsed_s"),
            "cpu_time_s": _sum(tasks, "cpu_time_s"),
            "cpu_efficiency": _ratio(_sum(tasks, "cpu_time_s"), core_seconds),
            "longest_task_s": _max(tasks, "elapsed_s"),
            "time_limit_s": _max(tasks, "time_limit_s"),
            "time_used": _max(tasks, "time_used"),
            "memory_requested_mib": _max(tasks, "memory_requested_mib"),
            "memory_peak_mib": _max(tasks, "memory_peak_mib"),
            "memory_used": _max(tasks, "memory_used"),
            "node_hours": _sum(tasks, "node_hours"),
            "gpu_hours": _sum(tasks, "gpu_hours"),
            "measured": all(t["measured"] for t in tasks),
        }
        summary = {k: v for k, v in summary.items() if v is not None}

        def closeness(item: tuple[int | None, dict[str, Any]]) -> float:
            return max(item[1].get("memory_used", 0.0), item[1].get("time_used", 0.0))

        index, worst = max(zip((i for i, _ in measured), tasks, strict=True), key=closeness)
        summary["worst_task"] = {
            "index": index,
            **{k: worst[k] for k in ("memory_used", "time_used", "cpu_efficiency") if k in worst},
        }
    summary["hints"] = hints(summary) if succeeded else []
    return summary


def with_measured_usage(final: Sequence[SlurmJob], detailed: Sequence[SlurmJob]) -> list[SlurmJob]:
    """`final`'s records with the usage of the same job (and task, and submission) from `detailed`: the
    job's own accounting records, which carry steps where a listing did not."""
    from dataclasses import replace

    by_key = {(j.job_id, j.array_task_id, j.submitted): j for j in detailed if j.usage is not None}
    merged = []
    for job in final:
        found = by_key.get((job.job_id, job.array_task_id, job.submitted))
        merged.append(replace(job, usage=found.usage) if found is not None else job)
    return merged


def _percent(ratio: float) -> str:
    """A ratio as a whole percentage; '<1%' rather than a '0%' that reads as 'nothing'."""
    return "<1%" if 0 < ratio < 0.005 else f"{ratio:.0%}"


def hints(usage: Mapping[str, Any]) -> list[str]:
    """Right-sizing advice when the job (every task of an array) used under UNDER_USED of its memory or time."""
    advice = []
    memory_used, peak = usage.get("memory_used"), usage.get("memory_peak_mib")
    if memory_used is not None and peak is not None and memory_used < UNDER_USED:
        advised = max(MIN_ADVISED_MIB, -(-int(peak * HEADROOM) // 64) * 64)  # rounded up to 64 MiB
        advice.append(
            f"used {_percent(memory_used)} of its memory ({peak:.0f} of {usage['memory_requested_mib']} MiB): "
            f"memory_per_node={advised}M would do"
        )
    time_used, limit = usage.get("time_used"), usage.get("time_limit_s")
    if time_used is not None and limit and time_used < UNDER_USED:
        longest = usage.get("longest_task_s", usage.get("elapsed_s", time_used * limit))
        minutes = max(MIN_ADVISED_MINUTES, -(-int(longest * HEADROOM) // 60))
        if minutes * 60 < limit:
            advice.append(
                f"used {_percent(time_used)} of its time limit ({duration_text(longest)} of {duration_text(limit)}): "
                f"time_limit={minutes} (minutes) would do"
            )
    return advice


def usage_line(job_id: int, usage: Mapping[str, Any]) -> str:
    """One line for the task log, e.g. 'Slurm job 7 used 0:00:12 of 0:05:00 (4 %), CPU 0:00:10 on 1 CPU
    (83 % efficient), peak memory 301 of 2048 MiB (15 %), 0.0033 node-hours; right-sizing: ...'."""
    parts = []
    tasks = f" ({usage['tasks']} tasks)" if "tasks" in usage else ""
    if "elapsed_s" in usage:
        run = duration_text(usage["elapsed_s"])
        if "time_limit_s" in usage and "time_used" in usage:
            longest = "longest task " if tasks else ""
            run += f" ({longest}{_percent(usage['time_used'])} of its {duration_text(usage['time_limit_s'])} limit)"
        parts.append(f"ran {run}")
    if "cpu_time_s" in usage:
        cpu = f"CPU time {duration_text(usage['cpu_time_s'])}"
        if "cpus" in usage:
            cpu += f" on {usage['cpus']} CPU{'s' if usage['cpus'] != 1 else ''}"
        if "cpu_efficiency" in usage:
            cpu += f" ({_percent(usage['cpu_efficiency'])} efficient)"
        parts.append(cpu)
    if "memory_peak_mib" in usage:
        memory = f"peak memory {usage['memory_peak_mib']:.0f} MiB"
        if "memory_requested_mib" in usage and "memory_used" in usage:
            memory += f" of {usage['memory_requested_mib']} MiB ({_percent(usage['memory_used'])})"
        parts.append(memory)
    elif "memory_requested_mib" in usage:
        parts.append(f"memory {usage['memory_requested_mib']} MiB (peak not measured)")
    if "node_hours" in usage:
        parts.append(f"{usage['node_hours']} node-hours")
    if "gpu_hours" in usage:
        parts.append(f"{usage['gpu_hours']} GPU-hours")
    line = f"Slurm job {job_id}{tasks} " + ", ".join(parts) if parts else f"Slurm job {job_id}: no usage recorded"
    if usage.get("hints"):
        line += "; right-sizing: it " + "; it ".join(usage["hints"])
    return line
