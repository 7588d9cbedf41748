"""The drivers against a fake slurmrestd: renewal past a refused token, request counting, notes,
and how transport failures are classified (a refused connection certainly sent nothing)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from airflow_provider_maxwell.auth.sources import token_source
from airflow_provider_maxwell.auth.tokens import MintedToken, token_from_jwt
from airflow_provider_maxwell.client.drivers import SlurmClient, short
from airflow_provider_maxwell.client.exchange import RetryPolicy
from airflow_provider_maxwell.client.state import ConnectionState
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import HttpCall, Note, Protocol
from airflow_provider_maxwell.slurm.dialects import DIALECTS
from tests.fake_slurm import META

JOB = "/slurm/v0.0.44/job/7"


def slurm_jwt(n: int) -> str:
    now = int(time.time())
    return jwt.encode({"sun": "alice", "iat": now, "exp": now + 600, "n": n}, "k" * 32, algorithm="HS256")


@pytest.fixture
def client_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    made: list[SlurmClient] = []

    def make(host: str) -> tuple[SlurmClient, list[str], list[MintedToken]]:
        config = MaxwellConnectionConfig.from_connection(
            "d", host=host, login="alice", password=slurm_jwt(0), extra={"auth_method": "token", "timeout": 5}
        )
        state = ConnectionState(config, token_source(config))
        state.dialect = DIALECTS["v0.0.44"]
        counter = iter(range(1, 100))

        def mint() -> Protocol[MintedToken]:
            return token_from_jwt(slurm_jwt(next(counter)))
            yield  # a generator, as the sources are

        monkeypatch.setattr(state.source, "mint", mint)
        notes: list[str] = []
        minted: list[MintedToken] = []
        client = SlurmClient(state, RetryPolicy(limit=3, delay=0.01), notes.append, lambda _s, t: minted.append(t))
        made.append(client)
        return client, notes, minted

    yield make


def running() -> dict[str, Any]:
    return {
        **META,
        "jobs": [{"job_id": 7, "job_state": ["RUNNING"], "user_name": "alice", "name": "x", "partition": "p"}],
    }


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_refused_token_is_renewed_and_the_new_one_sent(fake, client_for, mode):
    refused = {**META, "errors": [{"error_number": 1007, "description": "Protocol authentication error"}]}
    fake.script[JOB] = [(511, {}, refused), (200, {}, running())]
    client, _, minted = client_for(fake.url)
    protocol = client.ops.controller_jobs(7)
    records = client.run(protocol) if mode == "sync" else asyncio.run(client.arun(protocol))
    assert [r.state.value for r in records] == ["RUNNING"]
    sent = [headers.get("X-SLURM-USER-TOKEN") for _, path, headers in fake.hits if path == JOB]
    assert len(minted) == 2 and sent == [minted[0].value, minted[1].value]
    assert client.state.requests_sent == 2 and client.state.tokens.mints == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_notes_reach_the_sink_word_for_word(fake, client_for, mode):
    client, notes, _ = client_for(fake.url)

    def protocol() -> Protocol[int]:
        yield Note("Slurm job 7: RUNNING on maxwn01")
        return 1

    assert (client.run(protocol()) if mode == "sync" else asyncio.run(client.arun(protocol()))) == 1
    assert notes == ["Slurm job 7: RUNNING on maxwn01"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_refused_connection_is_known_to_have_sent_nothing(client_for, mode):
    client, _, _ = client_for(f"http://127.0.0.1:{closed_port()}")
    call = HttpCall("POST", f"{client.state.config.host}/slurm/v0.0.44/job/submit", json={})
    failure = client._send(call) if mode == "sync" else asyncio.run(client._asend(call))
    assert failure.before_send is True and "Connect" in failure.message


def test_a_submission_is_repeated_only_when_the_connection_was_refused(client_for):
    client, notes, _ = client_for(f"http://127.0.0.1:{closed_port()}")
    from airflow_provider_maxwell.exceptions import SlurmTransientError

    with pytest.raises(SlurmTransientError, match="after 3 attempt"):
        client.run(client.ops.submit("#!/bin/bash\ntrue\n", {}))
    assert client.state.requests_sent == 3 and len([n for n in notes if "retry" in n]) == 2


def test_failures_read_as_one_line_naming_their_kind():
    error = requests.exceptions.ConnectionError("Max retries exceeded\n   (Caused by refused)")
    assert short(error) == "ConnectionError: Max retries exceeded (Caused by refused)"
    assert len(short(ValueError("x" * 1000))) == len("ValueError: ") + 300


# ---------------------------------------------------------------- what each driver sends and reports (issue 18)


class EchoServer:
    """A local HTTP server answering every request with what it received, as JSON, after `delay` seconds."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                data = json.dumps(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                ).encode()
                self.send_response(201)
                self.send_header("X-Echo", "yes")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.server.shutdown()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_request_arrives_as_the_call_says_and_its_answer_comes_back_whole(echo, client_for, mode):
    import json

    client, _, _ = client_for(echo.url)
    call = HttpCall(
        "POST", f"{echo.url}/slurm/v0.0.44/job/submit", params={"a": "1"}, json={"job": {}}, headers={"X-T": "t"}
    )
    result = client._send(call) if mode == "sync" else asyncio.run(client._asend(call))
    assert result.status == 201 and {k.lower(): v for k, v in result.headers.items()}["x-echo"] == "yes"
    seen = json.loads(result.body)
    assert (seen["method"], seen["path"], json.loads(seen["body"])) == (
        "POST",
        "/slurm/v0.0.44/job/submit?a=1",
        {"job": {}},
    )
    assert seen["headers"]["X-T"] == "t"
    assert client.state.requests_sent == 1 and client.state.last_response_seconds > 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stale_token_is_renewed_and_each_new_one_handed_to_the_mint_sink(client_for, mode):
    from airflow_provider_maxwell.effects import GetToken, Sleep

    client, _, minted = client_for("http://127.0.0.1:9")

    def protocol() -> Protocol[tuple[str, str, str]]:
        first: MintedToken = yield GetToken()
        again: MintedToken = yield GetToken()
        yield Sleep(0.001)
        renewed: MintedToken = yield GetToken(stale=first.value)
        return first.value, again.value, renewed.value

    first, again, renewed = client.run(protocol()) if mode == "sync" else asyncio.run(client.arun(protocol()))
    assert first == again != renewed
    assert [t.value for t in minted] == [first, renewed] and client.state.tokens.mints == 2


