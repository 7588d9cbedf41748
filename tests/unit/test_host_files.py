"""The host's shared folder against another local user: a folder swapped after its check, a planted
lock, a user's own files beside the provider's, and a refused folder that must not go unnoticed."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_maxwell import host_files
from airflow_provider_maxwell.auth.cache import TokenCache
from airflow_provider_maxwell.auth.shared import SharedTokenFile
from airflow_provider_maxwell.client import discovery
from airflow_provider_maxwell.slurm.dialects import DIALECTS, SUPPORTED_VERSIONS
from tests.second_user import LocalUser
from tests.unit.auth.test_shared_tokens import Minter, config, token


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A folder both users can reach and write, not sticky (a careless $TMPDIR): tmp_path's parents are
    0700 root, so it lives in /tmp under a random name and goes at the end."""
    folder = Path("/tmp") / f"maxwell-open-{secrets.token_hex(8)}"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_folder_swapped_for_a_symlink_after_its_check_receives_no_token(
    open_parent: Path, attacker: LocalUser, monkeypatch: pytest.MonkeyPatch
):
    checked, moved, loot = open_parent / "shared", open_parent / "moved", open_parent / "loot"
    monkeypatch.setenv(host_files.FOLDER_ENV, str(checked))
    stored = SharedTokenFile.for_connection(config())  # the folder is made and checked here
    assert stored is not None
    # The other user owns the parent: they move the checked folder aside and put a symlink in its place.
    swap = attacker.python(
        "import os, sys; checked, moved, loot = sys.argv[1:];"
        "os.rename(checked, moved); os.mkdir(loot); os.chmod(loot, 0o777); os.symlink(loot, checked)",
        str(checked),
        str(moved),
        str(loot),
    )
    assert swap.returncode == 0, swap.stderr
    minter = Minter()
    cache = TokenCache(stored)
    assert cache.get(minter).value == minter.values[0]  # minted under the lock, then stored
    listed = attacker.python("import os, sys; print(sorted(os.listdir(sys.argv[1])))", str(loot))
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stdout + listed.stderr
    # The token went to the folder that was checked, still private, where this process finds it again.
    assert stored.load() is not None and stored.load().value == minter.values[0]  # type: ignore[union-attr]
    assert any(name.endswith(".token") for name in os.listdir(moved))
    # The API version kept for the host goes there too.
    discovery.remember(config(), DIALECTS[SUPPORTED_VERSIONS[-1]], "25.11.1")
    assert os.listdir(loot) == [] and discovery.recall(config()) == (DIALECTS[SUPPORTED_VERSIONS[-1]], "25.11.1")


def test_a_lock_planted_by_another_user_is_refused_and_the_token_minted_without_it(
    open_parent: Path, attacker: LocalUser, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(host_files.FOLDER_ENV, str(open_parent / "shared"))
    stored = SharedTokenFile.for_connection(config())
    assert stored is not None
    # A lock file of the other user's (made by them, open to all) lies where this connection's lock goes,
    # as if planted while the folder was open to others: whoever owns it can hold it at will.
    made = attacker.python(
        "import os, sys; os.close(os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o666)); os.chmod(sys.argv[1], 0o666)",
        str(open_parent / "planted"),
    )
    assert made.returncode == 0, made.stderr
    os.rename(open_parent / "planted", stored.lock.path)
    assert os.stat(stored.lock.path).st_uid == attacker.uid
    assert stored.lock.acquire(0) is False
    minter = Minter()
    assert TokenCache(stored).get(minter).value == minter.values[0]  # the process mints without the lock
    assert os.stat(stored.lock.path).st_uid == attacker.uid  # and leaves the planted file as it was


def test_pruning_leaves_a_users_own_old_files_in_a_folder_of_theirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # MAXWELL_SHARED_DIR pointed at a folder the user already keeps things in.
    folder = tmp_path / "my-private-things"
    folder.mkdir(mode=0o700)
    own = [folder / "thesis-draft.tex", folder / "results.json", folder / "old.token", folder / "run.lock"]
    long_ago = time.time() - host_files.PRUNE_AFTER - 86400
    for file in own:
        file.write_text("mine")
        os.utime(file, (long_ago, long_ago))
    monkeypatch.setenv(host_files.FOLDER_ENV, str(folder))
    stored = SharedTokenFile.for_connection(config())
    assert stored is not None
    stored.save(token("slurm-token-" + "x" * 40))  # a save prunes the provider's old files
    assert all(file.read_text() == "mine" for file in own)
    assert sorted(os.listdir(folder)) == sorted([*(file.name for file in own), stored.path.name])


@pytest.mark.parametrize("refusal", ["open to others", "another owner"])
def test_a_refused_folder_is_reported_once_naming_it_and_the_fix(
    refusal: str, tmp_path: Path, attacker: LocalUser, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    folder = tmp_path / f"refused-{refusal.replace(' ', '-')}"
    folder.mkdir(mode=0o700)
    if refusal == "open to others":
        folder.chmod(0o755)
    else:
        os.chown(folder, attacker.uid, attacker.gid)
    monkeypatch.setenv(host_files.FOLDER_ENV, str(folder))
    caplog.set_level(logging.WARNING)
    assert SharedTokenFile.for_connection(config()) is None
    assert SharedTokenFile.for_connection(config("another-portal-token")) is None  # once per process and folder
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert str(folder) in message and refusal in message
    assert host_files.FOLDER_ENV in message and "chmod 700" in message  # the fixes: another folder, or this one private
    assert "portal-token" not in message


def test_files_not_named_as_this_providers_stay_whatever_their_age(shared_folder: Path):
    # MAXWELL_SHARED_DIR may name a folder that holds the user's own files: only own names are pruned.
    shared_folder.mkdir(mode=0o700)
    others = ["ab" * 20 + ".token", "cd" * 20 + ".lock", ".k3x_9zq1.part", "token-" + "e" * 40 + ".txt"]
    long_ago = time.time() - host_files.PRUNE_AFTER - 60
    own_old = "api-" + "f" * 40 + ".json"  # one of this provider's, as old: pruned by the same save
    for name in [*others, own_old]:
        (shared_folder / name).write_bytes(b"the user's")
        os.utime(shared_folder / name, (long_ago, long_ago))
    stored = SharedTokenFile.for_connection(config())
    assert stored is not None
    stored.save(token("slurm-token-" + "x" * 40))
    assert sorted(os.listdir(shared_folder)) == sorted([*others, stored.path.name])


def test_a_folder_gone_and_made_again_is_shared_again(shared_folder: Path):
    # /run/user/<uid> goes at the last logout and comes back at the next login: a long-running worker
    # shares again through the new folder rather than holding on to the removed one.
    first = SharedTokenFile.for_connection(config())
    assert first is not None
    shutil.rmtree(shared_folder)
    again = SharedTokenFile.for_connection(config())
    assert again is not None and again.folder is not first.folder
    again.save(token("slurm-token-" + "n" * 40))
    assert (shared_folder / again.path.name).exists() and again.load() is not None
