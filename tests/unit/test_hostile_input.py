"""Hostile input and hostile answers: each case ends in the provider's typed error naming the field
(or a correct result), never a built-in exception, a hang, or a secret in the message (issue 15)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from airflow_provider_maxwell.auth.sources import token_source
from airflow_provider_maxwell.client.drivers import SlurmClient
from airflow_provider_maxwell.client.exchange import RetryPolicy, retry_after
from airflow_provider_maxwell.client.state import ConnectionState
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import HttpResult
from airflow_provider_maxwell.exceptions import MaxwellAuthError, MaxwellConfigError, SlurmApiError, SlurmTransientError
from airflow_provider_maxwell.slurm import answers
from airflow_provider_maxwell.slurm.dialects import DIALECTS, served_versions
from airflow_provider_maxwell.slurm.job import parse_job_id
from airflow_provider_maxwell.slurm.submit import build_submit_body
from tests.unit.client.test_protocol_steps import JOB, META, Script, ok, ops_for, state_with

SECRET = "s3cr3t-Portal-Token-value"


def connection(
    host: str = "https://rest.example/sapi", login: str = "alice", password: str | None = SECRET, extra: Any = None
) -> MaxwellConnectionConfig:
    return MaxwellConnectionConfig.from_connection("c", host=host, login=login, password=password, extra=extra)


# ---------------------------------------------------------------- the connection


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"host": f"https://alice:{SECRET}@rest.example/sapi"}, "host carries credentials"),
        ({"host": "https://rest.example/sapi?x=1"}, "host has a query or fragment"),
        ({"host": "https://rest.example:99999/sapi"}, "is not a URL"),
        ({"extra": ["auth_method", "portal"]}, "extra is a list, not a JSON object"),
        ({"login": "Jürgen"}, "login is 'Jürgen'"),
        ({"login": "alice\r\nX-Evil: 1"}, "login is"),
        ({"password": f"{SECRET}\nmore", "extra": {"auth_method": "keycloak"}}, "password contains a line break"),
        ({"host": f"alice:{SECRET}@rest.example/sapi"}, "host (not shown: it may hold credentials) is not a URL"),
        ({"host": f"https://rest.example/sapi?token={SECRET}"}, "host has a query or fragment"),
        ({"extra": {"portal_url": f"https://alice:{SECRET}@portal.example/r"}}, "extra.portal_url has credentials"),
        ({"extra": {"keycloak_url": f"https://kc.example/auth?t={SECRET}"}}, "extra.keycloak_url has credentials"),
        ({"extra": {"timeout": float("nan")}}, "extra.timeout is nan"),
        ({"extra": {"timeout": "inf"}}, "extra.timeout is 'inf'"),
        ({"extra": {"timeout": True}}, "extra.timeout is True"),
    ],
)
def test_bad_connections_name_the_field_and_never_quote_the_secret(kwargs, field):
    with pytest.raises(MaxwellConfigError) as failure:
        connection(**kwargs)
    assert field in str(failure.value) and SECRET not in str(failure.value)


def test_values_that_hold_secrets_are_left_out_of_reprs():
    from airflow_provider_maxwell.effects import GetToken, HttpCall

    call = HttpCall(
        "POST", "https://kc.example/token", form={"password": SECRET}, headers={"X-SLURM-USER-TOKEN": SECRET}
    )
    assert SECRET not in repr(call) and SECRET not in repr(GetToken(stale=SECRET))


def test_a_pasted_token_loses_its_trailing_newline():
    assert connection(password=f"{SECRET}\n").password == SECRET
    assert SECRET not in repr(connection())


# ---------------------------------------------------------------- job ids and job fields


@pytest.mark.parametrize("value", ["²", "\uff11\uff12", True, 0, -5, "-5", 2**32, "12; rm -rf /", "", None, 1.5])
def test_job_ids_are_positive_ascii_whole_numbers(value):
    with pytest.raises(MaxwellConfigError, match="job_id must be a Slurm job id"):
        parse_job_id(value)


@pytest.mark.parametrize(("value", "expected"), [(12, 12), ("12", 12), (" 12 ", 12), (2**32 - 1, 2**32 - 1)])
def test_good_job_ids(value, expected):
    assert parse_job_id(value) == expected


@pytest.mark.parametrize(
    ("script", "fields", "named"),
    [
        ("#!/bin/bash\n", {"time_limit": float("nan")}, "time_limit must be minutes"),
        ("#!/bin/bash\n", {"time_limit": float("inf")}, "time_limit must be minutes"),
        (b"#!/bin/bash\n", {}, "script must be text (str), not bytes"),
        ("#!/bin/bash\necho \0\n", {}, "script contains a NUL byte"),
        ("#!/bin/bash\n", {"environment": {"A\0B": "x"}}, "invalid variable name"),
        ("#!/bin/bash\n", {"environment": {"A": "x\0y"}}, "environment['A'] contains a NUL byte"),
        ("#!/bin/bash\n", {"current_working_directory": "data/run42"}, "current_working_directory must be an absolute"),
        ("#!/bin/bash\n", {"script": "#!/bin/bash\nrm -rf ~\n"}, "job field 'script' is not allowed"),
        ("#!/bin/bash\n", {"name": "a\0b"}, "name must be a non-empty string without NUL"),
    ],
)
def test_bad_job_fields_are_refused_before_anything_is_sent(script, fields, named):
    with pytest.raises(MaxwellConfigError) as failure:
        build_submit_body(DIALECTS["v0.0.45"], script, fields, default_cwd="/home/alice")
    assert named in str(failure.value)


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize("job_id", [True, 0, -5, 2**70, "12", None, 1.5])
def test_a_submission_answered_with_no_real_job_id_is_an_error(job_id):
    submit = "/slurm/v0.0.45/job/submit"
    script = Script({submit: [ok({**META, "job_id": job_id})]})
    with pytest.raises(SlurmApiError, match=r"without a job id .*the job may exist"):
        script.run(ops_for(state_with()).submit("#!/bin/bash\ntrue\n", {}))


@pytest.mark.parametrize("value", ["-5", "nan", "inf", "-inf", "Wed, 21 Oct 2015 07:28:00 GMT", ""])
def test_retry_after_that_is_no_pause_is_ignored(value):
    assert retry_after({"Retry-After": value}) is None


def test_retry_after_is_capped():
    assert retry_after({"retry-after": "7"}) == 7.0 and retry_after({"Retry-After": "1e9"}) == 120.0


def test_a_retry_after_of_minus_five_leaves_the_backoff_in_charge():
    script = Script({JOB: [HttpResult(503, b"busy", {"Retry-After": "-5"}), ok({**META, "jobs": []})]})
    script.run(ops_for(state_with()).controller_jobs(7))
    assert len(script.sleeps) == 1 and 0.8 <= script.sleeps[0] <= 1.2


def test_a_body_nested_deeper_than_python_parses_is_a_typed_transient_error():
    nested = b"[" * 100_000 + b"]" * 100_000
    assert answers.read_answer(200, nested).document is None
    script = Script({JOB: [HttpResult(200, nested, {})]})
    with pytest.raises(SlurmTransientError, match="not a JSON object"):
        script.run(ops_for(state_with(), limit=2).controller_jobs(7))


@pytest.mark.parametrize("meta", [[], "26.05", {"slurm": []}, {"slurm": {"release": 5}}, {"slurm": {"release": ["x"]}}])
def test_a_meta_of_the_wrong_shape_names_no_release(meta):
    assert answers.read_answer(200, json.dumps({"meta": meta, "jobs": []})).release is None


@pytest.mark.parametrize(
    "document", [{"paths": []}, {"paths": "v0.0.44"}, {"paths": {"5": 1, "/slurm/v0.0.44/x": {}}}, {}]
)
def test_an_openapi_document_of_the_wrong_shape_serves_what_it_clearly_names(document):
    assert served_versions(document) <= {"v0.0.44"}


# ---------------------------------------------------------------- token services


def portal_state() -> ConnectionState:
    config = connection(extra={"auth_method": "portal", "portal_url": "https://portal.example/reservation"})
    return ConnectionState(config, token_source(config))


def far_future_jwt() -> str:
    return jwt.encode({"sun": "alice", "iat": int(time.time()), "exp": 1e20}, "k" * 32, algorithm="HS256")


@pytest.mark.parametrize(
    "body",
    [
        {"token": 5},
        {"token": ""},
        {"token": "eyJhbGciOi not a token"},
        {"token": None},
        {"access": SECRET},
        ["token", SECRET],
    ],
    ids=["number", "empty", "spaces", "null", "other-key", "list"],
)
def test_a_portal_answer_of_the_wrong_shape_is_an_auth_error_quoting_nothing(body):
    state = portal_state()
    script = Script({"": [ok(body)]})
    script.replies = {"https://portal.example/reservation/get_new_slurm_token": [ok(body)]}  # type: ignore[dict-item]
    with pytest.raises(MaxwellAuthError) as failure:
        run_mint(state, ok(body))
    assert SECRET not in str(failure.value) and "portal" in str(failure.value)


def test_a_token_whose_expiry_is_no_time_is_refused():
    with pytest.raises(MaxwellAuthError, match="iat/exp claims are not times"):
        run_mint(portal_state(), ok({"token": far_future_jwt()}))


def test_a_refusal_quotes_the_portals_words_but_no_token():
    leaked = jwt.encode({"sun": "alice"}, "k" * 32, algorithm="HS256")
    body = f"<html>401: token {leaked} revoked; your password {SECRET} is wrong</html>".encode()
    with pytest.raises(MaxwellAuthError) as failure:
        run_mint(portal_state(), HttpResult(401, body, {}))
    message = str(failure.value)
    assert "HTTP 401" in message and "revoked" in message and leaked not in message and SECRET not in message


def run_mint(state: ConnectionState, reply: HttpResult) -> Any:
    generator = state.source.mint()
    effect = next(generator)
    try:
        generator.send(reply)
    except StopIteration as done:
        return done.value
    raise AssertionError(f"mint asked for more than one request: {effect}")


# ---------------------------------------------------------------- a server that trickles


@pytest.fixture(params=["body", "headers"])
def trickling_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """Answers every request a byte a second: after headers promising 1000 bytes, or within the headers."""
    in_headers = request.param == "headers"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
            conn.sendall(head if in_headers else head + b"\r\n{")
            for _ in range(60):
                if stop.is_set():
                    return
                try:
                    conn.sendall(b"X-Slow: 1\r\n" if in_headers else b" ")
                except OSError:
                    return
                time.sleep(1)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    server.close()


def trickled_client(host: str) -> SlurmClient:
    token = jwt.encode({"sun": "alice", "iat": int(time.time()), "exp": int(time.time()) + 600}, "k" * 32, "HS256")
    config = connection(host=host, password=token, extra={"auth_method": "token", "timeout": 2})
    state = ConnectionState(config, token_source(config))
    state.dialect = DIALECTS["v0.0.45"]
    return SlurmClient(state, RetryPolicy(limit=1), note=lambda _: None, minted=lambda *_: None)


def test_the_timeout_bounds_the_whole_request_sync(trickling_server):
    client = trickled_client(trickling_server)
    began = time.monotonic()
    with pytest.raises(SlurmTransientError, match="no whole answer within the timeout"):
        client.run(client.ops.controller_jobs(7))
    assert time.monotonic() - began < 5


def test_the_timeout_bounds_the_whole_request_async(trickling_server):
    client = trickled_client(trickling_server)

    async def ask() -> None:
        await client.arun(client.ops.controller_jobs(7))

    began = time.monotonic()
    with pytest.raises(SlurmTransientError, match="no whole answer within the timeout"):
        asyncio.run(ask())
    assert time.monotonic() - began < 5