def failing_send(error: BaseException) -> Any:
    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        raise error

    return send


@pytest.mark.parametrize(
    ("error", "message", "before_send"),
    [
        (requests.exceptions.ConnectTimeout("slow SYN"), "ConnectTimeout: slow SYN", True),
        (requests.exceptions.SSLError("bad cert"), "TLS verification failed: SSLError: bad cert", True),
        (requests.exceptions.ConnectionError("Connection refused"), "ConnectionError: Connection refused", True),
        (requests.exceptions.ConnectionError("reset by peer"), "ConnectionError: reset by peer", False),
        (requests.exceptions.ReadTimeout("read timed out"), "ReadTimeout: read timed out", False),
        (ValueError("odd"), "ValueError: odd", False),
    ],
)
def test_each_sync_transport_failure_says_whether_the_request_may_have_arrived(
    client_for, monkeypatch, error, message, before_send
):
    from airflow_provider_maxwell.effects import TransportFailure

    client, _, _ = client_for("http://127.0.0.1:9")
    monkeypatch.setattr(requests.Session, "send", failing_send(error))
    assert client._send(HttpCall("GET", "http://127.0.0.1:9/x")) == TransportFailure(message, before_send=before_send)


def test_a_request_that_cannot_be_made_was_never_sent(client_for):
    client, _, _ = client_for("http://127.0.0.1:9")
    failure = client._send(HttpCall("GET", "http://[::1/x"))
    assert failure.before_send is True and failure.message.startswith("request not sendable: InvalidURL: ")


