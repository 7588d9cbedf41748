"""A hostile slurmrestd for the unit suite: a raw socket server whose answers to job requests are
slow, truncated, huge, nested, redirecting (quoting the token), mislabelled, wrongly typed or
compressed bombs (issue 15).

slurmctld's ping is answered sanely (version discovery may ask it); every other path gets the
behaviour under test. Raw sockets, because http.server cannot send a lie in Content-Length.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

META = {"meta": {"slurm": {"release": "25.11.7"}}, "errors": [], "warnings": []}
PING = {**META, "pings": [{"hostname": "c1", "pinged": "UP", "responding": True}]}
Behaviour = Callable[[socket.socket, bytes, "HostileServer"], None]


def head(status: str = "200 OK", length: int | None = None, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def whole(body: bytes, status: str = "200 OK", content_type: str = "application/json", **headers: str) -> bytes:
    return head(status, len(body), Content_Type=content_type, Connection="close", **headers) + body


class HostileServer:
    """Serves one behaviour on 127.0.0.1 until stopped; counts the requests it read."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.stopped = threading.Event()
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.socket.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                request = conn.recv(65536)
                self.requests.append(request)
                if b"/ping " in request.split(b"\r\n", 1)[0]:
                    conn.sendall(whole(json.dumps(PING).encode()))
                else:
                    self.behaviour(conn, request, self)
            except OSError:  # the client gave up (its deadline): nothing left to do
                pass

    def trickle(self, conn: socket.socket, data: bytes, pause: float = 0.1) -> None:
        """Sends `data` a byte per pause, until stopped."""
        for byte in data:
            if self.stopped.is_set():
                return
            conn.sendall(bytes([byte]))
            time.sleep(pause)

    def stop(self) -> None:
        self.stopped.set()
        self.socket.close()


def job_answer(jobs: list[Any]) -> bytes:
    return json.dumps({**META, "jobs": jobs}).encode()


def gzip_bomb(expanded: int) -> bytes:
    return gzip.compress(b"\0" * expanded, compresslevel=9)


BOMB = gzip_bomb(64 * 1024 * 1024)  # 64 MiB of zeros in ~64 KiB


def _slow_headers(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    server.trickle(conn, b"X-Slow: 1\r\n" * 100)


def _trickled_body(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    conn.sendall(head(length=1000, Content_Type="application/json") + b'{"jobs": [')
    server.trickle(conn, b" " * 990)


def _truncated(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    body = job_answer([])
    conn.sendall(head(length=len(body) + 500, Content_Type="application/json") + body)  # then hangs up


def _huge(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    conn.sendall(whole(json.dumps({**META, "jobs": [], "padding": "x" * 8_000_000}).encode()))


def _nested(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    conn.sendall(whole(b"[" * 200_000 + b"]" * 200_000))


def _html_as_json(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    conn.sendall(whole(b"<html><body>502 Bad Gateway</body></html>", "200 OK"))


def _echo(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    """A proxy's error page quoting the request it got, token header included."""
    conn.sendall(whole(b"<pre>" + request + b"</pre>", "502 Bad Gateway", "text/html"))


def _gzip_bomb(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    conn.sendall(whole(BOMB, Content_Encoding="gzip"))


def _wrong_types(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    record = {
        "job_id": "abc",
        "job_state": 5,
        "user_name": ["alice"],
        "exit_code": {"return_code": "x"},
        "submit_time": {"set": "yes", "number": 1e400},
        "array_job_id": -1,
    }
    conn.sendall(whole(json.dumps({**META, "meta": [], "errors": "none", "jobs": [record, 7, None]}).encode()))


def _redirect_quoting_the_token(conn: socket.socket, request: bytes, server: HostileServer) -> None:
    """A sign-on proxy sending the client on with the Slurm token it was given in the Location's query."""
    token = re.search(rb"(?im)^x-slurm-user-token: *([^\r\n]*)", request)
    ticket = token.group(1).decode() if token else ""
    conn.sendall(head("302 Found", 0, Location=f"{server.url}/sso?ticket={ticket}", Connection="close"))


BEHAVIOURS: dict[str, Behaviour] = {
    "slow headers": _slow_headers,
    "trickled body": _trickled_body,
    "truncated body": _truncated,
    "huge body": _huge,
    "deeply nested JSON": _nested,
    "HTML labelled JSON": _html_as_json,
    "echoed request": _echo,
    "gzip bomb": _gzip_bomb,
    "wrong types": _wrong_types,
    "redirect quoting the token": _redirect_quoting_the_token,
}


def redirect_to(target: str | None) -> Behaviour:
    """Redirects every request to `target` (None: to the request's own URL, a loop)."""

    def behaviour(conn: socket.socket, request: bytes, server: HostileServer) -> None:
        path = request.split(b" ")[1].decode()
        location = f"{target or server.url}{path}"
        conn.sendall(head("307 Temporary Redirect", 0, Location=location, Connection="close"))

    return behaviour


@pytest.fixture
def hostile_servers() -> Iterator[Callable[[Behaviour], HostileServer]]:
    """Starts hostile servers for a test and stops them after it."""
    started: list[HostileServer] = []

    def start(behaviour: Behaviour) -> HostileServer:
        started.append(HostileServer(behaviour))
        return started[-1]

    yield start
    for server in started:
        server.stop()
