"""Property tests: the job parser takes whatever a server (or a proxy, or a bug) sends.

For every API version, job documents are generated from the official OpenAPI schema of that
version (spec-shaped), and from the same keys with hostile values (wrong types, nulls, huge or
negative numbers, nested junk). The parser must always return a SlurmJob, never raise: a watcher
that crashes on one odd record would leave a task waiting or failing for no reason.
"""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_maxwell.slurm.job import SlurmJob, parse_accounting_job, parse_controller_job
from airflow_provider_maxwell.slurm.states import JobState

from .conftest import SHARED

# (version, OpenAPI file, controller job schema, accounting file, accounting job schema)
VERSIONS = [
    ("v0.0.38", "v0.0.38.json", "v0.0.38_job_response_properties", "dbv0.0.38.json", "dbv0.0.38_job"),
    *[(f"v0.0.{n}", f"v0.0.{n}.json", f"v0.0.{n}_job_info", f"v0.0.{n}.json", f"v0.0.{n}_job") for n in range(40, 46)],
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
def schemas(filename: str) -> dict[str, Any]:
    return json.loads((SHARED / "slurm-openapi" / filename).read_text())["components"]["schemas"]


def from_schema(filename: str, schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A small JSON-schema-to-hypothesis translation: enough of OpenAPI for Slurm's job documents."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: from_schema(filename, schemas(filename)[name], depth + 1))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if depth > 3:
        return st.none()
    if kind == "object" or "properties" in schema:
        props = {k: from_schema(filename, v, depth + 1) for k, v in (schema.get("properties") or {}).items()}
        return st.fixed_dictionaries({}, optional=props)
    if kind == "array":
        return st.lists(from_schema(filename, schema.get("items") or {}, depth + 1), max_size=3)
    if kind == "integer":
        return st.integers(min_value=-(2**63), max_value=2**64)
    if kind == "number":
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.text(max_size=12) | st.sampled_from([s.value for s in JobState])
    return HOSTILE


# The keys the parser reads: hostile values go there even where the official documents are absent.
READ_BY_PARSER = {
    "controller": ["job_id", "name", "user_name", "partition", "job_state", "state_reason", "exit_code", "submit_time",
                   "start_time", "end_time", "nodes", "comment", "current_working_directory", "standard_output",
                   "standard_error", "array_job_id", "array_task_id"],
    "accounting": ["job_id", "name", "user", "partition", "state", "exit_code", "time", "nodes", "comment",
                   "working_directory", "stdout", "stderr", "stdout_expanded", "stderr_expanded", "array"],
}  # fmt: skip


def spec_available(filename: str) -> bool:
    return (SHARED / "slurm-openapi" / filename).exists()


def hostile(kind: str, filename: str, schema_name: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = set(READ_BY_PARSER[kind])
    if spec_available(filename):
        keys |= set(schemas(filename)[schema_name].get("properties") or {})
    return st.dictionaries(st.sampled_from(sorted(keys)), HOSTILE, max_size=12)


def check(job: Any) -> None:
    assert isinstance(job, SlurmJob)
    assert isinstance(job.job_id, int) and isinstance(job.state, JobState)
    assert job.exit_code is None or isinstance(job.exit_code, int)
    if job.end_time is not None:
        assert math.isfinite(job.end_time.timestamp())
    job.output_path()  # derived values must not raise either


@pytest.mark.parametrize(
    ("version", "ctld_file", "ctld_schema", "db_file", "db_schema"), VERSIONS, ids=[v[0] for v in VERSIONS]
)
def test_spec_shaped_job_documents_always_parse(version, ctld_file, ctld_schema, db_file, db_schema):
    if not (spec_available(ctld_file) and spec_available(db_file)):
        pytest.skip(f"official OpenAPI documents of {version} not found under {SHARED / 'slurm-openapi'}")

    @PROPERTY_SETTINGS
    @given(
        controller=from_schema(ctld_file, schemas(ctld_file)[ctld_schema]),
        accounting=from_schema(db_file, schemas(db_file)[db_schema]),
        reliable=st.booleans(),
    )
    def run(controller: dict[str, Any], accounting: dict[str, Any], reliable: bool) -> None:
        check(parse_controller_job(controller))
        check(parse_accounting_job(accounting, exit_code_reliable=reliable))

    run()


@pytest.mark.parametrize(
    ("version", "ctld_file", "ctld_schema", "db_file", "db_schema"), VERSIONS, ids=[v[0] for v in VERSIONS]
)
def test_hostile_job_documents_never_crash_the_parser(version, ctld_file, ctld_schema, db_file, db_schema):
    @PROPERTY_SETTINGS
    @given(
        controller=hostile("controller", ctld_file, ctld_schema), accounting=hostile("accounting", db_file, db_schema)
    )
    def run(controller: dict[str, Any], accounting: dict[str, Any]) -> None:
        check(parse_controller_job(controller))
        check(parse_accounting_job(accounting))

    run()