@pytest.mark.parametrize("verify", [True, False])
def test_the_sync_driver_sends_with_the_connections_tls_and_timeout_and_never_follows_redirects(monkeypatch, verify):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)  # they would stand in for verify=True
    config = MaxwellConnectionConfig.from_connection(
        "d", host="http://127.0.0.1:9", login="alice", password="p", extra={"verify": verify, "timeout": 7}
    )
    client = SlurmClient(ConnectionState(config, token_source(config)), RetryPolicy(), print, lambda s, t: None)
    seen: dict[str, Any] = {}

    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise requests.exceptions.ConnectTimeout("stop here")

    monkeypatch.setattr(requests.Session, "send", send)
    client._send(HttpCall("GET", "http://127.0.0.1:9/x"))
    assert (seen["verify"], seen["timeout"], seen["allow_redirects"], seen["stream"]) == (verify, 7.0, False, True)


def test_transport_failures_never_quote_the_connections_secret(client_for, monkeypatch):
    client, _, _ = client_for("http://127.0.0.1:9")
    secret = client.state.config.password
    monkeypatch.setattr(requests.Session, "send", failing_send(requests.exceptions.ReadTimeout(f"Bearer {secret}")))
    assert client._send(HttpCall("GET", "http://127.0.0.1:9/x")).message == "ReadTimeout: Bearer ***"


