"""A forwarding proxy on 127.0.0.1 that loses answers: it forwards a submission to slurmrestd, so the job
is created, and then drops the answer (connection reset, or a gateway's 502) instead of passing it on.

Every other request passes through unchanged. It counts what it forwarded (requests, submissions,
answer bytes), so a test can tell how many submissions reached Slurm and a benchmark what a task costs.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

LoseBy = Literal["reset", "502"]


class ForwardingProxy:
    """`with ForwardingProxy(upstream, lose=1) as proxy:` proxy.url in place of the REST URL; the first
    `lose` submissions are forwarded and their answers dropped (`lose_by`)."""

    def __init__(self, upstream: str, lose: int = 1, lose_by: LoseBy = "reset") -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.lose, self.lose_by = lose, lose_by
        self.requests_forwarded = 0
        self.bytes_answered = 0  # response bodies slurmrestd sent, dropped ones included
        self.submissions_forwarded = 0
        self.answers_dropped = 0
        self._counter_lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: nothing to parse beyond one

            def log_message(self, *args: object) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=300)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    content = answer.read()
                finally:
                    upstream.close()
                with proxy._counter_lock:
                    proxy.requests_forwarded += 1
                    proxy.bytes_answered += len(content)
                if self.command == "POST" and self.path.endswith("/job/submit"):
                    with proxy._counter_lock:
                        proxy.submissions_forwarded += 1
                        drop = proxy.answers_dropped < proxy.lose
                        proxy.answers_dropped += drop
                    if drop:
                        self.drop_answer()
                        return
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def drop_answer(self) -> None:
                if proxy.lose_by == "502":
                    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                    self.send_response(502)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                # A reset: SO_LINGER with a zero timeout makes close() send RST, not FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            do_GET = do_POST = do_DELETE = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ForwardingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
