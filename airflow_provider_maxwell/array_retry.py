"""Array retries that rerun only the failed indices: what a try of an array task submits, and the
merged per-index record of all tries.

When an array job's try ends with some tasks failed, the next try of the Airflow task submits the
same script with `array` narrowed to those indices. Between tries the facts live in Airflow's task
state store (it outlives a try; XComs do not): the failed indices of the last try, and per index the
final state, exit code, try and job that decided it.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_maxwell.compat import TaskLog
from airflow_provider_maxwell.watch import array_indices

FAILED_INDICES_KEY = "maxwell_array_failed_indices"  # task_state_store keys: renaming them breaks in-flight retries
RESULTS_KEY = "maxwell_array_results"


def stored_indices(value: object) -> list[int]:
    """The failed indices as the store gave them back (anything else, e.g. an older format: none)."""
    if not isinstance(value, list):
        return []
    return [i for i in value if isinstance(i, int) and not isinstance(i, bool) and i >= 0]


def stored_results(value: object) -> dict[str, dict[str, Any]]:
    """The per-index record as the store gave it back (anything else: empty)."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and k.isdigit() and isinstance(v, dict)}


def narrowed_array(spec: str, failed: list[int]) -> str:
    """`spec` cut down to the `failed` indices, its throttle (``%N``) kept: ('0-99%10', [3, 4, 5, 9]) -> '3-5,9%10'."""
    _, percent, throttle = spec.partition("%")
    runs: list[list[int]] = []
    for index in sorted(set(failed)):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    body = ",".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)
    return f"{body}{percent}{throttle}"


def merged_results(
    previous: dict[str, dict[str, Any]] | None,
    indices: list[int],
    failed_tasks: list[dict[str, Any]],
    try_number: int,
    job_id: int,
) -> dict[str, dict[str, Any]]:
    """Per index (a string: it is JSON), the try that decided it: this try's for the `indices` it ran
    (failed as `failed_tasks` says, else COMPLETED with exit code 0), earlier tries' for the rest."""
    results = dict(previous or {})
    failures = {int(t["index"]): t for t in failed_tasks if t.get("index") is not None}
    for index in indices:
        failure = failures.get(index)
        results[str(index)] = {
            "state": failure["state"] if failure else "COMPLETED",
            "exit_code": failure["exit_code"] if failure else 0,
            "try": try_number,
            "job_id": job_id,
        }
    return dict(sorted(results.items(), key=lambda item: int(item[0])))


def narrow_to_failed_indices(
    store: Any, array: str | None, rerun_failed_indices: bool, log: TaskLog | None = None
) -> str | None:
    """The array this try submits: only the indices the last try left failed, when there were any and
    reruns are on; else `array` as it is. `log` says so (the worker does; on resuming from the triggerer,
    where the resumed operator is a new instance, it was said already)."""
    if not (array and rerun_failed_indices and store is not None):
        return array
    failed = stored_indices(store.get(FAILED_INDICES_KEY))
    if not failed:
        return array
    narrowed = narrowed_array(array, failed)
    if log is not None:
        log.info("Rerunning only the array tasks that failed in the last try: %s (of %s)", narrowed, array)
    return narrowed


def record_array_try(
    store: Any, array: str | None, rerun_failed_indices: bool, summary: dict[str, Any], try_number: int
) -> None:
    """Keep this try's per-index results in `store` for the next try, and the merged record of all tries
    in the `summary` (under ``array_results``)."""
    if not (array and store is not None and "array_tasks" in summary):
        return
    failed = summary.get("failed_tasks", [])
    results = merged_results(
        stored_results(store.get(RESULTS_KEY)) if rerun_failed_indices else None,
        array_indices(array),
        failed,
        try_number,
        int(summary["job_id"]),
    )
    store.set(RESULTS_KEY, results)
    store.set(FAILED_INDICES_KEY, [int(t["index"]) for t in failed if t.get("index") is not None])
    summary["array_results"] = results
