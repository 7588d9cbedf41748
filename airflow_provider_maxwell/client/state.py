"""What one process keeps per connection settings, shared by every hook, trigger and poller of it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from airflow_provider_maxwell.auth.cache import TokenCache
from airflow_provider_maxwell.auth.shared import SharedTokenFile
from airflow_provider_maxwell.auth.sources import TokenSource, token_source
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.slurm.dialects import ApiDialect


@dataclass
class ConnectionState:
    """Per process and exact connection settings: the token cache, the negotiated version, the release."""

    config: MaxwellConnectionConfig
    source: TokenSource
    tokens: TokenCache = field(default_factory=TokenCache)
    dialect: ApiDialect | None = None
    release: str | None = None
    requests_sent: int = 0
    last_response_seconds: float = 0.0  # how long the server took to answer the last request
    bytes_received: int = 0  # answer bodies, all requests: what polling costs the network (benchmarks, tests)
    server_seconds: float = 0.0  # the server's answer times summed over all requests


_STATES: dict[str, ConnectionState] = {}
_STATES_LOCK = threading.RLock()  # reentrant: on_kill may run in a signal handler while it is held


def connection_state(config: MaxwellConnectionConfig) -> ConnectionState:
    """The process-wide state of a connection with exactly these settings (made on first use)."""
    with _STATES_LOCK:
        state = _STATES.get(config.fingerprint)
        if state is None:
            source = token_source(config)
            # Only tokens minted over the network are worth sharing: a signing key signs locally, a
            # static token is in the connection already.
            shared = SharedTokenFile.for_connection(config) if source.mints_remotely else None
            state = _STATES[config.fingerprint] = ConnectionState(config, source, TokenCache(shared))
        return state
