"""What a user reads when a sensor or operator is handed something that is no Slurm job id (often a rendered
XCom): the value itself when it is short enough to read, else what kind of value it was, and always where
to look (issue 18: only short values' messages were asserted)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.slurm.job import parse_job_id

FIX = "check the value or template that gives it (e.g. the submitting task's XCom)"


def refusal(value: Any) -> str:
    with pytest.raises(MaxwellConfigError) as failure:
        parse_job_id(value)
    return str(failure.value)


def test_a_value_of_up_to_40_characters_is_quoted():
    forty = "x" * 38  # quoted: 40 characters
    assert refusal(forty) == f"job_id must be a Slurm job id (a positive whole number), not '{forty}': {FIX}"
    assert refusal(1.5) == f"job_id must be a Slurm job id (a positive whole number), not 1.5: {FIX}"
    assert refusal(None) == f"job_id must be a Slurm job id (a positive whole number), not None: {FIX}"
    for text in ("X7", "4294967296", "0x1F", "7.0"):  # no letters, no id beyond 32 bits, only decimal digits
        assert refusal(text) == f"job_id must be a Slurm job id (a positive whole number), not {text!r}: {FIX}"
    assert parse_job_id("4294967295") == 4294967295 and parse_job_id("007") == 7
    assert refusal(-(2**40)) == f"job_id must be a Slurm job id (a positive whole number), not -1099511627776: {FIX}"


@pytest.mark.parametrize(
    "value, kind",
    [
        ("x" * 39, "str"),  # 41 characters quoted
        ("1" * 41, "str"),  # digits, but far beyond a 32-bit id
        (10**40, "int"),
        (10**5000, "int"),  # repr() itself refuses this one
        (-(10**5000), "int"),
        ([1, 2], "list"),
        ({"job_id": 7}, "dict"),
        (b"42", "bytes"),
    ],
    ids=["41-characters", "41-digits", "10**40", "10**5000", "-10**5000", "list", "dict", "bytes"],
)
def test_a_longer_or_odd_value_is_named_by_its_kind(value: Any, kind: str):
    assert refusal(value) == (
        f"job_id must be a Slurm job id (a positive whole number), not a {kind} of that size or shape: {FIX}"
    )
