"""A Keycloak stand-in for the local Maxwell: Canaille (a real OpenID Connect provider) with
Keycloak's URL layout and the bits of Keycloak behaviour the provider relies on.

Runs in its own virtual environment (Canaille needs Flask 3; Airflow's environment stays clean).

    python idp.py serve   --state DIR --port N   serve on 127.0.0.1:N until killed
    python idp.py jwks    --state DIR            print the public JWKS (for slurmctld/slurmdbd)

What it adds to Canaille:
- `/realms/{realm}/protocol/openid-connect/{token,certs}` (with any prefix, e.g. `/auth`) routed to
  Canaille's `/oauth/token` and `/oauth/jwks.json`;
- a `sun` claim (released by the scope `sun`) carrying the user name, which Slurm requires;
- refresh tokens with their own lifetime and `refresh_expires_in` in token answers, as Keycloak;
- the public client `desy-public` (password + refresh grants) and the test users from users.json;
- a signing key persisted under DIR, so Slurm's JWKS stays valid across restarts.
Lifetimes come from the environment: IDP_ACCESS_LIFETIME, IDP_REFRESH_LIFETIME (seconds).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs

KEY_FILE = "idp-signing-key.json"
KID = "maxwell-dev-idp"
REALM_PATH = re.compile(r"^(?:/[^/]+)*/realms/[^/]+/protocol/openid-connect/(token|certs)$")


def signing_key(state: Path) -> dict:
    """The RSA signing key as a private JWK, made once and kept in the state folder."""
    path = state / KEY_FILE
    if path.exists():
        return json.loads(path.read_text())
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": KID, "alg": "RS256", "use": "sig"}, private=True)
    data = key.as_dict(private=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    return data


def public_jwks(state: Path) -> dict:
    private = signing_key(state)
    public = {k: private[k] for k in ("kty", "n", "e")}
    public.update(kid=KID, alg="RS256", use="sig")
    return {"keys": [public]}


class KeycloakLayout:
    """WSGI middleware: Keycloak paths in, Canaille paths out; adds refresh_expires_in."""

    def __init__(self, app, refresh_lifetime: int) -> None:
        self.app = app
        self.refresh_lifetime = refresh_lifetime
        self.grants: dict[str, int] = {}

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_idp/stats":  # test control: token grants served, by type
            body = json.dumps({"grants": self.grants}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        match = REALM_PATH.match(environ.get("PATH_INFO", ""))
        if not match:
            return self.app(environ, start_response)
        environ["PATH_INFO"] = "/oauth/token" if match.group(1) == "token" else "/oauth/jwks.json"
        if match.group(1) == "certs":
            return self.app(environ, start_response)
        form = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(form)
        grant = parse_qs(form.decode(errors="replace")).get("grant_type", ["?"])[0]
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        if captured["status"].startswith("200"):
            self.grants[grant] = self.grants.get(grant, 0) + 1
            answer = json.loads(body)
            if "refresh_token" in answer:
                answer["refresh_expires_in"] = self.refresh_lifetime
            body = json.dumps(answer).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]


def build_app(state: Path, port: int):
    import datetime

    import canaille.oidc.provider as provider
    import canaille.oidc.userinfo as userinfo
    from canaille import create_app
    from canaille.backends import Backend

    access_lifetime = int(os.environ.get("IDP_ACCESS_LIFETIME", "300"))
    refresh_lifetime = int(os.environ.get("IDP_REFRESH_LIFETIME", "1800"))

    # Slurm takes the user from `sun`: release it with the scope `sun`, as DESY's Keycloak does.
    userinfo.UserInfo.REGISTERED_CLAIMS = [*userinfo.UserInfo.REGISTERED_CLAIMS, "sun"]
    userinfo.UserInfo.SCOPES_CLAIMS_MAPPING = {**userinfo.UserInfo.SCOPES_CLAIMS_MAPPING, "sun": ["sun"]}
    plain_claims = provider.generate_user_claims

    def claims_with_sun(user, jwt_mapping_config=None):
        return {**plain_claims(user, jwt_mapping_config), "sun": user.user_name}

    provider.generate_user_claims = claims_with_sun

    # Canaille lets a refresh token live as long as its access token; Keycloak gives it its own.
    def refresh_token_active(token) -> bool:
        if token.revokation_date:
            return False
        expiry = token.issue_date + datetime.timedelta(seconds=refresh_lifetime)
        return expiry >= datetime.datetime.now(datetime.timezone.utc)

    from canaille.oidc.models import Token

    Token.is_refresh_token_active = refresh_token_active

    config = {
        "SECRET_KEY": os.urandom(32).hex(),
        "SERVER_NAME": f"127.0.0.1:{port}",
        "TESTING": False,
        "OAUTH2_TOKEN_EXPIRES_IN": {"password": access_lifetime, "refresh_token": access_lifetime},
        "CANAILLE": {"NAME": "Maxwell dev IdP"},
        "CANAILLE_OIDC": {"ACTIVE_JWKS": [signing_key(state)], "REQUIRE_NONCE": False},
    }
    app = create_app(config=config)
    users = json.loads((Path(__file__).with_name("users.json")).read_text())
    with app.app_context():
        from canaille.app import models

        backend = Backend.instance
        client = models.Client(
            client_id="desy-public",
            client_name="desy-public",
            grant_types=["password", "refresh_token"],
            response_types=["token"],
            scope=["openid", "profile", "sun"],
            token_endpoint_auth_method="none",
            redirect_uris=["http://127.0.0.1/"],
        )
        backend.save(client)
        client.audience = [client]
        backend.save(client)
        for entry in users:
            user = models.User(
                user_name=entry["name"], family_name=entry["name"], emails=[f"{entry['name']}@localhost"]
            )
            backend.save(user)
            backend.set_user_password(user, entry["password"])
    return KeycloakLayout(app, refresh_lifetime)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve", "jwks"])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    args.state.mkdir(parents=True, exist_ok=True)
    if args.command == "jwks":
        json.dump(public_jwks(args.state), sys.stdout)
        return 0
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", args.port, build_app(args.state, args.port), threaded=True)
    print(f"idp: serving on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
