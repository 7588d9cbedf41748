"""An emulator of DESY's Maxwell portal token service, the one part of Maxwell that exists nowhere
else. Standard library only.

    python portal.py --state DIR --port N --jwt-key FILE --users FILE

Behaviour as DESY documents it (and as its clients rely on):
- GET /reservation/get_new_token?cli_api=V, HTTP Basic user:password
    -> the portal token as plain text. No expiry; revocable. A new call returns a new token and
       leaves older ones valid (DESY's tool simply overwrites ~/.maxwell/portal.token).
- GET /reservation/get_new_slurm_token?cli_api=V&lifespan=S&stu=USER, HTTP Basic user:portal_token
    -> {"token": "<HS256 JWT>"} labelled text/html (a quirk clients must live with); lifespan capped
       at 86400 s; 401 on a bad or revoked portal token; 403 when stu names another user.
Test controls, not part of DESY's service (plain port only, never proxied by the front door):
- POST /_emulator/revoke?user=U     revoke every portal token of U
- GET  /_emulator/stats             {"portal_tokens_issued": n, "slurm_tokens_minted": {user: n},
                                     "slurm_tokens_minted_by_portal_token": {sha256(portal token)[:16]: n}}
- POST /_emulator/reset-stats
Portal tokens are kept only as SHA-256 digests (state DIR/portal-tokens.json) so a restart keeps them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MAX_LIFESPAN = 86400
DEFAULT_LIFESPAN = 1800  # what `scontrol token` gives when no lifespan is asked for


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_hs256(key: bytes, user: str, lifespan: int) -> str:
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = b64url(json.dumps({"exp": now + lifespan, "iat": now, "sun": user}, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(signature)}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Portal:
    def __init__(self, state: Path, jwt_key: bytes, passwords: dict[str, str]) -> None:
        self.store = state / "portal-tokens.json"
        self.jwt_key = jwt_key
        self.passwords = passwords
        self.lock = threading.Lock()
        self.tokens: dict[str, list[str]] = json.loads(self.store.read_text()) if self.store.exists() else {}
        self.issued = 0
        self.minted: dict[str, int] = {}
        # Per portal token (a test's own), so counts are not moved by other tests of the same user.
        self.minted_by_token: dict[str, int] = {}

    def _save(self) -> None:
        tmp = self.store.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.tokens))
        tmp.replace(self.store)

    def new_portal_token(self, user: str) -> str:
        token = secrets.token_urlsafe(30)
        with self.lock:
            self.tokens.setdefault(user, []).append(digest(token))
            self.issued += 1
            self._save()
        return token

    def portal_token_valid(self, user: str, token: str) -> bool:
        with self.lock:
            return digest(token) in self.tokens.get(user, [])

    def revoke(self, user: str) -> int:
        with self.lock:
            count = len(self.tokens.pop(user, []))
            self._save()
        return count

    def mint(self, user: str, lifespan: int, portal_token: str) -> str:
        key = digest(portal_token)[:16]
        with self.lock:
            self.minted[user] = self.minted.get(user, 0) + 1
            self.minted_by_token[key] = self.minted_by_token.get(key, 0) + 1
        return mint_hs256(self.jwt_key, user, lifespan)


class Handler(BaseHTTPRequestHandler):
    portal: Portal
    server_version = "Apache"  # DESY's portal answers as a plain web server would
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # no credentials in logs: paths only
        print(f"portal: {self.command} {urlsplit(self.path).path} -> {args[1] if len(args) > 1 else ''}", flush=True)

    def _send(
        self, status: int, body: str, content_type: str = "text/html; charset=utf-8", extra: dict | None = None
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _basic_auth(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, secret

    def _unauthorized(self) -> None:
        self._send(
            401,
            "<html><body><h1>401 Unauthorized</h1></body></html>",
            extra={"WWW-Authenticate": 'Basic realm="Maxwell portal"'},
        )

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/reservation/get_new_token":
            creds = self._basic_auth()
            if creds is None or not hmac.compare_digest(self.portal.passwords.get(creds[0], "\0"), creds[1]):
                return self._unauthorized()
            return self._send(200, self.portal.new_portal_token(creds[0]), "text/plain; charset=utf-8")
        if url.path == "/reservation/get_new_slurm_token":
            creds = self._basic_auth()
            if creds is None or not self.portal.portal_token_valid(*creds):
                return self._unauthorized()
            user = query.get("stu", creds[0])
            if user != creds[0]:
                return self._send(403, "<html><body><h1>403 Forbidden</h1>stu must be your own user</body></html>")
            try:
                lifespan = int(query.get("lifespan", DEFAULT_LIFESPAN))
            except ValueError:
                return self._send(400, "<html><body><h1>400 Bad Request</h1>lifespan must be a number</body></html>")
            lifespan = max(1, min(lifespan, MAX_LIFESPAN))
            return self._send(200, json.dumps({"token": self.portal.mint(user, lifespan, creds[1])}))
        if url.path == "/_emulator/stats":
            return self._send(
                200,
                json.dumps(
                    {
                        "portal_tokens_issued": self.portal.issued,
                        "slurm_tokens_minted": self.portal.minted,
                        "slurm_tokens_minted_by_portal_token": self.portal.minted_by_token,
                    }
                ),
                "application/json",
            )
        self._send(404, "<html><body><h1>404 Not Found</h1></body></html>")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/_emulator/revoke" and "user" in query:
            return self._send(200, json.dumps({"revoked": self.portal.revoke(query["user"])}), "application/json")
        if url.path == "/_emulator/reset-stats":
            self.portal.issued, self.portal.minted, self.portal.minted_by_token = 0, {}, {}
            return self._send(200, "{}", "application/json")
        self._send(405, "<html><body><h1>405 Method Not Allowed</h1></body></html>")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwt-key", type=Path, required=True)
    parser.add_argument("--users", type=Path, required=True)
    args = parser.parse_args()
    args.state.mkdir(parents=True, exist_ok=True)
    passwords = {u["name"]: u["password"] for u in json.loads(args.users.read_text())}
    Handler.portal = Portal(args.state, args.jwt_key.read_bytes(), passwords)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"portal: serving on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
