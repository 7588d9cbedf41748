"""`maxwell-connection`'s printed `export` line is meant for `eval`: a hostile portal answer is refused
without being printed, and whatever the line holds is quoted so the shell runs nothing of it."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_provider_maxwell import cli
from tests.hostile_server import HostileServer, whole

PLANTED = "pwned"  # a file the hostile answer's command would create in the shell's working directory
HOSTILE_TOKENS = [
    f"x'; touch {PLANTED}; echo '",
    f"abc$(touch {PLANTED})def",
    f"abc`touch {PLANTED}`def",
    f"abc\ntouch {PLANTED}",
    f"eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJhbGljZSJ9.sig';touch {PLANTED};'",
]


def portal_answering(text: str) -> Any:
    """A portal whose get_new_token answers `text` (as the real one does: plain text)."""

    def behaviour(conn: socket.socket, request: bytes, server: HostileServer) -> None:
        conn.sendall(whole(text.encode(), content_type="text/plain; charset=utf-8"))

    return behaviour


@dataclass
class Run:
    """How `maxwell-connection` ended: its exit code, what it printed and what it said on stderr."""

    code: int
    stdout: str
    stderr: str


def maxwell_connection(portal: HostileServer, *args: str) -> Run:
    """The command as a user runs it (in this process: the CLI's own code, without a slow interpreter start)."""
    argv = ["--user", "alice", "--password-stdin", "--host", f"{portal.url}/sapi", *args]
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(sys, "stdin", io.StringIO("the-desy-password\n")),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = cli.main(argv)
        except SystemExit as exit:  # as the interpreter ends on it: a message goes to stderr, code 1
            code = exit.code if isinstance(exit.code, int) else 1
            print(exit.code if isinstance(exit.code, str) else "", file=err)
    return Run(code, out.getvalue(), err.getvalue())


def evaluated(line: str, cwd: Path) -> str:
    """What `eval "$line"` in a real bash leaves in the connection's variable."""
    shell = subprocess.run(
        ["bash", "-c", 'eval "$1" && printf %s "$AIRFLOW_CONN_MAXWELL_DEFAULT"', "bash", line],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
    )
    return shell.stdout


@pytest.mark.parametrize("answer", HOSTILE_TOKENS)
def test_a_portal_answer_that_is_no_token_is_refused_unprinted_and_runs_nothing(answer, hostile_servers, tmp_path):
    portal = hostile_servers(portal_answering(answer))
    done = maxwell_connection(portal)
    evaluated(done.stdout, tmp_path)  # what `eval "$(maxwell-connection ...)"` would run
    assert not (tmp_path / PLANTED).exists()
    assert done.code != 0 and done.stdout == ""
    assert "not a portal token" in done.stderr and "check --portal-url" in done.stderr
    assert PLANTED not in done.stderr  # the hostile value is not echoed either


def test_the_export_line_gives_the_shell_the_connection_exactly(hostile_servers, tmp_path):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJhbGljZSJ9.c2ln-_0"  # base64url parts joined by dots
    portal = hostile_servers(portal_answering(token + "\n"))
    # A portal path with a quote in it (the user's own input) must not break the quoting either.
    done = maxwell_connection(portal, "--portal-url", f"{portal.url}/it's/reservation")
    assert done.code == 0, done.stderr
    conn = json.loads(evaluated(done.stdout, tmp_path))
    assert conn["password"] == token and conn["extra"]["portal_url"] == f"{portal.url}/it's/reservation"


def test_a_conn_id_that_is_no_variable_name_is_refused_for_the_export_line(hostile_servers, tmp_path):
    portal = hostile_servers(portal_answering("abc.def"))
    done = maxwell_connection(portal, "--conn-id", "x;>planted;")  # upper-cased, still a redirect
    evaluated(done.stdout, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert done.code != 0 and "--conn-id" in done.stderr and "--json" in done.stderr
