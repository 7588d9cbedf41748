"""MaxwellHook: Airflow's face of the Slurm client.

It turns an Airflow Connection into a validated config and the process's state for it, masks every
token minted, logs the client's notes, and offers the methods users and the package's tasks call:
sync ones for workers, and the few async ones the trigger needs (`aclient` for the shared poller,
`aget_accounting_jobs`, `acancel_job`), as the dbt-cloud provider's hook serves its trigger. How a
request is made, retried and renewed lives in client/; what Slurm's versions and answers mean, in slurm/.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook

from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.client.drivers import SlurmClient
from airflow_provider_maxwell.client.exchange import RetryPolicy
from airflow_provider_maxwell.client.state import ConnectionState, connection_state
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.slurm.job import SlurmJob, parse_job_id
from airflow_provider_maxwell.watch import WatchSpec, watch

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import Connection

# Hooks in one event loop (a triggerer's) share a connection lookup for this long: a thousand
# triggers starting together ask Airflow once, and an edited connection is read within seconds.
CONNECTION_LOOKUP_REUSE = 5.0


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

    _lookups: ClassVar[
        weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Task[Connection]]]]
    ] = weakref.WeakKeyDictionary()

    def __init__(
        self, maxwell_conn_id: str = default_conn_name, *, retry_limit: int = 5, retry_delay: float = 1.0
    ) -> None:
        super().__init__()
        self.maxwell_conn_id = maxwell_conn_id
        self.policy = RetryPolicy(limit=max(1, retry_limit), delay=retry_delay)
        self._client: SlurmClient | None = None

    # ------------------------------------------------------------------ connection form (Airflow 3.1)

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

    # ------------------------------------------------------------------ connection -> client

    def _client_for(self, conn: Connection) -> SlurmClient:
        config = MaxwellConnectionConfig.from_connection(
            self.maxwell_conn_id,
            host=conn.host,
            login=conn.login,
            password=conn.password,
            extra=conn.extra_dejson,
        )
        self._client = SlurmClient(connection_state(config), self.policy, note=self._log_note, minted=self._mask)
        self._mask_connection_secrets(config)
        return self._client

    @staticmethod
    def _mask_connection_secrets(config: MaxwellConnectionConfig) -> None:
        """Every secret the connection holds, whatever its field's name (Airflow masks extra fields only
        when their names look secret; `signing_key` does not)."""
        from airflow.sdk.log import mask_secret

        for secret in config.secret_texts:
            mask_secret(secret)

    @property
    def client(self) -> SlurmClient:
        """This hook's Slurm client; the connection is looked up (blocking) on first use."""
        return self._client or self._client_for(self.get_connection(self.maxwell_conn_id))

    async def aclient(self) -> SlurmClient:
        """`client` for async callers: the connection is looked up without blocking the event loop, once
        for all hooks of the same connection starting together in this loop."""
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        lookups = self._lookups.setdefault(loop, {})
        began, lookup = lookups.get(self.maxwell_conn_id, (0.0, None))
        if lookup is None or monotonic() - began > CONNECTION_LOOKUP_REUSE:
            lookup = loop.create_task(self._lookup_connection())
            lookups[self.maxwell_conn_id] = (monotonic(), lookup)
        # shield: one waiter cancelled (its trigger removed) does not cancel the lookup for the others
        return self._client_for(await asyncio.shield(lookup))

    async def _lookup_connection(self) -> Connection:
        try:
            return await BaseHook.aget_connection(self.maxwell_conn_id)
        except ImportError:
            # Airflow 3.1 looks connections up asynchronously only inside a task or triggerer
            # (it needs their supervisor); elsewhere (scripts, tests) the sync lookup does.
            return await asyncio.to_thread(self.get_connection, self.maxwell_conn_id)

    @property
    def state(self) -> ConnectionState:
        """This process's state of the connection (token cache, negotiated version)."""
        return self.client.state

    @property
    def config(self) -> MaxwellConnectionConfig:
        """The validated connection settings."""
        return self.state.config

    def _log_note(self, message: str) -> None:
        self.log.info("%s", message)

    def _mask(self, state: ConnectionState, token: MintedToken) -> None:
        from airflow.sdk.log import mask_secret

        for secret in state.source.secrets(token):
            mask_secret(secret)
        # Every process of a host sharing a token starts using it: only one of them minted it.
        how = (
            "Minted a Slurm token"
            if state.tokens.minted_here(token)
            else "Using the Slurm token another process of this host minted"
        )
        self.log.info(
            "%s for %s on connection %s via %s, valid until %s",
            how,
            state.config.login,
            state.config.conn_id,
            state.source.method,
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(token.expires_at)),
        )

    # ------------------------------------------------------------------ public API

    def get_token(self) -> str:
        """A valid Slurm token for the connection's user, minted or renewed as needed."""
        client = self.client
        return client.run(client.ops.token()).value

    @property
    def api_version(self) -> str:
        """The REST API version spoken with the server (negotiated once per process and connection)."""
        client = self.client
        return client.run(client.ops.dialect()).version

    def submit_job(self, script: str, **fields: Any) -> int:
        """Submit a batch job; returns its job id. `fields` are version-neutral (see slurm/submit.py)."""
        client = self.client
        return client.run(client.ops.submit(script, fields))

    def get_job(self, job_id: int | str) -> SlurmJob:
        """The job as slurmctld knows it, or its final accounting record once slurmctld forgot it."""
        client = self.client
        return client.run(client.ops.job(parse_job_id(job_id)))

    def get_accounting_job(self, job_id: int | str) -> SlurmJob | None:
        """The newest accounting record under `job_id` (None while there is none yet).

        After a Slurm state reset that may be an older job's, even another user's, until accounting
        has this one: check `user` and `submit_time`, or wait with `wait_for_job`, which does.
        """
        client = self.client
        return client.run(client.ops.accounting_job(parse_job_id(job_id)))

    def get_controller_jobs(self, job_id: int | str) -> list[SlurmJob] | None:
        """Every slurmctld record under `job_id` (all tasks of an array); None once slurmctld forgot it."""
        client = self.client
        return client.run(client.ops.controller_jobs(parse_job_id(job_id)))

    def get_accounting_jobs(self, job_id: int | str) -> list[SlurmJob]:
        """Every accounting record under `job_id` (all tasks of an array), with their steps."""
        client = self.client
        return client.run(client.ops.accounting_jobs(parse_job_id(job_id)))

    async def aget_accounting_jobs(self, job_id: int | str) -> list[SlurmJob]:
        """Async twin of `get_accounting_jobs` (the trigger reads an ended job's usage with it)."""
        client = await self.aclient()
        return await client.arun(client.ops.accounting_jobs(parse_job_id(job_id)))

    def find_jobs_by_name(self, name: str, since: float | None = None) -> list[SlurmJob]:
        """This user's jobs named `name` (active after `since`, epoch seconds, if given), oldest first:
        used to re-attach after a crash. Held jobs are not found (accounting does not list them)."""
        client = self.client
        return client.run(client.ops.find_jobs_by_name(name, since))

    def wait_for_job(self, spec: WatchSpec, between_polls: Callable[[], None] | None = None) -> list[SlurmJob]:
        """Block until the job (every task of an array) has its final accounting record, with what its steps
        measured; `between_polls` runs before each pause (the operator copies new output lines to the task
        log there). Triggers do not poll one job each: they share triggers/poller.py."""
        client = self.client
        if between_polls is None:
            return client.run(watch(client.ops, spec))
        from airflow_provider_maxwell.live_output import before_each_sleep

        return client.run(before_each_sleep(watch(client.ops, spec), between_polls))

    def cancel_job(self, job_id: int | str, signal: str | int | None = None) -> None:
        """Cancel (or signal) a job. Signalling a job that already ended is not an error."""
        client = self.client
        client.run(client.ops.cancel(parse_job_id(job_id), signal))

    async def acancel_job(self, job_id: int | str, signal: str | int | None = None) -> None:
        """Async twin of `cancel_job`."""
        client = await self.aclient()
        await client.arun(client.ops.cancel(parse_job_id(job_id), signal))

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's Test button (and `maxwell-connection test CONN_ID`): mints a token, negotiates the
        version, asks slurmctld for `diag`.

        `ping` and `/openapi/v3` answer without checking the token: `diag` is the cheap call that does.
        """
        try:
            client = self._client_for(self.get_connection(self.maxwell_conn_id))
            dialect = client.run(client.ops.diag())
        except Exception as error:
            return False, without_connection_id(str(error), self.maxwell_conn_id)
        state = client.state
        return True, (
            f"Connected to Slurm {state.release or '(release unknown)'} as {state.config.login} via REST API "
            f"{dialect.version} (auth_method={state.config.auth_method})"
        )


def without_connection_id(message: str, conn_id: str) -> str:
    """A Test button's message without the connection's id: Airflow's API server (3.1 to 3.3 at least)
    tests a connection under a random temporary id, which would mean nothing to the user, and keeps the
    user's id to itself. Whoever asked knows which connection they test (the UI's form is open beside
    the message; the CLI prints the id before it)."""
    message = message.replace(f"Maxwell connection {conn_id!r}", "This Maxwell connection")
    message = message.replace(f"connection {conn_id!r}", "this connection")
    return re.sub(rf"'{re.escape(conn_id)}'|(?<![\w-]){re.escape(conn_id)}(?![\w-])", "this connection", message)
