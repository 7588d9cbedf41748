"""Tokens shared by the task processes of one host: minted once, encrypted on disk, renewed as before."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from airflow_provider_maxwell import host_files
from airflow_provider_maxwell.auth.cache import TokenCache
from airflow_provider_maxwell.auth.shared import SharedTokenFile
from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.client.state import ConnectionState, connection_state
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from tests.paths import PROJECT

if TYPE_CHECKING:
    from airflow_provider_maxwell.client.drivers import SlurmClient


def config(password: str = "portal-token-of-alice", **extra: object) -> MaxwellConnectionConfig:
    return MaxwellConnectionConfig.from_connection(
        "shared", host="https://rest.example", login="alice", password=password, extra=extra
    )


def token(value: str, life: float = 3600.0) -> MintedToken:
    now = time.time()
    return MintedToken(value=value, issued_at=now, expires_at=now + life, user="alice")


def shared_file(password: str = "portal-token-of-alice") -> SharedTokenFile:
    """The host's token file of `config(password)`, in the test's own folder (conftest's shared_folder)."""
    stored = SharedTokenFile.for_connection(config(password))
    assert stored is not None
    return stored


def client_with_adopted_token(value: str, minted: Callable[[ConnectionState, MintedToken], None]) -> SlurmClient:
    """A client of `config()` whose token `value` another process of the host minted and stored."""
    from airflow_provider_maxwell.auth.sources import token_source
    from airflow_provider_maxwell.client.drivers import SlurmClient
    from airflow_provider_maxwell.client.exchange import RetryPolicy

    cfg, shared = config(), shared_file()
    shared.save(token(value))
    state = ConnectionState(cfg, token_source(cfg), TokenCache(shared))
    return SlurmClient(state, RetryPolicy(), note=lambda _: None, minted=minted)


class Minter:
    """Counts mints; each hands out a new token value."""

    def __init__(self, life: float = 3600.0) -> None:
        self.values: list[str] = []
        self.life = life

    def __call__(self) -> MintedToken:
        self.values.append(f"slurm-token-{len(self.values) + 1}-" + "x" * 40)
        return token(self.values[-1], self.life)


def process_cache(cfg: MaxwellConnectionConfig) -> TokenCache:
    """What a fresh task process would have: its own in-memory cache over the host's shared file."""
    return TokenCache(SharedTokenFile.for_connection(cfg))


def test_a_second_process_adopts_the_token_the_first_one_minted():
    minter = Minter()
    first, second = process_cache(config()), process_cache(config())
    minted = first.get(minter)
    assert second.get(minter).value == minted.value
    assert minter.values == [minted.value] and (first.mints, second.mints, second.adopted) == (1, 0, 1)


def test_a_token_refused_by_slurm_is_replaced_once_for_every_process():
    minter = Minter()
    first, second = process_cache(config()), process_cache(config())
    refused = first.get(minter).value
    second.get(minter)
    renewed = second.get(minter, stale=refused)  # Slurm refused it: the process mints anew, under the lock
    assert renewed.value != refused and len(minter.values) == 2
    # The first process, refused too, finds the replacement instead of minting a third token.
    assert first.get(minter, stale=refused).value == renewed.value and len(minter.values) == 2


def test_a_shared_token_due_for_renewal_is_renewed_not_adopted():
    short = Minter(life=20.0)  # renewal is due 10 % of the life before expiry: 2 s ahead
    first = process_cache(config())
    first.get(short)
    stored = SharedTokenFile.for_connection(config())
    kept = stored.load() if stored is not None else None
    assert stored is not None and kept is not None
    stored.save(MintedToken(value=kept.value, issued_at=kept.issued_at - 19, expires_at=time.time() + 1, user="alice"))
    assert process_cache(config()).get(short).value == short.values[-1] and len(short.values) == 2


def test_a_changed_connection_shares_nothing_with_the_old_one():
    minter = Minter()
    process_cache(config("old-portal-token")).get(minter)
    assert process_cache(config("new-portal-token")).get(minter).value == minter.values[1]
    assert process_cache(config("old-portal-token", jwt_lifespan=3600)).get(minter).value == minter.values[2]


def test_the_file_holds_no_readable_token_and_only_its_user_may_open_it(shared_folder: Path):
    minter = Minter()
    process_cache(config()).get(minter)
    (file,) = shared_folder.glob("*.token")
    content = file.read_bytes()
    value = minter.values[0]
    for form in (value, base64.b64encode(value.encode()).decode(), "portal-token-of-alice", "alice"):
        assert form.encode() not in content
    assert file.stat().st_mode & 0o777 == 0o600 and shared_folder.stat().st_mode & 0o777 == 0o700


def test_a_file_sealed_with_another_secret_is_ignored(shared_folder: Path):
    SharedTokenFile.for_connection(config()).save(token("t" * 40))  # type: ignore[union-attr]
    (file,) = shared_folder.glob("*.token")
    other = SharedTokenFile.for_connection(config("another-portal-token"))
    assert other is not None
    other.path.write_bytes(file.read_bytes())  # same name, wrong key: e.g. a file copied over
    os.chmod(other.path, 0o600)
    assert other.load() is None


@pytest.mark.parametrize("auth_method", ["token", "signing_key"])
def test_sources_that_mint_locally_share_nothing(auth_method: str, shared_folder: Path, monkeypatch):
    extra: dict[str, object] = {"auth_method": auth_method}
    password: str | None = "a.b.c"
    if auth_method == "signing_key":
        extra["signing_secret"] = base64.b64encode(b"k" * 32).decode()
        password = None
    cfg = MaxwellConnectionConfig.from_connection(
        f"local-{auth_method}", host="https://rest.example", login="alice", password=password, extra=extra
    )
    assert connection_state(cfg).tokens.shared is None


def test_sharing_can_be_turned_off(shared_folder: Path):
    assert SharedTokenFile.for_connection(config(shared_cache=False)) is None
    assert SharedTokenFile.for_connection(config(shared_cache="false")) is None
    state: ConnectionState = connection_state(config(shared_cache=False))
    assert state.tokens.shared is None


def test_a_folder_others_can_enter_is_not_used(tmp_path: Path, monkeypatch):
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o755)
    open_folder.chmod(0o755)
    monkeypatch.setenv(host_files.FOLDER_ENV, str(open_folder))
    assert host_files.shared_folder() is None and SharedTokenFile.for_connection(config()) is None


