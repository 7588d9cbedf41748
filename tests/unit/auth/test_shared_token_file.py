"""The host's encrypted token file itself: what a process reads back, what it refuses to read, and the
old files of connections no longer used, which go when a token is stored."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from airflow_provider_maxwell import host_files
from airflow_provider_maxwell.auth import shared as shared_module
from airflow_provider_maxwell.auth.cache import TokenCache
from airflow_provider_maxwell.auth.tokens import MintedToken
from tests.unit.auth.test_shared_tokens import shared_file


@pytest.mark.parametrize("user", ["alice", None])
def test_a_stored_token_reads_back_with_its_times_and_user(user: str | None):
    token = MintedToken("slurm-token-" + "x" * 40, issued_at=1_700_000_000.25, expires_at=1_700_003_600.5, user=user)
    shared_file().save(token)
    assert shared_file().load() == token  # another process, same connection


def test_nothing_stored_yet_reads_as_nothing():
    assert shared_file().load() is None


def test_a_file_of_another_format_is_not_read(monkeypatch: pytest.MonkeyPatch):
    # Written by another release of the provider with another layout: mint anew rather than misread it.
    monkeypatch.setattr(shared_module, "FORMAT", 2)
    shared_file().save(MintedToken("slurm-token-" + "x" * 40, 1.0, 2e9, "alice"))
    monkeypatch.setattr(shared_module, "FORMAT", 1)
    assert shared_file().load() is None


def test_a_damaged_file_is_not_read_and_the_next_mint_replaces_it():
    shared = shared_file()  # its folder made and checked
    shared.path.write_bytes(b"not what Fernet sealed")
    os.chmod(shared.path, 0o600)
    assert shared.load() is None
    now = time.time()
    minted = TokenCache(shared).get(lambda: MintedToken("slurm-token-" + "z" * 40, now, now + 3600, "alice"))
    assert shared_file().load() == minted


def test_files_untouched_for_two_days_go_when_a_token_is_stored(shared_folder: Path):
    shared_folder.mkdir(mode=0o700, exist_ok=True)
    gone, other = host_files.own_name("token", "gone connection"), host_files.own_name("token", "other connection")
    old, recent = shared_folder / f"{gone}.token", shared_folder / f"{other}.token"
    for file in (old, recent):
        file.write_bytes(b"sealed")
    now = time.time()
    os.utime(old, (now - host_files.PRUNE_AFTER - 60,) * 2)
    os.utime(recent, (now - host_files.PRUNE_AFTER + 60,) * 2)
    shared = shared_file()
    shared.save(MintedToken("slurm-token-" + "x" * 40, now, now + 3600, "alice"))
    assert sorted(p.name for p in shared_folder.iterdir()) == sorted([recent.name, shared.path.name])


def test_a_vanished_folder_leaves_the_process_its_token_in_memory(shared_folder: Path):
    # /run/user/<uid> goes at the user's last logout: a running worker goes on minting for itself.
    shared = shared_file()
    shared.path  # noqa: B018 - named (and its folder made) while the folder was there
    shutil.rmtree(shared_folder)
    cache, now = TokenCache(shared), time.time()
    minted = cache.get(lambda: MintedToken("slurm-token-" + "m" * 40, now, now + 3600, "alice"))
    assert minted.value == "slurm-token-" + "m" * 40
    assert cache.get(lambda: MintedToken("another", now, now + 3600, "alice")) is minted and cache.mints == 1

    async def amint() -> MintedToken:
        return MintedToken("slurm-token-" + "a" * 40, now, now + 3600, "alice")

    assert asyncio.run(TokenCache(shared).aget(amint)).value == "slurm-token-" + "a" * 40


def test_a_process_counts_each_token_it_adopts_and_each_it_mints():
    # The cluster tests read these counts to tell a host's one mint from every process minting.
    now = time.time()
    values = iter(f"slurm-token-{n}-" + "x" * 40 for n in range(1, 10))

    def mint() -> MintedToken:
        return MintedToken(next(values), now, now + 3600, "alice")

    first, second = TokenCache(shared_file()), TokenCache(shared_file())
    refused = first.get(mint).value
    second.get(mint)
    replaced = first.get(mint, stale=refused)  # Slurm refused it: the first process mints its successor
    assert second.get(mint, stale=refused) == replaced  # and the second adopts that one too
    assert (first.mints, first.adopted, second.mints, second.adopted) == (2, 0, 0, 2)
