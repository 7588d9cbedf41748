"""The drivers against a fake slurmrestd: renewal past a refused token, request counting, notes,
and how transport failures are classified (a refused connection certainly sent nothing)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
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

from .fake_slurm import META

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
