"""`maxwell-connection`: what DESY's page has users do by hand, in one command.

Asks for the DESY password without echo, obtains a portal token from the portal, and prints an
Airflow connection (as an environment line or JSON) or stores it in Airflow's metadata database.
The password is used once and never stored; the portal token goes only where you ask.

`maxwell-connection test CONN_ID` tests a saved connection (a token minted, slurmctld asked for
`diag`) and says what it found: what the UI's Test button does, which Airflow 3.3.2's UI cannot do
for a saved connection (apache/airflow#73298).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shlex
import sys
from urllib.parse import urlsplit

import requests

from airflow_provider_maxwell.auth.sources import CLI_API
from airflow_provider_maxwell.urls import crosses_network_in_clear, quotable

DEFAULT_HOST = "https://max-slurm-rest.desy.de/sapi"
# A portal token as DESY issues it: base64url parts joined by dots (a JWT, or one part), of sane length.
PORTAL_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}(?:\.[A-Za-z0-9_-]+={0,2})*")
MAX_PORTAL_TOKEN = 8192  # characters
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # what a shell takes as a variable's name


def get_portal_token(portal_url: str, user: str, password: str, verify: bool | str, timeout: float = 30) -> str:
    """Ask DESY's portal for a portal token (HTTP Basic with the user's password), as DESY's own tool does."""
    answer = requests.get(
        f"{portal_url}/get_new_token",
        params={"cli_api": CLI_API},
        auth=(user, password),
        verify=verify,
        timeout=timeout,
        allow_redirects=False,
    )
    if answer.status_code == 401:
        raise SystemExit(
            f"maxwell-connection: the portal at {portal_url} refused user {user!r} (HTTP 401): "
            "check the user name and password"
        )
    if answer.status_code != 200 or not answer.text.strip():
        raise SystemExit(
            f"maxwell-connection: the portal at {portal_url} answered HTTP {answer.status_code}; check --portal-url"
        )
    return answer.text.strip()


def check_portal_token(token: str, portal_url: str) -> str:
    """The portal's answer if it looks like a portal token; else SystemExit, without quoting the answer
    (it is printed for a shell to eval, and a hostile or broken portal may have answered anything)."""
    if len(token) > MAX_PORTAL_TOKEN or not PORTAL_TOKEN.fullmatch(token):
        raise SystemExit(
            f"maxwell-connection: the portal at {portal_url} answered {len(token)} characters that are not a "
            "portal token (base64url parts joined by dots); nothing was printed or stored: check --portal-url"
        )
    return token


def export_line(conn_id: str, conn: dict[str, object]) -> str:
    """The connection as a shell line to eval: the variable's name checked, its value quoted for the shell."""
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    if not ENV_NAME.fullmatch(name):
        raise SystemExit(
            f"maxwell-connection: --conn-id {conn_id!r} makes no shell variable name ({name!r}): use letters, "
            "digits and '_' only, or print the connection with --json or store it with --create"
        )
    return f"export {name}={shlex.quote(json.dumps(conn))}"


def build_connection(args: argparse.Namespace, portal_token: str) -> dict[str, object]:
    """The Airflow connection (as a dict) for the command-line arguments and a portal token."""
    extra: dict[str, object] = {"auth_method": "portal"}
    if args.portal_url:
        extra["portal_url"] = args.portal_url
    if args.ca_bundle:
        extra["ca_bundle"] = args.ca_bundle
    return {"conn_type": "maxwell", "host": args.host, "login": args.user, "password": portal_token, "extra": extra}