def test_a_planted_file_readable_by_others_is_not_read(shared_folder: Path):
    stored = SharedTokenFile.for_connection(config())
    assert stored is not None
    stored.save(token("t" * 40))
    stored.path.chmod(0o644)
    assert stored.load() is None


def test_concurrent_processes_mint_once(tmp_path: Path, shared_folder: Path):
    # Eight real processes ask at once; each mint takes 0.5 s and is counted in a file.
    mints = tmp_path / "mints"
    program = textwrap.dedent(
        f"""
        import time
        from airflow_provider_maxwell.auth.cache import TokenCache
        from airflow_provider_maxwell.auth.shared import SharedTokenFile
        from airflow_provider_maxwell.auth.tokens import MintedToken
        from airflow_provider_maxwell.config import MaxwellConnectionConfig

        cfg = MaxwellConnectionConfig.from_connection(
            "shared", host="https://rest.example", login="alice", password="portal-token-of-alice", extra={{}}
        )

        def mint():
            time.sleep(0.5)
            with open({str(mints)!r}, "a") as counter:
                counter.write("minted\\n")
            now = time.time()
            return MintedToken(value="tok-%f" % now, issued_at=now, expires_at=now + 3600, user="alice")

        print(TokenCache(SharedTokenFile.for_connection(cfg)).get(mint).value)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    runs = [
        subprocess.Popen([sys.executable, "-c", program], env=env, stdout=subprocess.PIPE, text=True) for _ in range(8)
    ]
    values = {run.communicate(timeout=120)[0].strip() for run in runs}
    assert all(run.returncode == 0 for run in runs)
    assert mints.read_text().count("minted") == 1 and len(values) == 1


def test_the_async_path_adopts_and_mints_under_the_same_rules():
    import asyncio

    minter = Minter()

    async def amint() -> MintedToken:
        return minter()

    first, second = process_cache(config()), process_cache(config())
    minted = asyncio.run(first.aget(amint))
    assert asyncio.run(second.aget(amint)).value == minted.value and len(minter.values) == 1
    renewed = asyncio.run(second.aget(amint, stale=minted.value))
    assert renewed.value != minted.value and asyncio.run(first.aget(amint, stale=minted.value)) == renewed


def test_an_adopted_token_is_handed_to_the_masker_like_a_minted_one():
    masked: list[str] = []
    client = client_with_adopted_token("minted-by-another-process-" + "y" * 30, lambda _, t: masked.append(t.value))
    assert client.run(client.ops.token()).value == masked[0] == "minted-by-another-process-" + "y" * 30
    client.run(client.ops.token())
    assert len(masked) == 1  # told once per token, not per request


def test_threads_sharing_a_hook_tell_the_masker_about_a_token_once():
    # Seen in a benchmark: 8 threads cancelling through one hook logged "Minted a Slurm token" 3 times for
    # one token, because each had checked before the first one had said so.
    import threading

    told: list[str] = []
    first_inside, second_done = threading.Event(), threading.Event()

    def slow_masker(_state: object, minted: MintedToken) -> None:
        told.append(minted.value)
        first_inside.set()
        second_done.wait(5)  # the first thread is still telling when the second one asks

    client = client_with_adopted_token("minted-by-another-process-" + "z" * 30, slow_masker)
    first = threading.Thread(target=lambda: client.run(client.ops.token()))
    first.start()
    assert first_inside.wait(5)
    assert client.run(client.ops.token()).value == "minted-by-another-process-" + "z" * 30
    second_done.set()
    first.join(5)
    assert told == ["minted-by-another-process-" + "z" * 30]


def test_the_file_name_carries_nothing_of_the_secret(monkeypatch: pytest.MonkeyPatch):
    # Anyone who can list the folder sees the names: a name derived from the secret, however slowly,
    # lets them test guesses of a password offline. Connections differing only in the secret share a name.
    from airflow_provider_maxwell.auth import shared

    calls: list[bytes] = []
    monkeypatch.setattr(shared.hashlib, "scrypt", lambda password, **_: calls.append(password) or b"k" * 64)
    names = {
        (stored.path.name, stored.lock.path.name)
        for password in ("portal-token-of-alice", "another-portal-token", "Summer2024!")
        if (stored := SharedTokenFile.for_connection(config(password))) is not None
    }
    assert len(names) == 1 and calls == []  # naming never derives from the secret
    keycloak = [
        SharedTokenFile.for_connection(config(password, auth_method="keycloak", keycloak_client_secret=client))
        for password, client in (("pw-one", "client-one"), ("pw-two", "client-two"))
    ]
    assert keycloak[0] is not None and keycloak[1] is not None
    assert keycloak[0].path.name == keycloak[1].path.name != next(iter(names))[0]
    # Other non-secret settings still tell connections apart.
    other_host = SharedTokenFile.for_connection(
        MaxwellConnectionConfig.from_connection(
            "shared", host="https://other.example", login="alice", password="portal-token-of-alice", extra={}
        )
    )
    assert other_host is not None and other_host.path.name != next(iter(names))[0]


def test_a_file_of_another_secret_under_the_same_name_is_a_miss_and_replaced():
    first, second = process_cache(config("old-portal-token")), process_cache(config("new-portal-token"))
    minter = Minter()
    old = first.get(minter)
    new = second.get(minter)  # same name, other key: not the old token, a new one
    assert new.value != old.value and len(minter.values) == 2
    assert SharedTokenFile.for_connection(config("new-portal-token")).load() == new  # type: ignore[union-attr]
    assert SharedTokenFile.for_connection(config("old-portal-token")).load() is None  # type: ignore[union-attr]


def test_the_task_log_says_minted_only_for_a_token_this_process_minted(capsys):
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    hook = MaxwellHook("shared")
    client = client_with_adopted_token("minted-by-another-process-" + "a" * 30, hook._mask)
    client.run(client.ops.token())
    said = capsys.readouterr().out
    assert "Using the Slurm token another process of this host minted for alice on connection shared" in said
    assert "Minted" not in said
    state = connection_state(config("portal-token-of-bob"))  # a file of its own: nothing to adopt
    hook._mask(state, state.tokens.get(Minter()))
    said = capsys.readouterr().out
    assert "Minted a Slurm token for alice on connection shared via portal" in said and "Using" not in said
