"""The drivers: the only code that sends requests, sleeps or asks the token cache to mint.

`SlurmClient.run` carries out a protocol (a generator of effects) with requests, for workers;
`SlurmClient.arun` with a pooled httpx client, for the triggerer's event loop. Both dispatch every
kind of effect explicitly; mypy checks that none is forgotten (`unhandled`).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar

import httpx
import requests
import urllib3

from airflow_provider_maxwell import effects
from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.client.exchange import RetryPolicy, mint
from airflow_provider_maxwell.client.operations import SlurmOperations
from airflow_provider_maxwell.client.state import ConnectionState
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.exceptions import scrub

T = TypeVar("T")
BODY_CHUNK = 1 << 16
NoteSink = Callable[[str], None]
MintSink = Callable[[ConnectionState, MintedToken], None]

# One pooled httpx client per event loop and connection settings: a triggerer's triggers share it.
_ASYNC_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


class SlurmClient:
    """A connection state's operations and the drivers that carry them out.

    :param note: receives progress and retry notes (the hook logs them).
    :param minted: called with every token the client starts using (the hook masks it in Airflow's logs).
    """

    def __init__(self, state: ConnectionState, policy: RetryPolicy, note: NoteSink, minted: MintSink) -> None:
        self.state = state
        self.policy = policy
        self.ops = SlurmOperations(state, policy)
        self._note = note
        self._minted = minted

    # ------------------------------------------------------------------ sync (workers)

    @cached_property
    def _session(self) -> requests.Session:
        return requests.Session()

    def run(self, protocol: effects.Protocol[T]) -> T:
        """Carry out a protocol with blocking I/O; returns what it returns, raises what it raises."""
        result: Any = None
        try:
            while True:
                effect = protocol.send(result)
                if isinstance(effect, effects.Send):
                    result = self._send(effect.call)
                elif isinstance(effect, effects.Sleep):
                    time.sleep(effect.seconds)
                    result = None
                elif isinstance(effect, effects.Note):
                    self._note(effect.message)
                    result = None
                elif isinstance(effect, effects.GetToken):
                    result = self._announce(self.state.tokens.get(self._mint, stale=effect.stale))
                else:
                    effects.unhandled(effect)
        except StopIteration as done:
            return done.value

    def _mint(self) -> MintedToken:
        return self.run(mint(self.state, self.policy))

    def _announce(self, token: MintedToken) -> MintedToken:
        """Hand every token this process has not used before to `minted` (the hook masks and logs it),
        whether this process minted it or adopted it from another process of the host."""
        if self.state.tokens.first_use(token):
            self._minted(self.state, token)
        return token

    def _send(self, call: effects.HttpCall) -> effects.HttpResult | effects.TransportFailure:
        """One request, bounded as a whole by the connection's timeout (requests bounds only each read:
        a server trickling its headers or body a byte at a time would otherwise hold a worker for good).
        It runs in a thread the caller stops waiting for at the deadline."""
        self.state.requests_sent += 1
        deadline = time.monotonic() + whole_request_seconds(call.timeout or self.state.config.timeout)
        outcome: list[effects.HttpResult | effects.TransportFailure | BaseException] = []

        def attempt() -> None:
            try:
                outcome.append(self._send_now(call, deadline))
            except BaseException as error:  # handed to the caller's thread
                outcome.append(error)

        worker = threading.Thread(target=attempt, name="maxwell-request", daemon=True)
        worker.start()
        worker.join(max(deadline - time.monotonic(), 0.0))
        if not outcome:
            return effects.TransportFailure(
                self._failure_text(None, "no whole answer within the timeout"), before_send=False
            )
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _send_now(self, call: effects.HttpCall, deadline: float) -> effects.HttpResult | effects.TransportFailure:
        config = self.state.config
        try:
            request = requests.Request(call.method, call.url, **call.request_kwargs())
            prepared = self._session.prepare_request(request)
        except (requests.exceptions.RequestException, ValueError) as error:  # nothing left this process
            return effects.TransportFailure(self._failure_text(error, "request not sendable"), before_send=True)
        # proxies from the environment, verify, stream=True (the body is read against the deadline)
        settings = self._session.merge_environment_settings(prepared.url, {}, True, config.verify, None)
        try:
            response = self._session.send(
                prepared, **settings, timeout=call.timeout or config.timeout, allow_redirects=False
            )
            with response:
                body = self._read_body(response.raw, deadline)
            if body is None:
                return effects.TransportFailure(self._failure_text(None, "no whole answer within the timeout"), False)
        except urllib3.exceptions.HTTPError as error:  # broken or stalled body (read timeout per read)
            return effects.TransportFailure(self._failure_text(error), before_send=False)
        except requests.exceptions.ConnectTimeout as error:
            return effects.TransportFailure(self._failure_text(error), before_send=True)
        except requests.exceptions.SSLError as error:
            return effects.TransportFailure(self._failure_text(error, "TLS verification failed"), before_send=True)
        except requests.exceptions.ConnectionError as error:
            refused = "refused" in str(error).lower() or "NewConnectionError" in repr(error)
            return effects.TransportFailure(self._failure_text(error), before_send=refused)
        except (requests.exceptions.RequestException, ValueError) as error:  # after sending: maybe arrived
            return effects.TransportFailure(self._failure_text(error), before_send=False)
        self._count(response.elapsed.total_seconds(), len(body))
        return effects.HttpResult(response.status_code, body, dict(response.headers))

    @staticmethod
    def _read_body(raw: urllib3.response.BaseHTTPResponse, deadline: float) -> bytes | None:
        """The whole body, or None once the deadline passes. read1 returns what has arrived (at most one
        read, itself bounded by the per-read timeout), so the deadline is checked as bytes trickle in."""
        chunks = []
        while chunk := raw.read1(BODY_CHUNK, decode_content=True):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                return None
        return b"".join(chunks)

    def _count(self, seconds: float, size: int) -> None:
        """The server's answer time and body size of one answered request: the poller rests in proportion to
        the server's time, and the bytes say what polling costs the network."""
        self.state.last_response_seconds = seconds
        self.state.server_seconds += seconds
        self.state.bytes_received += size

    def _failure_text(self, error: BaseException | None, what: str = "") -> str:
        """A transport failure as one line, with the connection's secrets and anything token-shaped removed
        (HTTP libraries quote headers and URLs in their messages)."""
        text = short(error) if error is not None else ""
        line = f"{what}: {text}" if what and text else what or text
        return scrub(line, self.state.config.secret_texts)

    # ------------------------------------------------------------------ async (the triggerer)

    async def arun(self, protocol: effects.Protocol[T]) -> T:
        """Carry out a protocol in the running event loop; returns what it returns, raises what it raises."""
        result: Any = None
        try:
            while True:
                effect = protocol.send(result)
                if isinstance(effect, effects.Send):
                    result = await self._asend(effect.call)
                elif isinstance(effect, effects.Sleep):
                    await asyncio.sleep(effect.seconds)
                    result = None
                elif isinstance(effect, effects.Note):
                    self._note(effect.message)
                    result = None
                elif isinstance(effect, effects.GetToken):
                    result = self._announce(await self.state.tokens.aget(self._amint, stale=effect.stale))
                else:
                    effects.unhandled(effect)
        except StopIteration as done:
            return done.value

    async def _amint(self) -> MintedToken:
        return await self.arun(mint(self.state, self.policy))

    async def _asend(self, call: effects.HttpCall) -> effects.HttpResult | effects.TransportFailure:
        self.state.requests_sent += 1
        client = self._async_client()
        per_call = httpx.Timeout(call.timeout) if call.timeout else client.timeout
        try:
            # wait_for bounds the whole request (connect, headers, body), as the sync driver does; its
            # slack lets httpx's own connect timeout (a request that certainly never left) fire first.
            response = await asyncio.wait_for(
                client.request(call.method, call.url, **call.request_kwargs(), timeout=per_call),
                whole_request_seconds(call.timeout or self.state.config.timeout),
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            return effects.TransportFailure(self._failure_text(error), before_send=True)
        except asyncio.TimeoutError:
            return effects.TransportFailure(self._failure_text(None, "no whole answer within the timeout"), False)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError, ValueError) as error:
            return effects.TransportFailure(self._failure_text(error, "request not sendable"), before_send=True)
        except httpx.HTTPError as error:
            return effects.TransportFailure(self._failure_text(error), before_send=False)
        self._count(response.elapsed.total_seconds(), len(response.content))
        return effects.HttpResult(response.status_code, response.content, dict(response.headers))

    def _async_client(self) -> httpx.AsyncClient:
        clients = _ASYNC_CLIENTS.setdefault(asyncio.get_running_loop(), {})
        config = self.state.config
        if config.fingerprint not in clients:
            verify = config.verify
            tls: bool | ssl.SSLContext = (
                ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
            )
            clients[config.fingerprint] = httpx.AsyncClient(
                verify=tls,
                timeout=config.timeout,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            )
        return clients[config.fingerprint]


def whole_request_seconds(timeout: float) -> float:
    """How long one request may take in all: the connection's timeout, plus slack so that a connect
    timeout (the request never left, so it may be repeated) is reported as such rather than as this."""
    return timeout * 1.1 + 0.5


SUBMIT_SLACK = 1.0  # seconds for what a submission does between its requests (reading answers, deciding)


def submit_bound(config: MaxwellConnectionConfig) -> float:
    """The most a job submission takes from its first sending (`SlurmOperations.submit`): its requests and
    pauses end by `submit_timeout`, the last one under way then running out its whole-request slack:
    1.1 x submit_timeout + 0.5 s, and SUBMIT_SLACK."""
    return whole_request_seconds(config.submit_timeout) + SUBMIT_SLACK


def short(error: BaseException) -> str:
    """An exception as one line, without the request (which could carry headers) attached."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"
