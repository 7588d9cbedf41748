"""A real second local user for the attacks that need one (another member of a beamtime group, another
user of the worker host): created once if missing, and commands run as them with `setpriv`.

Unit tests run as root on CI and on the developers' machines; the user is a plain login with its own
uid and group, in no group of root's.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

ATTACKER_NAME = "mxattacker"
ATTACKER_UID = 20190  # beside the local Maxwell's users (devcluster/users.json), never one of theirs

__all__ = ["LocalUser", "attacker"]


@dataclass(frozen=True)
class LocalUser:
    name: str
    uid: int
    gid: int

    def run(self, argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """`argv` run as this user (uid, gid, no supplementary groups), output captured as text."""
        command = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload]

    def python(self, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A Python snippet run as this user (`sys.argv[1:]` are `args`); the project is importable."""
        project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return self.run([sys.executable, "-c", code, *args], env={"PATH": "/usr/bin:/bin", "PYTHONPATH": project})


@pytest.fixture(scope="session")
def attacker() -> LocalUser:
    """Another local user: created if missing (tests run as root; elsewhere the test fails saying why)."""
    try:
        entry = pwd.getpwnam(ATTACKER_NAME)
    except KeyError:
        if os.geteuid() != 0:
            pytest.fail(f"the attack tests need root to create the local user {ATTACKER_NAME}: run them as root")
        subprocess.run(
            ["useradd", "-u", str(ATTACKER_UID), "-U", "-M", "-s", "/bin/bash", ATTACKER_NAME],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(ATTACKER_NAME)
    return LocalUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
