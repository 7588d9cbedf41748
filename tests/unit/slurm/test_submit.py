"""Bad input is refused before anything is sent, naming the field and the fix; good input takes each
version's shape. Contract: every body validates against that version's OpenAPI schema, as the Slurm
releases serve it (their /openapi/v3 documents, recorded in tests/data by `make record`)."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from functools import cache
from typing import Any
from urllib.parse import urlencode

import jsonschema
import pytest

from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.slurm.dialects import DIALECTS, SUPPORTED_VERSIONS, negotiate, served_versions
from airflow_provider_maxwell.slurm.submit import build_submit_body
from tests.paths import DATA

# The release whose own OpenAPI document describes each version (the newest local one serving it).
SERVED_BY = {
    "v0.0.38": "22.05.8",
    "v0.0.40": "24.11.5",
    "v0.0.41": "24.11.5",
    "v0.0.42": "26.05.5",
    "v0.0.43": "26.05.5",
    "v0.0.44": "26.05.5",
    "v0.0.45": "26.05.5",
}
SCRIPT = "#!/bin/bash\necho hi\n"
FULL_FIELDS: dict[str, Any] = dict(
    name="nightly.reduce",
    partition="allcpu",
    time_limit=timedelta(hours=2),
    environment={"RUN": "42"},
    current_working_directory="/beegfs/run42",
    standard_output="/beegfs/run42/%j.out",
    standard_error="/beegfs/run42/%j.err",
    nodes=2,
    ntasks=4,
    cpus_per_task=2,
    memory_per_node="4G",
    array="0-99%10",
    account="beamtime",
    qos="normal",
    constraints="INTEL",
    dependency="afterok:1",
    comment="airflow:dag=x",
)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_each_version_gets_its_own_shape(version):
    dialect = DIALECTS[version]
    body = build_submit_body(dialect, SCRIPT, FULL_FIELDS, default_cwd="/home/u")
    job = body["job"]
    if version == "v0.0.38":
        assert body["script"] == SCRIPT and "script" not in job
        assert job["environment"] == {"PATH": "/usr/local/bin:/usr/bin:/bin", "RUN": "42"}
        assert job["time_limit"] == 120 and job["memory_per_node"] == 4096 and job["nodes"] == [2, 2]
    else:
        assert job["script"] == SCRIPT and "script" not in body
        assert job["environment"] == ["PATH=/usr/local/bin:/usr/bin:/bin", "RUN=42"]
        assert job["time_limit"] == {"set": True, "infinite": False, "number": 120}
        assert job["memory_per_node"]["number"] == 4096 and job["nodes"] == "2"
    assert job["tasks"] == 4 and job["current_working_directory"] == "/beegfs/run42"


def test_defaults_always_send_path_and_a_working_directory():
    job = build_submit_body(DIALECTS["v0.0.44"], SCRIPT, {}, default_cwd="/home/u")["job"]
    assert job["current_working_directory"] == "/home/u" and job["environment"] == ["PATH=/usr/local/bin:/usr/bin:/bin"]


@cache
def served_document(release: str) -> dict[str, Any]:
    """GET /openapi/v3 of a Slurm release, as recorded (a missing file fails the test)."""
    with gzip.open(DATA / f"slurm-{release}" / "openapi-v3.json.gz") as recorded:
        return json.load(recorded)


def test_every_supported_version_has_a_recorded_openapi_document():
    assert set(SERVED_BY) == set(SUPPORTED_VERSIONS)
    for version, release in SERVED_BY.items():
        assert version in served_versions(served_document(release))


def _validator(version: str):
    """The served submit schema made strict: Slurm's own accepts {} and any unknown key, so it could not
    see a missing script or a misspelled field. Here no key outside the schema passes, and the script,
    environment and working directory (which slurmctld needs in practice) are required where they go."""
    import copy

    spec = served_document(SERVED_BY[version])
    submit = spec["paths"][f"/slurm/{version}/job/submit"]
    schema = copy.deepcopy(submit["post"]["requestBody"]["content"]["application/json"]["schema"])
    components = copy.deepcopy(spec["components"])

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        return components["schemas"][node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node

    request = resolve(schema)
    job = resolve(request["properties"]["job"])
    for strict in (request, job):
        strict["additionalProperties"] = False
    job_needs = ["environment", "current_working_directory"]
    if DIALECTS[version].script_in_job:
        job["required"] = [*job.get("required", []), "script", *job_needs]
        request["required"] = ["job"]
    else:
        job["required"] = [*job.get("required", []), *job_needs]
        request["required"] = ["job", "script"]
    return jsonschema.Draft4Validator({**schema, "components": components})


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_the_spec_check_sees_a_missing_script_and_a_misspelled_field(version):
    validator = _validator(version)
    body = build_submit_body(DIALECTS[version], SCRIPT, {"partition": "maxcpu"}, default_cwd="/home/u")
    misspelled = {**body, "job": {**body["job"], "partiton": body["job"].pop("partition")}}
    assert any("partiton" in e.message for e in validator.iter_errors(misspelled))
    scriptless = {k: v for k, v in body.items() if k != "script"}
    scriptless["job"] = {k: v for k, v in body["job"].items() if k != "script"}
    assert any("script" in e.message for e in validator.iter_errors(scriptless))


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize(
    "fields", [{}, FULL_FIELDS, {"time_limit": 1, "environment": {"A": "b"}}], ids=["minimal", "full", "small"]
)
def test_request_bodies_validate_against_the_served_spec(version, fields):
    validator = _validator(version)
    body = build_submit_body(DIALECTS[version], SCRIPT, fields, default_cwd="/home/u")
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"time_limit": -5}, "time_limit"),
        ({"time_limit": 10**9}, "time_limit"),
        ({"time_limit": "2h"}, "time_limit"),
        ({"environment": {"N": 3}}, "environment['N']"),
        ({"environment": ["A=b"]}, "environment"),
        ({"memory_per_node": "lots"}, "memory_per_node"),
        ({"nodes": 0}, "nodes"),
        ({"ntasks": -1}, "ntasks"),
        ({"partition": ""}, "partition"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(fields, named):
    with pytest.raises(MaxwellConfigError) as failure:
        build_submit_body(DIALECTS["v0.0.44"], SCRIPT, fields, default_cwd="/home/u")
    assert str(failure.value).startswith(named)


@pytest.mark.parametrize("script", ["", "   \n", "echo no shebang\n"])
def test_bad_scripts_are_refused(script):
    with pytest.raises(MaxwellConfigError, match="script"):
        build_submit_body(DIALECTS["v0.0.44"], script, {}, default_cwd="/home/u")


def test_negotiation_picks_the_newest_common_version():
    assert negotiate({"v0.0.40", "v0.0.41", "v0.0.42"}).version == "v0.0.42"
    assert negotiate({"v0.0.36", "v0.0.37", "v0.0.38"}).version == "v0.0.38"
    assert negotiate({"v0.0.42", "v0.0.46"}).version == "v0.0.42"  # a future version we do not know yet
    assert negotiate({"v0.0.45"}, "v0.0.40").version == "v0.0.40"  # explicit choice skips discovery
    with pytest.raises(MaxwellConfigError, match="no common version"):
        negotiate({"v0.0.36", "v0.0.37"})


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("22.05.8", {"v0.0.36", "v0.0.37", "v0.0.38"}),
        ("24.11.5", {"v0.0.40", "v0.0.41", "v0.0.42"}),
        ("26.05.5", {"v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"}),
    ],
)
def test_served_versions_from_recorded_openapi_documents(release, expected):
    assert served_versions(served_document(release)) == expected


def config(**kw: Any) -> MaxwellConnectionConfig:
    args: dict[str, Any] = {
        "host": "https://max-slurm-rest.desy.de/sapi",
        "login": "alice",
        "password": "pt",
        "extra": {},
    }
    args.update(kw)
    return MaxwellConnectionConfig.from_connection("maxwell_x", **args)


def test_a_maxwell_connection_needs_only_host_login_password():
    c = config()
    assert (c.auth_method, c.portal_url, c.token_lifespan, c.verify) == (
        "portal",
        "https://max-slurm-rest.desy.de/reservation",
        86400,
        True,
    )
    assert (c.keycloak_url, c.keycloak_realm, c.keycloak_client_id, c.keycloak_scope) == (
        "https://keycloak.desy.de/auth",
        "production",
        "desy-public",
        "openid sun",
    )
    assert "pt" not in repr(c)


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"host": "max-slurm-rest.desy.de"}, "host"),
        ({"login": ""}, "login"),
        ({"password": None}, "password"),
        ({"extra": {"auth_method": "kerberos"}}, "extra.auth_method"),
        ({"extra": {"jwt_lifespan": 90000}}, "extra.jwt_lifespan"),
        ({"extra": {"jwt_lifespan": "a day"}}, "extra.jwt_lifespan"),
        ({"extra": {"jwt_lifespan": "***"}}, "extra.jwt_lifespan"),  # the mask, saved as text by an old form
        ({"extra": {"auth_method": "signing_key"}, "password": None}, "extra.signing_secret"),
        ({"extra": {"auth_method": "signing_key", "signing_secret": "%%%"}}, "extra.signing_secret"),
        ({"extra": {"api_version": "v0.0.39"}}, "extra.api_version"),
        ({"extra": {"verify": "/no/such/ca.pem"}}, "extra.verify"),
        ({"extra": {"ca_bundle": "/no/such/ca.pem"}}, "extra.ca_bundle"),
        ({"extra": {"job_url_template": "https://web.example/job/{id}"}}, "extra.job_url_template"),
        ({"extra": {"job_url_template": "https://web.example/jobs"}}, "extra.job_url_template"),
        ({"extra": {"timeout": -1}}, "extra.timeout"),
        ({"extra": {"auth_metod": "portal"}}, "extra"),
    ],
)
def test_invalid_connections_name_the_connection_the_field_and_the_fix(kw, named):
    with pytest.raises(MaxwellConfigError) as failure:
        config(**kw)
    message = str(failure.value)
    assert message.startswith(f"Maxwell connection 'maxwell_x': {named} ")
    problem, _, fix = message.partition(". ")
    assert problem and len(fix) > 10  # a problem, then a fix


def test_the_pollers_queries_ask_by_id_in_chunks_that_keep_urls_under_8_kb():
    chunks = DIALECTS["v0.0.38"].accounting_by_id("alice", [*range(1, 1201), 5, 5])
    assert [len(c["step"].split(",")) for c in chunks] == [500, 500, 200]  # deduplicated, bounded URLs
    assert all(c["skip_steps"] == "true" and "users" not in c for c in chunks)  # 22.05 cannot filter by user
    (by_user,) = DIALECTS["v0.0.40"].accounting_by_id("alice", [3, 1, 2])  # 24.11 refuses "1,2,3" (422)
    assert by_user == {"step": ["1", "2", "3"], "skip_steps": "true", "users": "alice"}
    ids = range(10_000_000, 10_001_000)  # 8-digit ids as on Maxwell
    queries = DIALECTS["v0.0.42"].job_state_queries([*ids, 10_000_000])
    assert [i for q in queries for i in q["job_id"]] == [str(i) for i in ids]
    assert all(len(urlencode(q, doseq=True)) < 6100 for q in queries) and len(queries) == 3
    assert not DIALECTS["v0.0.41"].controller_states_by_id and DIALECTS["v0.0.42"].controller_states_by_id
