"""MaxwellHook: the only place that talks HTTP.

It reads the Connection, gets tokens (auth/), negotiates the API version and turns version-neutral
calls into requests and answers into SlurmJob (slurm/). The retry, renewal and fallback logic is
written once as generators of effects (effects.py); `_run` carries them out with requests for
workers, `_arun` with httpx for the triggerer.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import httpx
import requests
from airflow.sdk import BaseHook

from airflow_provider_maxwell.auth.cache import TokenCache
from airflow_provider_maxwell.auth.sources import TokenSource, token_source
from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import (
    GetToken,
    HttpCall,
    HttpResult,
    Note,
    Protocol,
    Send,
    Sleep,
    TransportFailure,
)
from airflow_provider_maxwell.exceptions import (
    MaxwellAuthError,
    SlurmAccountingUnavailable,
    SlurmApiError,
    SlurmJobNotFound,
    SlurmTransientError,
)
from airflow_provider_maxwell.slurm import answers
from airflow_provider_maxwell.slurm.answers import Answer
from airflow_provider_maxwell.slurm.dialects import ApiDialect, negotiate, ping_path_of, served_versions
from airflow_provider_maxwell.slurm.job import SlurmJob, parse_accounting_job, parse_controller_job
from airflow_provider_maxwell.slurm.submit import build_submit_body
from airflow_provider_maxwell.watch import WatchSpec, watch

T = TypeVar("T")
# Hooks in one event loop (a triggerer's) share a connection lookup for this long: a thousand
# triggers starting together ask Airflow once, and an edited connection is read within seconds.
CONNECTION_LOOKUP_REUSE = 5.0
OPENAPI_PATHS = ("/openapi/v3", "/openapi.json", "/openapi")


@dataclass
class ConnectionState:
    """What one process keeps per connection (and its exact settings): token, version, release."""

    config: MaxwellConnectionConfig
    source: TokenSource
    tokens: TokenCache = field(default_factory=TokenCache)
    dialect: ApiDialect | None = None
    release: str | None = None
    requests_sent: int = 0
    last_response_seconds: float = 0.0  # how long the server took to answer the last request


_STATES: dict[str, ConnectionState] = {}
_STATES_LOCK = threading.RLock()  # reentrant: on_kill may run in a signal handler while it is held


def connection_state(config: MaxwellConnectionConfig) -> ConnectionState:
    """The process-wide state of a connection with exactly these settings (made on first use)."""
    with _STATES_LOCK:
        state = _STATES.get(config.fingerprint)
        if state is None:
            state = _STATES[config.fingerprint] = ConnectionState(config, token_source(config))
        return state


class MaxwellHook(BaseHook):
    """Submit, inspect and cancel Slurm jobs on Maxwell through slurmrestd.

    :param maxwell_conn_id: an Airflow connection of type ``maxwell``.
    :param retry_limit: attempts for requests that fail on the way (connection errors, 502/503/504).
    :param retry_delay: first backoff in seconds; doubles each attempt, capped at 30 s, with jitter.
    """

    conn_name_attr = "maxwell_conn_id"
    default_conn_name = "maxwell_default"
    conn_type = "maxwell"
    hook_name = "DESY Maxwell (Slurm REST)"

    _async_clients: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]]] = (
        weakref.WeakKeyDictionary()
    )
    _lookups: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Task]]]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(
        self, maxwell_conn_id: str = default_conn_name, *, retry_limit: int = 5, retry_delay: float = 1.0
    ) -> None:
        super().__init__()
        self.maxwell_conn_id = maxwell_conn_id
        self.retry_limit = max(1, retry_limit)
        self.retry_delay = retry_delay
        self._state: ConnectionState | None = None

    # ------------------------------------------------------------------ connection and state

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Connection form fields for Airflow 3.1; 3.2 on read them from provider_info and skip this."""
        from airflow_provider_maxwell.provider_info import legacy_form_widgets

        return legacy_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form labels for Airflow 3.1; 3.2 on read them from provider_info and skip this."""
        from airflow_provider_maxwell.provider_info import legacy_field_behaviour

        return legacy_field_behaviour()

    @staticmethod
    def _config_from(conn_id: str, conn: Any) -> MaxwellConnectionConfig:
        return MaxwellConnectionConfig.from_connection(
            conn_id, host=conn.host, login=conn.login, password=conn.password, extra=conn.extra_dejson
        )

    @property
    def state(self) -> ConnectionState:
        """This hook's connection state (token cache, negotiated version), looked up on first use."""
        if self._state is None:
            self._state = connection_state(
                self._config_from(self.maxwell_conn_id, self.get_connection(self.maxwell_conn_id))
            )
        return self._state

    async def astate(self) -> ConnectionState:
        """`state` for async callers: the connection is looked up without blocking the event loop."""
        if self._state is None:
            loop = asyncio.get_running_loop()
            lookups = self._lookups.setdefault(loop, {})
            began, lookup = lookups.get(self.maxwell_conn_id, (0.0, None))
            if lookup is None or loop.time() - began > CONNECTION_LOOKUP_REUSE:
                lookup = loop.create_task(self._lookup_connection())
                lookups[self.maxwell_conn_id] = (loop.time(), lookup)
            # shield: one waiter cancelled (its trigger removed) does not cancel the lookup for the others
            conn = await asyncio.shield(lookup)
            self._state = connection_state(self._config_from(self.maxwell_conn_id, conn))
        return self._state

    async def _lookup_connection(self) -> Any:
        try:
            return await BaseHook.aget_connection(self.maxwell_conn_id)
        except ImportError:
            # Airflow 3.1 looks connections up asynchronously only inside a task or triggerer
            # (it needs their supervisor); elsewhere (scripts, tests) the sync lookup does.
            return await asyncio.to_thread(self.get_connection, self.maxwell_conn_id)

    @property
    def config(self) -> MaxwellConnectionConfig:
        """The validated connection settings."""
        return self.state.config

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        # Credentials must never follow a redirect to another origin: requests drops the Authorization
        # header itself, and our Slurm headers are re-checked in _send_sync.
        session.max_redirects = 3
        return session

    # ------------------------------------------------------------------ drivers (the only I/O)

    def _run(self, protocol: Protocol[T]) -> T:
        state = self.state
        result: Any = None
        try:
            while True:
                effect = protocol.send(result)
                if isinstance(effect, Send):
                    result = self._send_sync(state, effect.call)
                elif isinstance(effect, Sleep):
                    time.sleep(effect.seconds)
                    result = None
                elif isinstance(effect, Note):
                    self.log.info("%s", effect.message)
                    result = None
                else:
                    result = state.tokens.get(lambda: self._mint_sync(state), stale=effect.stale)
        except StopIteration as done:
            return done.value

    async def _arun(self, protocol: Protocol[T]) -> T:
        state = await self.astate()
        result: Any = None
        try:
            while True:
                effect = protocol.send(result)
                if isinstance(effect, Send):
                    result = await self._send_async(state, effect.call)
                elif isinstance(effect, Sleep):
                    await asyncio.sleep(effect.seconds)
                    result = None
                elif isinstance(effect, Note):
                    self.log.info("%s", effect.message)
                    result = None
                else:
                    result = await state.tokens.aget(lambda: self._mint_async(state), stale=effect.stale)
        except StopIteration as done:
            return done.value

    def _mint_sync(self, state: ConnectionState) -> MintedToken:
        token = self._run(self._mint(state))
        self._mask(state, token)
        return token

    async def _mint_async(self, state: ConnectionState) -> MintedToken:
        token = await self._arun(self._mint(state))
        self._mask(state, token)
        return token

    def _mint(self, state: ConnectionState) -> Protocol[MintedToken]:
        """Mint through the connection's auth method, retrying only when the exchange got no answer."""
        for attempt in range(self.retry_limit):
            try:
                return (yield from state.source.mint())
            except MaxwellAuthError as error:
                if "no answer from" not in str(error) or attempt + 1 >= self.retry_limit:
                    raise
                yield Sleep(self._backoff(attempt))
        raise AssertionError("unreachable")

    def _mask(self, state: ConnectionState, token: MintedToken) -> None:
        from airflow.sdk.log import mask_secret

        for secret in state.source.secrets(token):
            mask_secret(secret)
        self.log.info(
            "Minted a Slurm token for %s on connection %s via %s, valid until %s",
            state.config.login,
            state.config.conn_id,
            state.source.method,
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(token.expires_at)),
        )

    def _send_sync(self, state: ConnectionState, call: HttpCall) -> HttpResult | TransportFailure:
        state.requests_sent += 1
        try:
            response = self._session.request(
                call.method,
                call.url,
                **call.request_kwargs(),
                timeout=state.config.timeout,
                verify=state.config.verify,
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout as error:
            return TransportFailure(_short(error), before_send=True)
        except requests.exceptions.SSLError as error:
            return TransportFailure(f"TLS verification failed: {_short(error)}", before_send=True)
        except requests.exceptions.ConnectionError as error:
            refused = "refused" in str(error).lower() or "NewConnectionError" in repr(error)
            return TransportFailure(_short(error), before_send=refused)
        except requests.exceptions.Timeout as error:
            return TransportFailure(_short(error), before_send=False)
        state.last_response_seconds = response.elapsed.total_seconds()
        return HttpResult(response.status_code, response.content, dict(response.headers))

    async def _send_async(self, state: ConnectionState, call: HttpCall) -> HttpResult | TransportFailure:
        state.requests_sent += 1
        client = self._async_client(state)
        try:
            response = await client.request(call.method, call.url, **call.request_kwargs())
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            return TransportFailure(_short(error), before_send=True)
        except httpx.TransportError as error:
            return TransportFailure(_short(error), before_send=False)
        state.last_response_seconds = response.elapsed.total_seconds()
        return HttpResult(response.status_code, response.content, dict(response.headers))

    def _async_client(self, state: ConnectionState) -> httpx.AsyncClient:
        """One pooled client per event loop and connection settings (the triggerer shares it)."""
        loop = asyncio.get_running_loop()
        clients = self._async_clients.setdefault(loop, {})
        key = state.config.fingerprint
        if key not in clients:
            verify = state.config.verify
            tls: bool | ssl.SSLContext = (
                ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
            )
            clients[key] = httpx.AsyncClient(
                verify=tls,
                timeout=state.config.timeout,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            )
        return clients[key]

    def _backoff(self, attempt: int) -> float:
        return min(self.retry_delay * 2**attempt, 30.0) * random.uniform(0.8, 1.2)

    # ------------------------------------------------------------------ protocol (no I/O below)

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        resend_safe: bool = True,
    ) -> Protocol[Answer]:
        """One REST call with token, one renewal on a refused token, and retries where they are safe.

        `resend_safe=False` (job submission): the request is repeated only when it certainly never
        reached slurmrestd, so a job is never submitted twice by a blind retry.
        """
        state = self.state
        url = f"{state.config.host}{path}"
        stale: str | None = None
        renewed = False
        attempt = 0
        while True:
            token = yield GetToken(stale)
            headers = {
                "X-SLURM-USER-NAME": state.config.login,
                "X-SLURM-USER-TOKEN": token.value,
                "Accept": "application/json",
            }
            result = yield Send(HttpCall(method, url, params=params, json=body, headers=headers))
            attempt += 1
            if isinstance(result, TransportFailure):
                if (resend_safe or result.before_send) and attempt < self.retry_limit:
                    yield from self._pause_to_retry(
                        f"Slurm REST API unreachable ({result.message})", attempt, method, url
                    )
                    continue
                raise SlurmTransientError(
                    f"Slurm REST API unreachable after {attempt} attempt(s) ({result.message})", status=None, url=url
                )
            answer = answers.read_answer(result.status, result.body)
            if 300 <= answer.status < 400:
                raise SlurmApiError(
                    f"Slurm REST API redirected to {_header(result.headers, 'location')!r}; "
                    "credentials are not sent on. Set the connection's host to the final URL",
                    status=answer.status,
                    url=url,
                )
            definite = answers.is_auth_failure(answer)
            ambiguous = not definite and answers.may_be_auth_failure(answer, path)
            if ambiguous and (down := (yield from self._controller_down(path, headers))):
                # slurmctld is stopped or restarting: its "error -1" is no verdict on the token.
                if resend_safe and attempt < self.retry_limit:
                    yield from self._pause_to_retry(down, attempt, method, url)
                    continue
                raise SlurmTransientError(down, status=answer.status, url=url, errors=answer.errors)
            if definite or ambiguous:
                if not renewed:
                    renewed, stale = True, token.value
                    continue
                if "/slurmdb/" in path and answer.has_code(answers.ACCOUNTING_CONNECT_ERROR):
                    raise SlurmAccountingUnavailable(
                        "Slurm accounting (slurmdbd) is unavailable",
                        status=answer.status,
                        url=url,
                        errors=answer.errors,
                    )
                raise MaxwellAuthError(
                    f"Slurm {'refused' if definite else 'failed on'} a freshly minted token for user "
                    f"{state.config.login!r} (connection {state.config.conn_id!r}, auth_method="
                    f"{state.config.auth_method}): HTTP {answer.status} from {url}"
                    + (f": {'; '.join(map(str, answer.errors))}" if answer.errors else "")
                    + ". Check the token's source (portal token, password, key) and that the user has a Slurm account"
                )
            malformed = answer.status < 300 and answer.document is None
            if (
                malformed
                or answers.is_transient(answer)
                or (answer.status >= 500 and not answer.is_slurm and not answer.errors)
            ):
                if resend_safe and attempt < self.retry_limit:
                    why = f"Slurm REST API answered HTTP {answer.status}"
                    yield from self._pause_to_retry(why, attempt, method, url, _retry_after(result.headers))
                    continue
                what = "answered with a body that is not a JSON object" if malformed else "unavailable"
                raise SlurmTransientError(
                    f"Slurm REST API {what} ({answer.body_excerpt!r})",
                    status=answer.status,
                    url=url,
                    retry_after=_retry_after(result.headers),
                )
            if state.release is None and answer.release:
                state.release = answer.release
            return answer

    def _pause_to_retry(
        self, why: str, attempt: int, method: str, url: str, delay: float | None = None
    ) -> Protocol[None]:
        """Say why and when the request is repeated, then wait: `delay` (a Retry-After) or the backoff."""
        delay = delay or self._backoff(attempt - 1)
        yield Note(f"{why}; retry {attempt} of {self.retry_limit - 1} in {delay:.1f} s: {method} {url}")
        yield Sleep(delay)

    def _controller_down(self, path: str, headers: Mapping[str, str]) -> Protocol[str | None]:
        """Why slurmctld cannot answer, if its ping says so (ping checks no token); else None."""
        ping = ping_path_of(path)
        if ping is None or not path.startswith("/slurm/"):
            return None
        url = f"{self.state.config.host}{ping}"
        result = yield Send(HttpCall("GET", url, headers=dict(headers)))
        if isinstance(result, TransportFailure):
            return None
        if answers.controller_down(answers.read_answer(result.status, result.body)):
            return f"slurmctld is not responding (ping at {url})"
        return None

    def _dialect(self) -> Protocol[ApiDialect]:
        """The API version to speak: explicit in the connection, else negotiated once per process."""
        state = self.state
        if state.dialect is not None:
            return state.dialect
        config = state.config
        offered: set[str] = set()
        if config.api_version == "auto":
            for path in OPENAPI_PATHS:
                answer = yield from self._exchange("GET", path)
                if answer.status == 200 and answer.document is not None:
                    offered = served_versions(answer.document)
                    info = answer.document.get("info") or {}
                    release = (info.get("x-slurm") or {}).get("release") if isinstance(info, Mapping) else None
                    state.release = state.release or release
                    break
                if answer.status != 404:
                    raise SlurmApiError(
                        "Could not read the server's API versions",
                        status=answer.status,
                        url=f"{config.host}{path}",
                        errors=answer.errors,
                    )
        dialect = negotiate(offered, config.api_version)
        if state.release is None:
            yield from self._exchange("GET", dialect.ping_path())
        state.dialect = dialect
        self.log.info(
            "Maxwell connection %s: Slurm %s, REST API %s (%s)",
            config.conn_id,
            state.release or "(release unknown)",
            dialect.version,
            f"server offers {', '.join(sorted(offered))}" if offered else "set in the connection",
        )
        return dialect

    def _submit(self, script: str, fields: Mapping[str, Any]) -> Protocol[int]:
        dialect = yield from self._dialect()
        config = self.state.config
        body = build_submit_body(dialect, script, fields, default_cwd=f"/home/{config.login}")
        answer = yield from self._exchange("POST", dialect.submit_path(), body=body, resend_safe=False)
        job_id = (answer.document or {}).get("job_id")
        if answers.is_error(answer) or not isinstance(job_id, int):
            raise SlurmApiError(
                "Slurm refused the job",
                status=answer.status,
                url=f"{config.host}{dialect.submit_path()}",
                errors=answer.errors,
            )
        return job_id

    def _controller_jobs(self, job_id: int) -> Protocol[list[SlurmJob] | None]:
        """All records slurmctld has under `job_id` (an array's tasks too); None once it forgot the job."""
        dialect = yield from self._dialect()
        path = dialect.job_path(job_id)
        answer = yield from self._exchange("GET", path)
        if answers.is_unknown_job(answer):
            return None
        if answers.is_error(answer):
            raise SlurmApiError(
                f"Could not read Slurm job {job_id}",
                status=answer.status,
                url=f"{self._url(path)}",
                errors=answer.errors,
            )
        return [parse_controller_job(doc) for doc in _job_documents(answer)]

    def _controller_listing(self) -> Protocol[list[SlurmJob]]:
        """Every job slurmctld holds (all users): large on a busy cluster, so used only where nothing
        narrower exists."""
        dialect = yield from self._dialect()
        answer = yield from self._exchange("GET", dialect.jobs_path())
        if answers.is_error(answer):
            raise SlurmApiError(
                "Could not list Slurm jobs",
                status=answer.status,
                url=self._url(dialect.jobs_path()),
                errors=answer.errors,
            )
        return [parse_controller_job(doc) for doc in _job_documents(answer)]

    def _accounting_query(
        self, path: str, what: str, params: Mapping[str, str] | None = None, missing_ok: bool = False
    ) -> Protocol[list[SlurmJob]]:
        """GET an accounting path and parse its jobs; 7000 after a renewal means slurmdbd is down."""
        dialect = yield from self._dialect()
        answer = yield from self._exchange("GET", path, params=params)
        if answer.has_code(answers.ACCOUNTING_CONNECT_ERROR):
            raise SlurmAccountingUnavailable(
                "Slurm accounting (slurmdbd) is unavailable",
                status=answer.status,
                url=self._url(path),
                errors=answer.errors,
            )
        if answers.is_error(answer) and not (missing_ok and answer.status == 404 and answer.is_slurm):
            raise SlurmApiError(what, status=answer.status, url=self._url(path), errors=answer.errors)
        reliable = dialect.accounting_exit_code_reliable
        return [parse_accounting_job(doc, exit_code_reliable=reliable) for doc in _job_documents(answer)]

    def _accounting_jobs(self, job_id: int) -> Protocol[list[SlurmJob]]:
        """Every accounting record under `job_id`; [] while accounting has none (yet)."""
        dialect = yield from self._dialect()
        return (
            yield from self._accounting_query(
                dialect.accounting_job_path(job_id),
                f"Could not read accounting for Slurm job {job_id}",
                missing_ok=True,
            )
        )

    def _accounting_listing(self, job_ids: list[int], since: float) -> Protocol[list[SlurmJob]]:
        """Accounting records of many jobs of the connection's user at once (the shared poller's one call)."""
        dialect = yield from self._dialect()
        records: list[SlurmJob] = []
        # A window end far ahead: jobs waiting for a begin time count as eligible only before it.
        until = time.time() + 366 * 86400
        for params in dialect.accounting_listing(self.state.config.login, since, until, job_ids):
            records += yield from self._accounting_query(
                dialect.accounting_jobs_path(), f"Could not list accounting records of {len(job_ids)} jobs", params
            )
        return records

    def _get_accounting_job(self, job_id: int) -> Protocol[SlurmJob | None]:
        records = yield from self._accounting_jobs(job_id)
        return _pick(records, job_id)

    def _get_job(self, job_id: int) -> Protocol[SlurmJob]:
        live = yield from self._controller_jobs(job_id)
        if live:
            job = _pick(live, job_id)
            if job is not None:
                return job
        # slurmctld forgot the job (MinJobAge passed): its final record lives in accounting.
        final = yield from self._get_accounting_job(job_id)
        if final is None:
            dialect = yield from self._dialect()
            raise SlurmJobNotFound(job_id, status=None, url=self._url(dialect.job_path(job_id)))
        return final

    def _find_jobs_by_name(self, name: str) -> Protocol[list[SlurmJob]]:
        """This user's jobs named `name`, oldest first: slurmctld's live ones (current right after
        submission, when accounting may lag) and accounting's (which keeps them after the purge)."""
        dialect = yield from self._dialect()
        config = self.state.config
        # One entry per job: an id alone is not one after a state reset, when accounting holds
        # several jobs under it (oldest first), often of the same name.
        found = {(j.job_id, j.submitted): j for j in (yield from self._controller_listing())}
        found_in_accounting = yield from self._accounting_query(
            dialect.accounting_jobs_path(),
            f"Could not search accounting for jobs named {name!r}",
            params=dialect.accounting_search(name, config.login),
        )
        for job in found_in_accounting:
            # slurmctld's record is the current one while it has the job
            found.setdefault((job.job_id, job.submitted), job)
        mine = [j for j in found.values() if j.name == name and j.user == config.login]
        return sorted(mine, key=lambda j: j.submitted)

    def _cancel(self, job_id: int, signal: str | int | None) -> Protocol[None]:
        dialect = yield from self._dialect()
        path = dialect.job_path(job_id)
        params = {"signal": str(signal)} if signal is not None else None
        answer = yield from self._exchange("DELETE", path, params=params)
        if answers.is_unknown_job(answer):
            raise SlurmJobNotFound(job_id, status=answer.status, url=self._url(path), errors=answer.errors)
        if answers.is_error(answer):
            raise SlurmApiError(
                f"Could not cancel Slurm job {job_id}", status=answer.status, url=self._url(path), errors=answer.errors
            )

    def _url(self, path: str) -> str:
        return f"{self.state.config.host}{path}"

    # ------------------------------------------------------------------ public API

    def get_token(self) -> str:
        """A valid Slurm token for the connection's user, minted or renewed as needed."""
        return self._run(self._token()).value

    async def aget_token(self) -> str:
        """Async twin of `get_token`."""
        return (await self._arun(self._token())).value

    @staticmethod
    def _token() -> Protocol[MintedToken]:
        token: MintedToken = yield GetToken()
        return token

    @property
    def api_version(self) -> str:
        """The REST API version spoken with the server (negotiated once per process and connection)."""
        return self._run(self._dialect()).version

    def submit_job(self, script: str, **fields: Any) -> int:
        """Submit a batch job; returns its job id. `fields` are version-neutral (see slurm/submit.py)."""
        return self._run(self._submit(script, fields))

    async def asubmit_job(self, script: str, **fields: Any) -> int:
        """Async twin of `submit_job`."""
        await self.astate()
        return await self._arun(self._submit(script, fields))

    def get_job(self, job_id: int) -> SlurmJob:
        """The job as slurmctld knows it, or its final accounting record once slurmctld forgot it."""
        return self._run(self._get_job(_job_id(job_id)))

    async def aget_job(self, job_id: int) -> SlurmJob:
        """Async twin of `get_job`."""
        await self.astate()
        return await self._arun(self._get_job(_job_id(job_id)))

    def get_accounting_job(self, job_id: int) -> SlurmJob | None:
        """The newest accounting record under `job_id` (None while there is none yet).

        After a Slurm state reset that may be an older job's, even another user's, until accounting
        has this one: check `user` and `submit_time`, or wait with `wait_for_job`, which does.
        """
        return self._run(self._get_accounting_job(_job_id(job_id)))

    async def aget_accounting_job(self, job_id: int) -> SlurmJob | None:
        """Async twin of `get_accounting_job`."""
        await self.astate()
        return await self._arun(self._get_accounting_job(_job_id(job_id)))

    def get_controller_jobs(self, job_id: int) -> list[SlurmJob] | None:
        """Every slurmctld record under `job_id` (all tasks of an array); None once slurmctld forgot it."""
        return self._run(self._controller_jobs(_job_id(job_id)))

    def get_accounting_jobs(self, job_id: int) -> list[SlurmJob]:
        """Every accounting record under `job_id` (all tasks of an array)."""
        return self._run(self._accounting_jobs(_job_id(job_id)))

    def find_jobs_by_name(self, name: str) -> list[SlurmJob]:
        """This user's jobs named `name`, oldest first (used to re-attach after a crash)."""
        return self._run(self._find_jobs_by_name(name))

    def wait_for_job(self, spec: WatchSpec) -> list[SlurmJob]:
        """Block until the job (every task of an array) has its final accounting record."""
        return self._run(watch(self, spec))

    async def await_job(self, spec: WatchSpec) -> list[SlurmJob]:
        """Async twin of `wait_for_job`: poll this one job until it ends (triggers use the shared poller instead)."""
        await self.astate()
        return await self._arun(watch(self, spec))

    def cancel_job(self, job_id: int, signal: str | int | None = None) -> None:
        """Cancel (or signal) a job. Signalling a job that already ended is not an error."""
        self._run(self._cancel(_job_id(job_id), signal))

    async def acancel_job(self, job_id: int, signal: str | int | None = None) -> None:
        """Async twin of `cancel_job`."""
        await self.astate()
        await self._arun(self._cancel(_job_id(job_id), signal))

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's Test button: mints a token, negotiates the version, asks slurmctld for `diag`.

        `ping` and `/openapi/v3` answer without checking the token: `diag` is the cheap call that does.
        """
        try:
            dialect = self._run(self._dialect())
            answer = self._run(self._exchange("GET", dialect.diag_path()))
            if answers.is_error(answer):
                raise SlurmApiError(
                    "Slurm refused the diagnostic call",
                    status=answer.status,
                    url=self._url(dialect.diag_path()),
                    errors=answer.errors,
                )
        except Exception as error:
            return False, str(error)
        state = self.state
        return True, (
            f"Connected to Slurm {state.release or '(release unknown)'} as {state.config.login} via REST API "
            f"{dialect.version} (auth_method={state.config.auth_method})"
        )


def _job_id(value: Any) -> int:
    from airflow_provider_maxwell.exceptions import MaxwellConfigError

    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) <= 0:
        raise MaxwellConfigError(
            f"job_id must be a Slurm job id (a positive whole number), not {value!r}: "
            "check the value or template that gives it (e.g. the submitting task's XCom)"
        )
    return int(text)


def _job_documents(answer: Answer) -> list[Mapping[str, Any]]:
    jobs = (answer.document or {}).get("jobs")
    return [j for j in jobs if isinstance(j, Mapping)] if isinstance(jobs, list) else []


def _pick(records: list[SlurmJob], job_id: int) -> SlurmJob | None:
    """The record for `job_id` itself; with several (job ids reused after a reset), the newest."""
    exact = [r for r in records if r.job_id == job_id] or records
    if not exact:
        return None
    return max(exact, key=lambda r: r.submitted)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = _header(headers, "retry-after")
    try:
        return min(float(value), 120.0) if value is not None else None
    except ValueError:
        return None


def _short(error: BaseException) -> str:
    """An exception as one line, without the request (which could carry headers) attached."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"
