"""The four ways to a Slurm token, one small class each behind one interface, without I/O.

`mint()` is a generator yielding `Send` effects (see effects.py) and returning a MintedToken.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt

from airflow_provider_maxwell.auth.tokens import MintedToken, UnusableToken, token_from_jwt
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import HttpCall, HttpResult, Protocol, Send, TransportFailure
from airflow_provider_maxwell.exceptions import MaxwellAuthError, TokenServiceUnreachable, scrubbed_excerpt

CLI_API = "4.6.0"  # the version of DESY's command-line tools the portal expects


class TokenSource:
    """Where a connection's Slurm tokens come from; subclasses implement `mint` as a protocol of effects."""

    method: str = ""
    url_field = ""  # the connection field holding the URL this source asks, for error messages
    mints_remotely = False  # True: a mint is a request to a token service (worth sharing between processes)

    def __init__(self, config: MaxwellConnectionConfig) -> None:
        self.config = config

    def mint(self) -> Protocol[MintedToken]:
        """Obtain a new token (a generator of effects: run it with the hook's drivers)."""
        raise NotImplementedError
        yield  # pragma: no cover - makes this a generator

    def secrets(self, token: MintedToken) -> list[str]:
        """Every secret value this source handled for `token`, for masking in logs."""
        return [token.value]

    def _unusable(self, what: str, url: str, problem: UnusableToken) -> MaxwellAuthError:
        """A token endpoint answered 200 with something that is not a token: said without quoting it."""
        return MaxwellAuthError(
            f"{what} for connection {self.config.conn_id!r} (auth_method={self.method}) from {url} is unusable: "
            f"{problem}. Check {self.url_field or 'the connection'}."
        )

    def _check_user(self, token: MintedToken, origin: str) -> MintedToken:
        """Slurm acts as the token's user whatever X-SLURM-USER-NAME says: they must agree."""
        if token.user is not None and token.user != self.config.login:
            raise MaxwellAuthError(
                f"{origin} for connection {self.config.conn_id!r} belongs to user {token.user!r}, but the "
                f"connection's login is {self.config.login!r}: set the login to the token's user, or use that user's "
                "credentials"
            )
        return token

    def _failure(self, what: str, url: str, result: HttpResult | TransportFailure, fix: str) -> MaxwellAuthError:
        if isinstance(result, TransportFailure):
            return TokenServiceUnreachable(
                f"{what} for connection {self.config.conn_id!r} (auth_method={self.method}): no answer from {url}: "
                f"{result.message}. Check the URL and the network."
            )
        if 300 <= result.status < 400:
            location = result.header("location")
            # A sign-on page's Location may carry a token or session in its query: scrubbed like a body.
            shown = scrubbed_excerpt(location, self.config.secret_texts) if location is not None else None
            return MaxwellAuthError(
                f"{what} for connection {self.config.conn_id!r} (auth_method={self.method}): {url} redirected "
                f"(HTTP {result.status}) to {shown!r}; credentials are not sent on. Set {self.url_field} to the "
                "final URL."
            )
        detail = scrubbed_excerpt(refusal_text(result.body), self.config.secret_texts, 200)
        return MaxwellAuthError(
            f"{what} for connection {self.config.conn_id!r} (auth_method={self.method}): HTTP {result.status} "
            f"from {url}: {detail!r}. {fix}"
        )


class StaticTokenSource(TokenSource):
    """auth_method=token: the password is a Slurm JWT; nothing can renew it."""

    method = "token"

    def mint(self) -> Protocol[MintedToken]:
        """The Slurm token from the connection itself: checked (user, expiry), never renewed."""
        try:
            token = token_from_jwt(self.config.password or "")
        except UnusableToken as problem:
            raise MaxwellAuthError(
                f"the Slurm token in connection {self.config.conn_id!r} is unusable: {problem}. Put a token from "
                "slurm_token (or scontrol token) in its password field"
            ) from None
        if token.expires_at <= time.time():
            raise MaxwellAuthError(
                f"the Slurm token in connection {self.config.conn_id!r} expired at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(token.expires_at))}: put a new one in its "
                "password field, or use auth_method 'portal' so tokens are renewed for you"
            )
        return self._check_user(token, "the Slurm token in the password field")
        yield  # pragma: no cover


class SigningKeySource(TokenSource):
    """auth_method=signing_key: a privileged service account signs HS256 tokens for the user."""

    method = "signing_key"

    def mint(self) -> Protocol[MintedToken]:
        """Sign a fresh HS256 Slurm token for the login with the connection's key."""
        now = int(time.time())
        claims = {"sun": self.config.login, "iat": now, "exp": now + self.config.token_lifespan}
        value = jwt.encode(claims, self.config.signing_key or b"", algorithm="HS256")
        return MintedToken(value=value, issued_at=now, expires_at=now + self.config.token_lifespan)
        yield  # pragma: no cover


