"""Property tests of the answer boundary (issue 15): whatever a token service or slurmrestd answers,
the provider returns the right result or raises its typed error, and never quotes a token from the
answer (or a connection secret it echoes) in a message.

Protocol steps are driven by hand (no server, no sleeping); tests/unit/test_hostile_server.py sends the
same kinds of answers over real sockets.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_maxwell.auth.sources import KeycloakSource, PortalSource
from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import HttpResult, Send
from airflow_provider_maxwell.exceptions import MaxwellAuthError, MaxwellError, SlurmApiError
from airflow_provider_maxwell.slurm import answers
from airflow_provider_maxwell.slurm.dialects import SUPPORTED_VERSIONS, served_versions
from airflow_provider_maxwell.slurm.job import MAX_JOB_ID, SlurmJob
from tests.strategies import MARK, json_values
from tests.unit.client.test_protocol_steps import META, Script, ops_for, state_with
from tests.unit.slurm.test_parser_properties import expected_job_id

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = int(time.time())
PASSWORD = f"{MARK}-portal-token"  # the connection's secret, which a hostile answer may echo


def signed(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


GOOD_TOKEN = signed({"sun": "alice", "iat": NOW, "exp": NOW + 3600})
OPAQUE = f"{MARK}{'x' * 40}"  # an opaque token: long, as the token services' are
# (token, whether a token endpoint's answer holding it must be accepted)
TOKENS = [
    (GOOD_TOKEN, True),
    (signed({"iat": NOW, "exp": NOW + 60}), True),  # no user claim: Slurm takes the header's
    (OPAQUE, True),
    (signed({"sun": "mallory", "iat": NOW, "exp": NOW + 3600}), False),  # another user's
    (signed({"sun": "alice", "iat": NOW, "exp": 1e20}), False),
    (signed({"sun": "alice", "iat": NOW, "exp": 10**400}), False),
    (signed({"sun": "alice", "iat": NOW, "exp": "soon"}), False),
    (signed({"sun": "alice", "iat": -5, "exp": NOW + 60}), False),
    (f"{GOOD_TOKEN}\n", False),
    (f"Bearer {GOOD_TOKEN}", False),
    ("", False),
    ("tökén" + MARK, False),
]
SECRET_PARTS = [GOOD_TOKEN.split(".")[1], GOOD_TOKEN.split(".")[2], OPAQUE, MARK]
# Any other JSON value is no token; strings are left to TOKENS, since any printable one is a usable opaque token.
tokens = st.sampled_from(TOKENS) | json_values.filter(lambda v: not isinstance(v, str)).map(lambda v: (v, False))
statuses = st.sampled_from([200, 200, 200, 201, 302, 400, 401, 403, 404, 500, 502, 503])


def assert_quotes_no_token(message: str) -> None:
    for part in SECRET_PARTS:
        assert part not in message, message


def portal_source() -> PortalSource:
    config = MaxwellConnectionConfig.from_connection(
        "c",
        host="https://rest.example/sapi",
        login="alice",
        password=PASSWORD,
        extra={"auth_method": "portal", "portal_url": "https://portal.example/r"},
    )
    source = PortalSource(config)
    return source


def keycloak_source() -> KeycloakSource:
    config = MaxwellConnectionConfig.from_connection(
        "c", host="https://rest.example/sapi", login="alice", password=PASSWORD, extra={"auth_method": "keycloak"}
    )
    return KeycloakSource(config)


def mint_once(source: Any, reply: HttpResult) -> MintedToken:
    generator = source.mint()
    effect = next(generator)
    assert isinstance(effect, Send)
    try:
        generator.send(reply)
    except StopIteration as done:
        return done.value
    raise AssertionError("a mint asked for a second request")


def body_of(document: Any, raw: bytes | None) -> bytes:
    return raw if raw is not None else json.dumps(document).encode()


@FAST
@given(
    status=statuses,
    token=tokens,
    shape=st.sampled_from(["object", "list", "bare", "echo", "junk"]),
    junk=json_values,
    raw=st.none() | st.sampled_from([b"", b"<html>", b"\xff\xfe", b"[" * 50_000, b'{"token": "' + OPAQUE.encode()]),
)
def test_a_portal_answer_gives_its_token_or_an_auth_error_quoting_none(status, token, shape, junk, raw) -> None:
    value, good = token
    document = {
        "object": {"token": value, "junk": junk},
        "list": [value],
        "bare": value,
        "echo": {"error": f"bad password {PASSWORD}; token {GOOD_TOKEN} {OPAQUE}", "token": value},
        "junk": junk,
    }[shape]
    headers = {"Location": f"https://sso.example/login?ticket={OPAQUE}&t={GOOD_TOKEN}"} if status == 302 else {}
    reply = HttpResult(status, body_of(document, raw), headers)
    try:
        minted = mint_once(portal_source(), reply)
    except MaxwellAuthError as error:
        assert_quotes_no_token(str(error))
        assert not (status == 200 and raw is None and shape in ("object", "echo") and good), str(error)
        return
    assert status == 200 and raw is None and shape in ("object", "echo") and good
    assert minted.value == value and minted.expires_at > NOW and minted.user in ("alice", None)


@FAST
@given(
    status=statuses,
    access=tokens,
    refresh=st.sampled_from([GOOD_TOKEN, OPAQUE, None]) | json_values,
    expires_in=st.sampled_from([None, 300, 0, 86400.5]) | json_values,
    refresh_in=st.sampled_from([None, 1800]) | json_values,
    raw=st.none() | st.sampled_from([b"", b"\xff", b"[" * 50_000]),
)
def test_a_keycloak_answer_gives_its_token_or_an_auth_error_quoting_none(
    status, access, refresh, expires_in, refresh_in, raw
) -> None:
    value, good = access
    document = {
        "access_token": value,
        "refresh_token": refresh,
        "expires_in": expires_in,
        "refresh_expires_in": refresh_in,
        "error_description": f"session {OPAQUE} of {PASSWORD}",
    }
    lifetimes_ok = all(
        v is None or (type(v) in (int, float) and 0 <= v <= 366 * 86400) for v in (expires_in, refresh_in)
    )
    source = keycloak_source()
    try:
        minted = mint_once(source, HttpResult(status, body_of(document, raw), {}))
    except MaxwellAuthError as error:
        assert_quotes_no_token(str(error))
        assert not (status == 200 and raw is None and good and lifetimes_ok), str(error)
        return
    assert status == 200 and raw is None and good and lifetimes_ok
    assert minted.value == value
    # what the source holds is masked: both tokens when the answer had a usable refresh token
    held = source.secrets(minted)
    assert value in held and (refresh in held) == (isinstance(refresh, str) and refresh != "")


# ---------------------------------------------------------------- slurmrestd's answers

ERROR_ENTRIES = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "error_number": st.sampled_from([0, 1007, 2017, 9003, -1, "2017", "²", "9" * 50, True]) | json_values,
            "error": st.sampled_from([f"token {GOOD_TOKEN} refused", f"header X-SLURM-USER-TOKEN: {OPAQUE}"])
            | json_values,
            "description": json_values,
        },
    )
    | json_values,
    max_size=2,
)
JOB_IDS = st.integers(min_value=1, max_value=MAX_JOB_ID) | st.sampled_from([0, -5, 2**32, 2**70, True, "12", 1.5])


def slurm_answer(status: int, document: Any) -> HttpResult:
    return HttpResult(status, json.dumps(document).encode(), {})


PING = slurm_answer(200, {**META, "pings": [{"responding": True, "pinged": "UP"}]})  # slurmctld is up


@FAST
@given(
    status=st.sampled_from([200, 200, 200, 400, 500]),
    job_id=JOB_IDS | json_values,
    errors=st.just([]) | ERROR_ENTRIES,
    meta=st.just(META["meta"]) | json_values,
)
def test_a_submit_answer_gives_the_job_id_or_a_typed_error(status, job_id, errors, meta) -> None:
    submit = "/slurm/v0.0.45/job/submit"
    document = {"meta": meta, "errors": errors, "job_id": job_id}
    script = Script({submit: [slurm_answer(status, document)], "/slurm/v0.0.45/ping": [PING]})
    read_errors = answers.parse_errors(document)
    try:
        result = script.run(ops_for(state_with()).submit("#!/bin/bash\ntrue\n", {}))
    except (SlurmApiError, MaxwellAuthError) as error:
        assert_quotes_no_token(str(error))
        assert not (status == 200 and not read_errors and type(job_id) is int and 0 < job_id <= MAX_JOB_ID)
        return
    # a job id is returned only from a successful answer that names one
    assert result == job_id and type(result) is int and 0 < result <= MAX_JOB_ID
    assert status == 200 and all(e.code in (None, answers.NOTHING_FOUND) for e in read_errors)
    assert script.count(submit) == 1  # never sent twice


PER_JOB = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "error": st.fixed_dictionaries(
                {},
                optional={
                    "code": st.sampled_from([0, 2002, 2017, 2021, True, "2002"]) | json_values,
                    "message": st.sampled_from([f"denied for {GOOD_TOKEN}", "Access/permission denied"]),
                },
            )
            | json_values,
        },
    )
    | json_values,
    max_size=2,
)


@FAST
@given(status=st.sampled_from([200, 200, 404, 500]), per_job=PER_JOB | json_values, errors=st.just([]) | ERROR_ENTRIES)
def test_a_cancel_happened_or_raises(status, per_job, errors) -> None:
    job = "/slurm/v0.0.44/job/7"
    document = {**META, "errors": errors, "status": per_job}
    script = Script({job: [slurm_answer(status, document)], "/slurm/v0.0.44/ping": [PING]})
    try:
        result = script.run(ops_for(state_with("v0.0.44")).cancel(7))
    except (SlurmApiError, MaxwellAuthError) as error:
        assert_quotes_no_token(str(error))
        return
    assert result is None and status == 200
    entries = per_job if isinstance(per_job, list) else []
    codes = [e["error"].get("code") for e in entries if isinstance(e, dict) and isinstance(e.get("error"), dict)]
    # no per-job failure Slurm could have meant: every code is "done" (0), "already ended" (2021), or unreadable
    assert all(answers.error_code(c) in (None, 0, 2021) for c in codes)  # "2002" as text is a failure too
    assert all(e.code in (None, answers.NOTHING_FOUND) for e in answers.parse_errors(document))


RECORD = st.fixed_dictionaries(
    {"job_id": JOB_IDS | json_values, "user": st.just("alice"), "name": st.just("reduce")},
    optional={"state": json_values, "time": json_values, "exit_code": json_values, "array": json_values},
)


@FAST
@given(records=st.lists(RECORD | json_values, max_size=5), errors=st.just([]) | ERROR_ENTRIES)
def test_an_accounting_listing_gives_every_record_it_can_read(records, errors) -> None:
    listing = "/slurmdb/v0.0.45/jobs"
    document = {**META, "errors": errors, "jobs": records}
    script = Script({listing: [slurm_answer(200, document)]})
    try:
        jobs = script.run(ops_for(state_with()).accounting_by_id([7]))
    except (SlurmApiError, MaxwellAuthError) as error:
        assert_quotes_no_token(str(error))
        assert any(e.code not in (None, answers.NOTHING_FOUND) for e in answers.parse_errors(document))
        return
    readable = [expected_job_id(r) for r in records if isinstance(r, dict)]
    assert [j.job_id for j in jobs] == [i for i in readable if i is not None]
    assert all(isinstance(j, SlurmJob) for j in jobs)


@FAST
@given(document=json_values, paths=st.lists(st.sampled_from(["/slurm/v0.0.44/x", "/slurmdb/v0.0.44/x"]) | st.text()))
def test_an_openapi_document_of_any_shape_names_only_versions(document, paths) -> None:
    if isinstance(document, dict):
        document = {**document, "paths": {p: {} for p in paths}}
    offered = served_versions(document) if isinstance(document, dict) else set()
    assert all(re.fullmatch(r"v0\.0\.\d+", v) for v in offered)
    assert offered <= {p.split("/")[2] for p in paths if re.match(r"^/slurm(db)?/v0\.0\.\d+/", p)}
    if isinstance(document, dict) and "/slurm/v0.0.44/x" in paths and "/slurmdb/v0.0.44/x" in paths:
        assert "v0.0.44" in offered and "v0.0.44" in SUPPORTED_VERSIONS


@FAST
@given(document=json_values, status=st.integers(min_value=100, max_value=599), raw=st.none() | st.binary(max_size=64))
def test_any_body_reads_as_an_answer_without_a_token_in_its_excerpt(document, status, raw) -> None:
    body = raw if raw is not None else json.dumps({"meta": document, "errors": document, "echo": GOOD_TOKEN}).encode()
    answer = answers.read_answer(status, b" " * 180 + body)  # a token straddling the excerpt's cut, too
    assert answer.release is None or (isinstance(answer.release, str) and answer.release)
    assert all(isinstance(e.code, int | None) and not isinstance(e.code, bool) for e in answer.errors)
    assert_quotes_no_token(answer.body_excerpt)
    assert all(GOOD_TOKEN.split(".")[1] not in str(e) for e in answer.errors)


def test_errors_are_typed_whatever_their_kind() -> None:
    assert issubclass(SlurmApiError, MaxwellError) and issubclass(MaxwellAuthError, MaxwellError)
