"""Property tests: the job parser takes whatever a server (or a proxy, or a bug) sends.

For every API version, job documents are generated from that version's OpenAPI schema as a Slurm
release serves it (spec-shaped; the /openapi/v3 documents recorded in tests/data by `make record`),
and from the same keys with hostile values (wrong types, nulls, huge or negative numbers, nested
junk). The parser must always return a SlurmJob, never raise: a watcher that crashes on one odd
record would leave a task waiting or failing for no reason.
"""

from __future__ import annotations

import gzip
import json
import math
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_maxwell.slurm.job import (
    MAX_JOB_ID,
    SlurmJob,
    UnreadableJobRecord,
    parse_accounting_job,
    parse_accounting_jobs,
    parse_controller_job,
    parse_controller_jobs,
)
from airflow_provider_maxwell.slurm.states import JobState
from tests.paths import DATA

# (version, the release whose own OpenAPI document describes it: one document holds every version it serves)
VERSIONS = [
    ("v0.0.38", "22.05.8"),
    ("v0.0.40", "24.11.5"),
    ("v0.0.41", "24.11.5"),
    *[(f"v0.0.{n}", "26.05.5") for n in range(42, 46)],
]
HOSTILE_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
HOSTILE = st.recursive(
    HOSTILE_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def document(release: str) -> dict[str, Any]:
    """GET /openapi/v3 of a Slurm release, as recorded (a missing file fails the test)."""
    with gzip.open(DATA / f"slurm-{release}" / "openapi-v3.json.gz") as recorded:
        return json.load(recorded)


def schemas(release: str) -> dict[str, Any]:
    return document(release)["components"]["schemas"]


def resolve(release: str, schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas(release)[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def job_schema(release: str, service: str, version: str) -> dict[str, Any]:
    """One job's schema in GET /<service>/<version>/job/{job_id}'s answer (a $ref; inline in 24.11's v0.0.41)."""
    get = document(release)["paths"][f"/{service}/{version}/job/{{job_id}}"]["get"]
    answer = resolve(release, get["responses"]["200"]["content"]["application/json"]["schema"])
    job = resolve(release, resolve(release, answer["properties"]["jobs"])["items"])
    # the documents the parsers read: slurmctld's say job_state, accounting's say state
    assert ("job_state" if service == "slurm" else "state") in job["properties"], (release, service, version)
    return job


def from_schema(release: str, schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A small JSON-schema-to-hypothesis translation: enough of OpenAPI for Slurm's job documents."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: from_schema(release, schemas(release)[name], depth + 1))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if depth > 3:
        return st.none()
    if kind == "object" or "properties" in schema:
        props = {k: from_schema(release, v, depth + 1) for k, v in (schema.get("properties") or {}).items()}
        return st.fixed_dictionaries({}, optional=props)
    if kind == "array":
        return st.lists(from_schema(release, schema.get("items") or {}, depth + 1), max_size=3)
    if kind == "integer":
        return st.integers(min_value=-(2**63), max_value=2**64)
    if kind == "number":
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.text(max_size=12) | st.sampled_from([s.value for s in JobState])
    return HOSTILE


# The keys the parser reads: hostile values go there besides the keys the documents declare.
READ_BY_PARSER = {
    "controller": ["job_id", "name", "user_name", "partition", "job_state", "state_reason", "exit_code", "submit_time",
                   "start_time", "end_time", "nodes", "comment", "current_working_directory", "standard_output",
                   "standard_error", "array_job_id", "array_task_id"],
    "accounting": ["job_id", "name", "user", "partition", "state", "exit_code", "time", "nodes", "comment",
                   "working_directory", "stdout", "stderr", "stdout_expanded", "stderr_expanded", "array"],
}  # fmt: skip


def hostile(kind: str, release: str, service: str, version: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = set(READ_BY_PARSER[kind]) | set(job_schema(release, service, version)["properties"])
    return st.dictionaries(st.sampled_from(sorted(keys)), HOSTILE, max_size=12)


def expected_job_id(doc: dict[str, Any]) -> int | None:
    """The job id a record names, read independently of the parser: an int (or ASCII digits) from 1 to
    2**32 - 1, plain or in a set {set, number} struct; None for anything else."""
    value = doc.get("job_id")
    if isinstance(value, dict):
        value = value.get("number") if value.get("set", True) and not value.get("infinite", False) else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) < 30:
        value = int(value.strip())
    return value if type(value) is int and 0 < value <= MAX_JOB_ID else None


def check_record(parse: Any, doc: dict[str, Any]) -> None:
    """One record: its own job id parsed, or UnreadableJobRecord exactly when it names none; and the list
    parser keeps exactly the readable records."""
    expected = expected_job_id(doc)
    many = parse_controller_jobs if parse is parse_controller_job else parse_accounting_jobs
    assert [j.job_id for j in many([doc, "junk", None, 5])] == ([expected] if expected else [])
    if expected is None:
        with pytest.raises(UnreadableJobRecord):
            parse(doc)
        return
    job = parse(doc)
    assert job.job_id == expected
    check(job)


def check(job: Any) -> None:
    assert isinstance(job, SlurmJob)
    assert isinstance(job.job_id, int) and isinstance(job.state, JobState)
    assert job.exit_code is None or isinstance(job.exit_code, int)
    if job.end_time is not None:
        assert math.isfinite(job.end_time.timestamp())
    job.output_path()  # derived values must not raise either


@pytest.mark.parametrize(("version", "release"), VERSIONS, ids=[v[0] for v in VERSIONS])
def test_spec_shaped_job_documents_always_parse(version, release):
    @PROPERTY_SETTINGS
    @given(
        controller=from_schema(release, job_schema(release, "slurm", version)),
        accounting=from_schema(release, job_schema(release, "slurmdb", version)),
        reliable=st.booleans(),
        job_id=st.none() | st.integers(min_value=1, max_value=MAX_JOB_ID),
    )
    def run(controller: dict[str, Any], accounting: dict[str, Any], reliable: bool, job_id: int | None) -> None:
        if job_id is not None:  # most generated ids are out of range: half the records get a real one
            controller, accounting = {**controller, "job_id": job_id}, {**accounting, "job_id": job_id}
        check_record(parse_controller_job, controller)
        check_record(parse_accounting_job, accounting)
        if expected_job_id(accounting):
            check(parse_accounting_job(accounting, exit_code_reliable=reliable))

    run()


@pytest.mark.parametrize(("version", "release"), VERSIONS, ids=[v[0] for v in VERSIONS])
def test_hostile_job_documents_never_crash_the_parser(version, release):
    @PROPERTY_SETTINGS
    @given(
        controller=hostile("controller", release, "slurm", version),
        accounting=hostile("accounting", release, "slurmdb", version),
    )
    def run(controller: dict[str, Any], accounting: dict[str, Any]) -> None:
        check_record(parse_controller_job, controller)
        check_record(parse_accounting_job, accounting)

    run()