class PortalSource(TokenSource):
    """auth_method=portal: DESY's portal turns the (revocable) portal token into a Slurm JWT."""

    method = "portal"
    mints_remotely = True
    url_field = "extra.portal_url (by default the host's origin + /reservation)"

    def mint(self) -> Protocol[MintedToken]:
        """Exchange the portal token for a Slurm token of the connection's lifespan (DESY's get_new_slurm_token)."""
        url = f"{self.config.portal_url}/get_new_slurm_token"
        call = HttpCall(
            "GET",
            url,
            params={"cli_api": CLI_API, "lifespan": str(self.config.token_lifespan), "stu": self.config.login},
            basic_auth=(self.config.login, self.config.password or ""),
        )
        result = yield Send(call)
        if isinstance(result, TransportFailure) or result.status != 200:
            fix = (
                "The portal token may be revoked or mistyped: make a new one (maxwell-connection --help) and "
                "store it as the connection's password."
                if not isinstance(result, TransportFailure) and result.status in (401, 403)
                else "Check portal_url."
            )
            raise self._failure("DESY's portal refused a Slurm token", url, result, fix)
        try:
            # The portal labels its JSON as text/html: parse the body whatever the content type says.
            value = json.loads(result.body)["token"]
            token = token_from_jwt(value, expires_in=self.config.token_lifespan)
        except UnusableToken as problem:
            raise self._unusable("DESY's portal token", url, problem) from None
        except (ValueError, KeyError, TypeError, RecursionError):
            raise MaxwellAuthError(
                f"DESY's portal answered without a token for connection {self.config.conn_id!r} (HTTP "
                f'{result.status} from {url}, {len(result.body)} bytes that are not {{"token": ...}}). '
                "Check portal_url."
            ) from None
        return self._check_user(token, "the portal's token")


class KeycloakSource(TokenSource):
    """auth_method=keycloak: OIDC password grant, then refresh grants while the refresh token lives."""

    method = "keycloak"
    mints_remotely = True
    url_field = "extra.keycloak_url"

    def __init__(self, config: MaxwellConnectionConfig) -> None:
        super().__init__(config)
        self._refresh_token: str | None = None
        self._refresh_expires_at = 0.0

    @property
    def token_url(self) -> str:
        """The Keycloak token endpoint of the connection's realm."""
        return f"{self.config.keycloak_url}/realms/{self.config.keycloak_realm}/protocol/openid-connect/token"

    def _form(self, grant: dict[str, str]) -> dict[str, str]:
        form = {"client_id": self.config.keycloak_client_id, **grant}
        if self.config.keycloak_client_secret:
            form["client_secret"] = self.config.keycloak_client_secret
        return form

    def mint(self) -> Protocol[MintedToken]:
        """A refresh grant while the refresh token lives, else a password grant; the access token is the Slurm token."""
        if self._refresh_token and time.time() < self._refresh_expires_at - 5:
            result = yield Send(
                HttpCall(
                    "POST",
                    self.token_url,
                    form=self._form({"grant_type": "refresh_token", "refresh_token": self._refresh_token}),
                )
            )
            if isinstance(result, HttpResult) and result.status == 200:
                return self._accept(result)
            # Refresh refused (expired, revoked, IdP restarted): start over with the password.
            self._refresh_token = None
        result = yield Send(
            HttpCall(
                "POST",
                self.token_url,
                form=self._form(
                    {
                        "grant_type": "password",
                        "username": self.config.login,
                        "password": self.config.password or "",
                        "scope": self.config.keycloak_scope,
                    }
                ),
            )
        )
        if isinstance(result, TransportFailure) or result.status != 200:
            raise self._failure(
                "Keycloak refused a token",
                self.token_url,
                result,
                "Check the user's password and keycloak_url/keycloak_realm/keycloak_client_id.",
            )
        return self._accept(result)

    def _accept(self, result: HttpResult) -> MintedToken:
        try:
            answer: dict[str, Any] = json.loads(result.body)
            access = answer["access_token"]
            expires_in = _seconds_or(answer.get("expires_in"), 300.0)
            refresh_in = _seconds_or(answer.get("refresh_expires_in"), 0.0)
            token = token_from_jwt(access, expires_in=expires_in)
        except UnusableToken as problem:
            raise self._unusable("Keycloak's access token", self.token_url, problem) from None
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise MaxwellAuthError(
                f"Keycloak answered without an access token for connection {self.config.conn_id!r} (HTTP "
                f"{result.status} from {self.token_url}, {len(result.body)} bytes of another shape). "
                "Check keycloak_url."
            ) from None
        refresh = answer.get("refresh_token")
        self._refresh_token = refresh if isinstance(refresh, str) and refresh else None
        self._refresh_expires_at = time.time() + refresh_in
        return self._check_user(token, "Keycloak's access token (claim sun)")

    def secrets(self, token: MintedToken) -> list[str]:
        """Every secret this source holds or minted, to register with Airflow's secrets masker."""
        return [token.value, *([self._refresh_token] if self._refresh_token else [])]


REFUSAL_FIELDS = ("error", "error_description", "message", "detail")  # OAuth2's and common error fields


def refusal_text(body: bytes) -> str:
    """What a token service said when refusing: a JSON answer's error fields only (its other fields may be
    tokens of any shape, which no scrubbing could recognise), else the start of the body."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return body[:2000].decode("utf-8", "replace")
    if not isinstance(document, dict):
        return f"(a JSON {type(document).__name__})"
    return " ".join(f"{k}: {document[k]}" for k in REFUSAL_FIELDS if isinstance(document.get(k), str))


def _seconds_or(value: object, default: float) -> float:
    """A lifetime in seconds from a token endpoint's answer; the default when absent; ValueError when junk."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 366 * 86400:
        raise ValueError("not a lifetime")
    return float(value)


SOURCES: dict[str, type[TokenSource]] = {
    s.method: s for s in (PortalSource, KeycloakSource, StaticTokenSource, SigningKeySource)
}


def token_source(config: MaxwellConnectionConfig) -> TokenSource:
    """The token source for the connection's `auth_method`."""
    return SOURCES[config.auth_method](config)
