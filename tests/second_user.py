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
JOB_OWNER_NAME = "mxjobowner"  # a job's user, where a test needs the victim to be a plain user too
JOB_OWNER_UID = 20191

__all__ = ["LocalUser", "attacker", "job_owner"]


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


def local_user(name: str, uid: int) -> LocalUser:
    """The local user `name`, created with `uid` if missing (tests run as root; elsewhere the test fails
    saying why)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            pytest.fail(f"the attack tests need root to create the local user {name}: run them as root")
        subprocess.run(
            ["useradd", "-u", str(uid), "-U", "-M", "-s", "/bin/bash", name], check=True, capture_output=True
        )
        entry = pwd.getpwnam(name)
    return LocalUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


@pytest.fixture(scope="session")
def attacker() -> LocalUser:
    """Another local user, the one who attacks."""
    return local_user(ATTACKER_NAME, ATTACKER_UID)


@pytest.fixture(scope="session")
def job_owner() -> LocalUser:
    """A plain local user whose job is attacked (root would pass where a user is refused)."""
    return local_user(JOB_OWNER_NAME, JOB_OWNER_UID)
