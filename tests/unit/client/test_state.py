"""One state per process and connection settings: every hook, trigger and poller of a connection shares
its token cache and its negotiated version; a connection whose tokens come from a service shares them
with the host's other processes too."""

from __future__ import annotations

import time
from pathlib import Path

from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.client.state import connection_state
from airflow_provider_maxwell.config import MaxwellConnectionConfig


def config(conn_id: str, password: str = "portal-token-of-alice", **extra: object) -> MaxwellConnectionConfig:
    # Each test its own conn_id: the states live for the whole process, and a state made by another
    # test would point at that test's shared folder.
    return MaxwellConnectionConfig.from_connection(
        conn_id, host="https://rest.example", login="alice", password=password, extra=extra
    )


def test_hooks_of_one_connection_share_one_state_and_other_settings_get_their_own():
    first = connection_state(config("state-shared-by-hooks"))
    assert connection_state(config("state-shared-by-hooks")) is first  # a config built anew, same settings
    assert connection_state(config("state-shared-by-hooks", jwt_lifespan=3600)) is not first
    assert connection_state(config("state-shared-by-hooks", password="another-portal-token")) is not first


def test_a_portal_connections_tokens_are_shared_with_the_hosts_other_processes(shared_folder: Path):
    state = connection_state(config("state-portal-shares"))
    assert state.tokens.shared is not None and state.tokens.shared.folder.path == shared_folder
    now = time.time()
    minted = state.tokens.get(lambda: MintedToken("slurm-token-" + "x" * 40, now, now + 3600, "alice"))
    # Another process of the host (its own loader, same settings) adopts it instead of minting.
    assert state.tokens.shared.load() == minted
    assert list(shared_folder.glob("*.token")) == [state.tokens.shared.path]
