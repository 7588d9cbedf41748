"""Array retries: which indices a retry submits, and the record merged over tries (array_retry.py)."""

from __future__ import annotations

import pytest

from airflow_provider_maxwell.array_retry import merged_results, narrowed_array, stored_indices, stored_results
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


def test_what_the_store_gives_back_is_checked_before_use():
    assert stored_indices([1, "2", True, -1, 3]) == [1, 3]
    assert stored_indices({"1": 2}) == [] and stored_indices(None) == []
    assert stored_results({"1": {"state": "FAILED"}, "x": {}, "2": 5}) == {"1": {"state": "FAILED"}}
    assert stored_results([1]) == {}
