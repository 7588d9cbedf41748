"""Array retries: which indices a retry submits, and the record merged over tries (array_retry.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_provider_maxwell.array_retry import (
    FAILED_INDICES_KEY,
    RESULTS_KEY,
    merged_results,
    narrow_to_failed_indices,
    narrowed_array,
    record_array_try,
    stored_indices,
    stored_results,
)
from airflow_provider_maxwell.watch import array_indices, array_size


@pytest.mark.parametrize(
    ("spec", "failed", "narrowed"),
    [
        ("0-99%10", [3, 4, 5, 9], "3-5,9%10"),
        ("0-4", [3, 1], "1,3"),
        ("1,3,5-7", [7, 6, 5], "5-7"),
        ("0-10:2", [10], "10"),
    ],
)
def test_a_retry_submits_only_the_failed_indices_with_the_throttle_kept(spec, failed, narrowed):
    assert narrowed_array(spec, failed) == narrowed
    assert array_indices(narrowed) == sorted(set(failed))


def test_array_indices_follow_slurms_syntax():
    assert array_indices("1,3,5-7%2") == [1, 3, 5, 6, 7]
    assert array_indices("0-10:5") == [0, 5, 10]
    assert array_size("0-99%10") == 100 and array_size(None) == 1 and array_indices(None) == []


def test_the_merged_record_keeps_each_index_from_the_try_that_decided_it():
    first = merged_results(None, [0, 1, 2], [{"index": 1, "state": "FAILED", "exit_code": 5}], 1, 100)
    assert first == {
        "0": {"state": "COMPLETED", "exit_code": 0, "try": 1, "job_id": 100},
        "1": {"state": "FAILED", "exit_code": 5, "try": 1, "job_id": 100},
        "2": {"state": "COMPLETED", "exit_code": 0, "try": 1, "job_id": 100},
    }
    second = merged_results(first, [1], [], 2, 107)
    assert second["1"] == {"state": "COMPLETED", "exit_code": 0, "try": 2, "job_id": 107}
    assert second["0"] == first["0"] and list(second) == ["0", "1", "2"]
    # In index order, as numbers: task 2 before task 10, whatever order the tries decided them in.
    assert list(merged_results({"10": first["0"]}, [2], [], 3, 108)) == ["2", "10"]


def test_what_the_store_gives_back_is_checked_before_use():
    assert stored_indices([1, "2", True, -1, 3]) == [1, 3]
    assert stored_indices({"1": 2}) == [] and stored_indices(None) == []
    assert stored_results({"1": {"state": "FAILED"}, "x": {}, "2": 5}) == {"1": {"state": "FAILED"}}
    assert stored_results([1]) == {}


class Store(dict):  # Airflow's task state store, as these functions use it
    def set(self, key: str, value: Any) -> None:
        self[key] = value


def test_a_retry_narrows_to_what_the_store_says_failed_and_says_so(caplog):
    store = Store({FAILED_INDICES_KEY: [3, 4, 9]})
    with caplog.at_level(logging.INFO):
        assert narrow_to_failed_indices(store, "0-9%2", True, logging.getLogger("t")) == "3-4,9%2"
    assert "Rerunning only the array tasks that failed in the last try: 3-4,9%2 (of 0-9%2)" in caplog.text
    assert narrow_to_failed_indices(store, "0-9%2", False) == "0-9%2"  # reruns switched off
    assert narrow_to_failed_indices(None, "0-9%2", True) == "0-9%2"  # no store (Airflow before 3.3)
    assert narrow_to_failed_indices(Store(), "0-9%2", True) == "0-9%2"  # nothing failed
    assert narrow_to_failed_indices(store, None, True) is None  # not an array


def test_a_try_of_an_array_is_recorded_for_the_next_and_in_the_summary():
    store = Store({RESULTS_KEY: {"0": {"state": "COMPLETED", "exit_code": 0, "try": 1, "job_id": 7}}})
    summary: dict[str, Any] = {
        "job_id": 8,
        "array_tasks": 2,
        "failed_tasks": [{"index": 2, "state": "FAILED", "exit_code": 3}],
    }
    record_array_try(store, "1-2", True, summary, 2)
    assert store[FAILED_INDICES_KEY] == [2]
    assert (
        summary["array_results"]
        == store[RESULTS_KEY]
        == {
            "0": {"state": "COMPLETED", "exit_code": 0, "try": 1, "job_id": 7},
            "1": {"state": "COMPLETED", "exit_code": 0, "try": 2, "job_id": 8},
            "2": {"state": "FAILED", "exit_code": 3, "try": 2, "job_id": 8},
        }
    )
    record_array_try(store, "1-2", False, summary, 3)  # reruns off: earlier tries are not merged in
    assert set(store[RESULTS_KEY]) == {"1", "2"}
    untouched = Store()
    record_array_try(untouched, "1-2", True, {"job_id": 8}, 2)  # a summary without array tasks
    assert untouched == {}
