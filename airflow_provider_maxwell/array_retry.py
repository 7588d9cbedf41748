"""Array retries that rerun only the failed indices: what a try of an array task submits, and the
merged per-index record of all tries.

When an array job's try ends with some tasks failed, the next try of the Airflow task submits the
same script with `array` narrowed to those indices. Between tries the facts live in Airflow's task
state store (it outlives a try; XComs do not): the failed indices of the last try, and per index the
final state, exit code, try and job that decided it.
"""

from __future__ import annotations

from typing import Any

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
