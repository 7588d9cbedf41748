"""What an answer of slurmrestd means for the task, at the edges of each verdict: a held submission is a
success only when the answer is no HTTP error, a cancel of several jobs reports every job's failure wherever
it stands in the list, and each of Slurm's error fields is read under every name a release uses (issue 18)."""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_maxwell.exceptions import SlurmError
from airflow_provider_maxwell.slurm.answers import (
    Answer,
    is_auth_failure,
    is_rate_limited,
    is_transient,
    only_held,
    parse_errors,
    read_answer,
    signal_failures,
)


def answer(status: int, document: dict[str, Any]) -> Answer:
    return read_answer(status, json.dumps(document).encode())


HELD = {"error_code": 2042, "error": "Job is in held state, pending scheduler release"}


def test_a_held_submission_is_a_success_only_below_http_400():
    assert only_held(answer(200, {"errors": [HELD], "job_id": 5}))
    assert only_held(answer(399, {"errors": [HELD], "job_id": 5}))
    assert not only_held(answer(400, {"errors": [HELD], "job_id": 5}))
    assert not only_held(answer(500, {"errors": [HELD]}))


def test_a_held_submission_is_a_success_only_when_held_is_its_only_error():
    assert not only_held(answer(200, {"errors": [], "job_id": 5}))
    assert not only_held(answer(200, {"errors": [HELD, {"error_code": 2, "error": "no"}], "job_id": 5}))


def test_a_cancel_reports_failures_listed_after_an_ended_job_or_an_entry_without_error():
    failures = signal_failures(
        answer(
            200,
            {
                "status": [
                    {"job_id": 1, "error": {"code": 2021, "message": "already done"}},
                    {"job_id": 2, "error": {"code": 0}},
                    {"job_id": 3},
                    "junk",
                    {"job_id": 4, "error": "not a mapping"},
                    {"job_id": 6, "error": {"code": 2002, "message": "Access denied", "string": "Access denied"}},
                ]
            },
        )
    )
    assert failures == [SlurmError(code=2002, message="Access denied", description="Access denied")]


def test_a_cancel_failure_without_message_quotes_slurms_error_string():
    failures = signal_failures(answer(200, {"status": [{"error": {"code": 2017, "string": "Invalid job id"}}]}))
    assert failures == [SlurmError(code=2017, message="Invalid job id", description="Invalid job id")]
    assert signal_failures(answer(200, {"status": {"error": {"code": 2017}}})) == []  # not a list: nothing known


def test_a_cancel_failure_code_given_as_text_is_still_a_failure_and_an_ended_job_still_is_not():
    entries = [{"error": {"code": "2002", "string": "Access denied"}}, {"error": {"code": "2021"}}]
    failures = signal_failures(answer(200, {"status": [*entries, {"error": {"code": True}}]}))
    assert failures == [SlurmError(code=2002, message="Access denied", description="Access denied")]


def test_each_error_field_is_read_under_every_name_slurm_gives_it():
    assert parse_errors({"errors": [{"error_number": 2017}]})[0].code == 2017
    assert parse_errors({"errors": [{"error_code": 1007}]})[0].code == 1007
    assert parse_errors({"errors": [{"errno": 5005}]})[0].code == 5005
    # error_number wins over error_code, which wins over errno
    assert parse_errors({"errors": [{"error_number": 1, "error_code": 2, "errno": 3}]})[0].code == 1
    assert parse_errors({"errors": [{"error_code": 2, "errno": 3}]})[0].code == 2


def test_an_errors_message_description_and_source_are_slurms_texts_on_one_line():
    (error,) = parse_errors(
        {"errors": [{"error": "Invalid\n job id", "description": "no such\tjob", "source": " slurmctld\n"}]}
    )
    assert error == SlurmError(code=None, message="Invalid job id", description="no such job", source="slurmctld")
    (only_description,) = parse_errors({"errors": [{"description": "Unable to connect to database"}]})
    assert only_description.message == only_description.description == "Unable to connect to database"
    (nothing,) = parse_errors({"errors": [{"error": 5, "description": None, "source": ["x"]}]})
    assert (nothing.message, nothing.description, nothing.source) == ("", "", "")


def test_slurms_error_numbers_are_read_across_their_32_bit_range_and_no_further():
    def code(value: Any) -> int | None:
        (error,) = parse_errors({"errors": [{"error_number": value, "error": "x"}]})
        return error.code

    assert code(-(2**31)) == -(2**31) and code("-2147483648") == -(2**31)
    assert code(2**32 - 1) == 2**32 - 1 and code("4294967295") == 2**32 - 1
    assert code(-(2**31) - 1) is None and code("-2147483649") is None
    assert code(2**32) is None and code("4294967296") is None
    assert code(-63) == -63  # a negative code other than Slurm's generic -1
    assert code("9" * 5000) is None  # too long for int(): no code, not Python's ValueError
    assert code("\u00b2") is None and code(True) is None and code(2.0) is None


def test_slurm_saying_rate_limit_or_back_off_in_any_case_means_retry_later():
    def told(**error: Any) -> Answer:
        return answer(500, {"meta": {}, "errors": [{"error_number": -1, **error}]})

    for busy in (
        told(error="Rate Limit exceeded"),
        told(error="Unspecified error", description="slurmctld asked us to Back Off"),
        told(error_number=1804),
        answer(502, {"meta": {}, "errors": [{"error_number": 1805}]}),
    ):
        assert is_rate_limited(busy) and is_transient(busy)
    plain = told(error="Unspecified error", description="Invalid job id")
    assert not is_rate_limited(plain) and not is_transient(plain)


def test_a_refused_token_is_http_401_403_or_511_or_slurms_auth_error_codes():
    for status in (401, 403, 511):
        assert is_auth_failure(read_answer(status, b""))
    assert is_auth_failure(answer(500, {"meta": {}, "errors": [{"error_number": 1007}]}))
    assert is_auth_failure(answer(200, {"meta": {}, "errors": [{"error_number": 5005}]}))
    for status in (400, 404, 500, 510, 512):
        assert not is_auth_failure(read_answer(status, b'{"meta": {}, "errors": [{"error_number": -1}]}'))