@pytest.mark.parametrize(
    ("error", "message", "before_send"),
    [
        ("ConnectError", "ConnectError: no route", True),
        ("ConnectTimeout", "ConnectTimeout: no route", True),
        ("ReadError", "ReadError: no route", False),
        ("InvalidURL", "request not sendable: InvalidURL: no route", True),
        ("UnsupportedProtocol", "request not sendable: UnsupportedProtocol: no route", True),
    ],
)
def test_each_async_transport_failure_says_whether_the_request_may_have_arrived(
    client_for, monkeypatch, error, message, before_send
):
    import httpx

    from airflow_provider_maxwell.effects import TransportFailure

    client, _, _ = client_for("http://127.0.0.1:9")

    async def request(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> Any:
        raise getattr(httpx, error)("no route")

    monkeypatch.setattr(httpx.AsyncClient, "request", request)
    failure = asyncio.run(client._asend(HttpCall("GET", "http://127.0.0.1:9/x")))
    assert failure == TransportFailure(message, before_send=before_send) and client.state.requests_sent == 1


def test_an_async_request_past_its_whole_time_may_have_arrived(client_for, monkeypatch):
    import httpx

    from airflow_provider_maxwell.client import drivers
    from airflow_provider_maxwell.effects import TransportFailure

    client, _, _ = client_for("http://127.0.0.1:9")

    async def request(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    monkeypatch.setattr(httpx.AsyncClient, "request", request)
    monkeypatch.setattr(drivers, "whole_request_seconds", lambda timeout: 0.01)
    failure = asyncio.run(client._asend(HttpCall("GET", "http://127.0.0.1:9/x")))
    assert failure == TransportFailure("no whole answer within the timeout", before_send=False)


@pytest.mark.parametrize(("verify", "kind"), [("true", True), ("false", False), ("ca", "SSLContext")])
def test_the_async_driver_uses_the_connections_tls_timeout_and_pool_once_per_loop(
    client_for, monkeypatch, tmp_path, verify, kind
):
    import ssl

    from airflow_provider_maxwell.client import drivers

    made: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

    if verify == "ca":
        import certifi

        verify = str(tmp_path / "ca.pem")
        (tmp_path / "ca.pem").write_bytes(Path(certifi.where()).read_bytes())
    monkeypatch.setattr(drivers.httpx, "AsyncClient", Recorder)
    config = MaxwellConnectionConfig.from_connection(
        "d", host="http://127.0.0.1:9", login="alice", password="p", extra={"verify": verify, "timeout": 7}
    )
    client = SlurmClient(ConnectionState(config, token_source(config)), RetryPolicy(), print, lambda s, t: None)

    async def twice() -> bool:
        return client._async_client() is client._async_client()

    assert asyncio.run(twice()) and len(made) == 1
    (kwargs,) = made
    tls = kwargs["verify"]
    assert isinstance(tls, ssl.SSLContext) if kind == "SSLContext" else tls is kind
    assert (kwargs["timeout"], kwargs["follow_redirects"]) == (7.0, False)
    limits = kwargs["limits"]
    assert (limits.max_connections, limits.max_keepalive_connections) == (20, 10)


def test_a_whole_request_may_take_the_timeout_and_a_tenth_more_and_half_a_second():
    from airflow_provider_maxwell.client.drivers import whole_request_seconds

    assert whole_request_seconds(10.0) == pytest.approx(11.5)


def test_an_effect_no_driver_knows_is_a_type_error_naming_it():
    from airflow_provider_maxwell.effects import unhandled

    with pytest.raises(TypeError) as failure:
        unhandled("Teleport()")
    assert str(failure.value) == "no driver handles the effect 'Teleport()'"


# ---------------------------------------------------------------- costs, per-call timeouts, compressed answers


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_each_answer_adds_its_body_size_and_the_servers_time_to_the_connections_costs(echo, client_for, mode):
    client, _, _ = client_for(echo.url)
    send = client._send if mode == "sync" else (lambda call: asyncio.run(client._asend(call)))
    first = send(HttpCall("GET", f"{echo.url}/slurm/v0.0.44/jobs"))
    first_seconds = client.state.last_response_seconds
    second = send(HttpCall("POST", f"{echo.url}/slurm/v0.0.44/job/submit", json={"job": {"name": "x" * 100}}))
    assert client.state.requests_sent == 2
    assert client.state.bytes_received == len(first.body) + len(second.body)
    assert client.state.server_seconds == pytest.approx(first_seconds + client.state.last_response_seconds)
    assert 0 < first_seconds < 5


def test_a_calls_own_timeout_replaces_the_connections_for_each_read(client_for, monkeypatch):
    client, _, _ = client_for("http://127.0.0.1:9")  # the connection's timeout: 5 s
    seen: list[Any] = []

    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["timeout"])
        raise requests.exceptions.ConnectTimeout("stop here")

    monkeypatch.setattr(requests.Session, "send", send)
    client._send(HttpCall("POST", "http://127.0.0.1:9/x", timeout=120.0))
    client._send(HttpCall("GET", "http://127.0.0.1:9/x"))
    assert seen == [120.0, 5.0]


def test_a_calls_own_timeout_replaces_the_connections_in_the_triggerer(client_for, monkeypatch):
    import httpx

    client, _, _ = client_for("http://127.0.0.1:9")  # the connection's timeout: 5 s
    seen: list[Any] = []

    async def request(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["timeout"])
        raise httpx.ConnectError("stop here")

    monkeypatch.setattr(httpx.AsyncClient, "request", request)

    async def both() -> None:
        await client._asend(HttpCall("POST", "http://127.0.0.1:9/x", timeout=120.0))
        await client._asend(HttpCall("GET", "http://127.0.0.1:9/x"))

    asyncio.run(both())
    assert seen == [httpx.Timeout(120.0), httpx.Timeout(5.0)]


def test_an_unexpected_error_while_sending_reaches_the_caller_not_lost_in_the_request_thread(client_for, monkeypatch):
    client, _, _ = client_for("http://127.0.0.1:9")
    monkeypatch.setattr(requests.Session, "send", failing_send(RuntimeError("a bug, not the network")))
    with pytest.raises(RuntimeError, match="a bug, not the network"):
        client._send(HttpCall("GET", "http://127.0.0.1:9/x"))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_large_answer_a_proxy_compressed_is_read_whole(mode, hostile_servers, client_for):
    import gzip
    import json

    from tests.hostile_server import job_answer, whole

    record = {"job_id": 7, "job_state": ["RUNNING"], "user_name": "alice", "name": "x", "comment": "y" * 300_000}
    body = job_answer([record])  # several chunks of the body, compressed or not

    def compressed(conn: socket.socket, request: bytes, server: Any) -> None:
        conn.sendall(whole(gzip.compress(body), Content_Encoding="gzip"))

    server = hostile_servers(compressed)
    client, _, _ = client_for(server.url)
    call = HttpCall("GET", f"{server.url}{JOB}")
    result = client._send(call) if mode == "sync" else asyncio.run(client._asend(call))
    assert result.status == 200 and json.loads(result.body) == json.loads(body)


def test_a_sync_request_past_its_whole_time_may_have_arrived(client_for, monkeypatch):
    import threading

    from airflow_provider_maxwell.client import drivers
    from airflow_provider_maxwell.effects import TransportFailure

    client, _, _ = client_for("http://127.0.0.1:9")
    release = threading.Event()

    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        release.wait(10)  # a server that never finishes its answer
        raise requests.exceptions.ReadTimeout("released")

    monkeypatch.setattr(requests.Session, "send", send)
    monkeypatch.setattr(drivers, "whole_request_seconds", lambda timeout: 0.01)
    try:
        failure = client._send(HttpCall("GET", "http://127.0.0.1:9/x"))
    finally:
        release.set()
    assert failure == TransportFailure("no whole answer within the timeout", before_send=False)


def test_a_host_name_that_does_not_resolve_is_known_to_have_sent_nothing(client_for, monkeypatch):
    import urllib3

    from airflow_provider_maxwell.effects import TransportFailure

    client, _, _ = client_for("https://slurm.example")
    cause = urllib3.exceptions.NewConnectionError(None, "Failed to resolve 'slurm.example' (Name or service not known)")
    error = requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", cause))
    monkeypatch.setattr(requests.Session, "send", failing_send(error))
    assert client._send(HttpCall("GET", "https://slurm.example/x")) == TransportFailure(
        'ConnectionError: None: Max retries exceeded with url: /x (Caused by NewConnectionError("None: Failed to '
        "resolve 'slurm.example' (Name or service not known)\"))",
        before_send=True,
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_effect_neither_driver_knows_stops_the_protocol_naming_it(client_for, mode):
    client, _, _ = client_for("http://127.0.0.1:9")

    def protocol() -> Any:
        yield "Teleport()"

    with pytest.raises(TypeError) as failure:
        client.run(protocol()) if mode == "sync" else asyncio.run(client.arun(protocol()))
    assert str(failure.value) == "no driver handles the effect 'Teleport()'"


def test_an_answer_cut_off_mid_body_may_have_arrived(client_for, hostile_servers):
    from tests.hostile_server import BEHAVIOURS

    server = hostile_servers(BEHAVIOURS["truncated body"])
    client, _, _ = client_for(server.url)
    failure = client._send(HttpCall("GET", f"{server.url}{JOB}"))
    assert failure.before_send is False
    assert failure.message.startswith("ProtocolError: ('Connection broken: IncompleteRead(")


def test_a_body_still_arriving_at_the_whole_requests_deadline_is_not_taken(echo, client_for):
    from airflow_provider_maxwell.effects import TransportFailure

    client, _, _ = client_for(echo.url)
    past = time.monotonic() - 1.0  # the request thread reads on after its caller stopped waiting
    failure = client._send_now(HttpCall("GET", f"{echo.url}/slurm/v0.0.44/jobs"), past)
    assert failure == TransportFailure("no whole answer within the timeout", before_send=False)
