"""A fake slurmrestd answering from a script, for edge cases the real daemons cannot be made to
produce on demand. Tests against the real daemons are under tests/cluster/."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

OPENAPI = {
    "paths": {"/slurm/v0.0.44/jobs": {}, "/slurmdb/v0.0.44/jobs": {}},
    "info": {"x-slurm": {"release": "25.11.7"}},
}
META = {"meta": {"slurm": {"release": "25.11.7"}}, "errors": [], "warnings": []}


class FakeSlurm:
    """Answers from a script: {path: [(status, headers, body), ...]}, the last one repeating."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, dict[str, str], Any]]] = {}
        self.hits: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[tuple[str, Any]] = []  # (path, JSON body) of each request that sent one
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self) -> None:
                path = self.path.split("?")[0]
                self.hits.append((self.command, path, dict(self.headers)))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    sent = self.rfile.read(length)
                    try:
                        fake.bodies.append((path, json.loads(sent)))
                    except ValueError:
                        fake.bodies.append((path, sent))
                # An entry under "METHOD /path" answers that method only (a refused cancel of a live job).
                replies = fake.script.get(f"{self.command} {path}") or fake.script.get(path)
                replies = replies or [(404, {}, {**META, "errors": [{"error_number": 2017}]})]
                status, headers, body = replies.pop(0) if len(replies) > 1 else replies[0]
                if body == "DROP":  # read the request, then hang up without answering
                    self.close_connection = True
                    return
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = answer

            @property
            def hits(self) -> list[tuple[str, str, dict[str, str]]]:
                return fake.hits

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.script["/openapi/v3"] = [(200, {}, OPENAPI)]
        self.script["/slurm/v0.0.44/ping"] = [(200, {}, META)]  # the version OPENAPI serves answers its ping
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.hits if m == method and p == path)


def connection_as(server: FakeSlurm, login: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Another connection to `server`, logged in as `login` (with a token of theirs); returns its id."""
    import jwt

    now = int(time.time())
    token = jwt.encode({"sun": login, "iat": now, "exp": now + 3600}, "k" * 32, algorithm="HS256")
    conn = {"conn_type": "maxwell", "host": server.url, "login": login, "password": token}
    conn["extra"] = {"auth_method": "token"}
    conn_id = f"fake_as_{login}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[FakeSlurm]:
    server = FakeSlurm()
    now = int(time.time())
    import jwt

    token = jwt.encode({"sun": "alice", "iat": now, "exp": now + 3600}, "k" * 32, algorithm="HS256")
    conn = {
        "conn_type": "maxwell",
        "host": server.url,
        "login": "alice",
        "password": token,
        "extra": {"auth_method": "token"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_FAKE_{request.node.name.upper()}", json.dumps(conn))
    server.conn_id = f"fake_{request.node.name}"  # type: ignore[attr-defined]
    yield server
    server.server.shutdown()