def create_in_airflow(conn_id: str, conn: dict[str, object], replace: bool) -> None:
    """Store the connection in Airflow's metadata database; refuses to overwrite unless `replace`."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        existing = session.query(Connection).filter(Connection.conn_id == conn_id).one_or_none()
        if existing is not None and not replace:
            raise SystemExit(f"maxwell-connection: connection {conn_id!r} exists; pass --replace to overwrite it")
        if existing is not None:
            session.delete(existing)
            session.flush()
        session.add(
            Connection(
                conn_id=conn_id,
                conn_type="maxwell",
                host=str(conn["host"]),
                login=str(conn["login"]),
                password=str(conn["password"]),
                extra=json.dumps(conn["extra"]),
            )
        )


def test_connection(argv: list[str]) -> int:
    """`maxwell-connection test CONN_ID`: 0 and the hook's message if the connection works, else 1 and why."""
    parser = argparse.ArgumentParser(
        prog="maxwell-connection test",
        description="Test a Maxwell connection as the UI's Test button would: mint a token, ask slurmctld for diag.",
    )
    parser.add_argument("conn_id", help="Airflow connection id, e.g. maxwell_default")
    args = parser.parse_args(argv)
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    try:
        # As `airflow connections test` reads it: from the secrets backends and the metadata database.
        conn = Connection.get_connection_from_secrets(args.conn_id)
    except AirflowNotFoundException:
        print(
            f"maxwell-connection: no connection {args.conn_id!r} (looked in Airflow's secrets and database)",
            file=sys.stderr,
        )
        return 1
    # Handed to the hook as Airflow's API server hands a connection it tests: through the environment,
    # which the hook reads outside a task on every supported Airflow (3.1's does not read the database there).
    os.environ[f"AIRFLOW_CONN_{args.conn_id.upper()}"] = conn.get_uri()
    ok, message = MaxwellHook(args.conn_id).test_connection()
    if ok:
        print(f"maxwell-connection: {args.conn_id}: {message}")
        return 0
    print(f"maxwell-connection: {args.conn_id} does not work: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `maxwell-connection` console command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:
        return test_connection(argv[1:])
    parser = argparse.ArgumentParser(
        prog="maxwell-connection", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conn-id", default="maxwell_default", help="Airflow connection id (default: %(default)s)")
    parser.add_argument("--user", default=os.environ.get("USER"), help="DESY user name (default: $USER)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="Slurm REST root (default: %(default)s)")
    parser.add_argument("--portal-url", help="portal base URL (default: the host's origin + /reservation)")
    parser.add_argument("--ca-bundle", help="CA bundle to verify TLS with (default: the system's)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the connection as JSON")
    out.add_argument("--create", action="store_true", help="store the connection in Airflow's metadata database")
    parser.add_argument("--replace", action="store_true", help="with --create: overwrite an existing connection")
    args = parser.parse_args(argv)
    if not args.user:
        parser.error("--user is required (no $USER set)")
    parts = urlsplit(args.host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        parser.error(f"--host {args.host!r} is not a URL; e.g. {DEFAULT_HOST}")
    portal_url = (args.portal_url or f"{parts.scheme}://{parts.netloc}/reservation").rstrip("/")
    # The connection's own rule, checked before the password is asked for; no opt-in here: a DESY password
    # opens more than Slurm.
    for option, url in (("--host", args.host), ("--portal-url", portal_url)):
        if crosses_network_in_clear(url):
            parser.error(
                f"{option} {quotable(url)} is plain http:// to another machine: your DESY password would cross the "
                "network unencrypted. Use https://"
            )
    password = (
        sys.stdin.readline().rstrip("\n")
        if args.password_stdin
        else getpass.getpass(f"DESY password for {args.user}: ")
    )
    token = get_portal_token(portal_url, args.user, password, args.ca_bundle or True)
    del password
    check_portal_token(token, portal_url)
    conn = build_connection(args, token)
    if args.create:
        create_in_airflow(args.conn_id, conn, args.replace)
        print(f"maxwell-connection: stored connection {args.conn_id!r} for {args.user} at {args.host}", file=sys.stderr)
    elif args.json:
        print(json.dumps(conn))
    else:
        print(export_line(args.conn_id, conn))
    return 0


if __name__ == "__main__":
    sys.exit(main())
