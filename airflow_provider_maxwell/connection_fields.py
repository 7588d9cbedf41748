"""The fields of a Maxwell connection, one reader per field or group: each returns the value to use or
raises the error the user reads (the connection, the field as they wrote it, what is wrong and the fix).

`MaxwellConnectionConfig.from_connection` (config.py) calls them in a fixed order: where a connection
has several mistakes, the user is told the first one in that order.
"""

from __future__ import annotations

import base64
import binascii
import os
import string
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from airflow_provider_maxwell.exceptions import MaxwellConfigError, shown
from airflow_provider_maxwell.provider_info import (
    AUTH_METHODS,
    CONN_FIELDS,
    MAX_TOKEN_LIFESPAN,
    MIN_TOKEN_LIFESPAN,
    SIGNING_KEY_TOKEN_LIFESPAN,
    field_default,
)
from airflow_provider_maxwell.urls import crosses_network_in_clear, quotable, url_parts

MASK = "***"  # what Airflow shows instead of a value whose field name looks secret
JOB_URL_PLACEHOLDERS = ("job_id", "user")
# Users whose Slurm token acts for every user: root, and the user slurmctld runs as (SlurmUser, "slurm"
# by convention). A signing_key connection mints for its login, so these logins would hand that power to
# every task that reads it. Compared without case: no real account differs from these by case alone.
SLURM_SUPERUSERS = frozenset({"root", "slurm"})
MAX_TIMEOUT = 3600.0  # seconds per request: more is a typo, and no socket takes infinity
# The extra fields whose values are text (the form's schema says string, or string or null).
TEXT_FIELDS = frozenset(name for name, spec in CONN_FIELDS.items() if spec["schema"]["type"][0] == "string")
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")
REST_ROOT_FIX = "Give the REST root, e.g. https://max-slurm-rest.desy.de/sapi"
# What the password field holds, by auth method (the methods not named here take none).
SECRET_MEANING = {
    "portal": "the portal token",
    "keycloak": "the user's DESY password",
    "token": "a Slurm JWT (e.g. from slurm_token)",
}

Complaint = Callable[[str, str, str], MaxwellConfigError]  # (field, problem, fix) -> the error to raise


def complaint(conn_id: str) -> Complaint:
    """How errors about connection `conn_id` are worded: the connection, the field, the problem, the fix."""

    def bad(field_name: str, problem: str, fix: str) -> MaxwellConfigError:
        return MaxwellConfigError(f"Maxwell connection {conn_id!r}: {field_name} {problem}. {fix}")

    return bad


def json_kind(value: Any) -> str:
    """What a value in the connection's JSON is, in JSON's words (the user wrote JSON, not Python)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a Python {type(value).__name__}"  # set in code (a secrets backend), not by JSON


def given_extra(extra: Mapping[str, Any] | None, bad: Complaint) -> dict[str, Any]:
    """The extra fields the user set, by their names: known names only, text where text belongs."""
    if extra is not None and not isinstance(extra, Mapping):
        raise bad("extra", f"is {json_kind(extra)}, not a JSON object", 'Write it as {"auth_method": "portal", ...}')
    # Null and empty mean "not set": the form saves every field, empty ones included.
    given = {k.removeprefix("extra__maxwell__"): v for k, v in (extra or {}).items() if v not in (None, "")}
    unknown = sorted(set(given) - set(CONN_FIELDS))
    if unknown:
        raise bad("extra", f"has unknown keys {unknown}", f"Known keys: {', '.join(sorted(CONN_FIELDS))}")
    masked = sorted(name for name, value in given.items() if value == MASK)
    if masked:
        raise bad(
            f"extra.{masked[0]}",
            f"is {MASK!r}, the mask Airflow's UI shows for fields whose name looks secret, saved as the value",
            "Type the real value again (this release's field names are not masked unless secret)",
        )
    for name in sorted(set(given) & TEXT_FIELDS):
        if not isinstance(given[name], str):
            # Never quoted: signing_secret and keycloak_client_secret are secrets.
            raise bad(f"extra.{name}", f"is {json_kind(given[name])}", "Write it as a JSON string")
    return given


def read_rest_root(host: str | None, given: Mapping[str, Any], bad: Complaint) -> tuple[str, str, SplitResult]:
    """(the field it came from, the REST root without its trailing '/', its parts). The form's "REST root
    URL" (extra.rest_root) when set, else host: the form hides host, so what the form shows is what is used;
    connections written as JSON or URI, and the CLI's, give it in host."""
    name, value = ("extra.rest_root", given["rest_root"]) if "rest_root" in given else ("host", host)
    url = (value or "").strip().rstrip("/")
    if not url:
        raise bad(name, "is empty", REST_ROOT_FIX)
    parts = url_parts(url)
    if parts is None:
        raise bad(name, f"{quotable(url)} is not a URL", REST_ROOT_FIX)
    if parts.username is not None or parts.password is not None:
        # Never quoted: the part before '@' may hold a password.
        raise bad(
            name,
            "carries credentials before '@'",
            "Give the bare REST root (e.g. https://max-slurm-rest.desy.de/sapi) and put the user in login and "
            "the secret in password",
        )
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise bad(name, f"{quotable(url)} is not a URL", REST_ROOT_FIX)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise bad(name, "has a query or fragment", "Give the REST root only, without '?...' or '#...'")
    return name, url, parts


def read_login(login: str | None, bad: Complaint) -> str:
    """The DESY user name, as it can travel in an HTTP header."""
    login = (login or "").strip()
    if not login:
        raise bad("login", "is empty", "Give the DESY user name whose jobs this connection runs")
    if not login.isascii() or not login.isprintable() or any(c in login for c in " :/@"):
        raise bad(
            "login",
            f"is {shown(login)}",
            "Give the DESY user name as Slurm knows it (ASCII letters, digits, '.', '-', '_'): it travels in an "
            "HTTP header",
        )
    return login


def read_auth_method(options: Mapping[str, Any], bad: Complaint) -> str:
    """How the connection gets its Slurm tokens: one of AUTH_METHODS."""
    method = str(options["auth_method"])
    if method not in AUTH_METHODS:
        raise bad("extra.auth_method", f"is {shown(method)}", f"Use one of: {', '.join(AUTH_METHODS)}")
    return method


def read_secrets(
    password: str | None, method: str, options: Mapping[str, Any], bad: Complaint
) -> tuple[str | None, str | None]:
    """(password, Keycloak client secret), each pasted alone; the password where the method needs one.
    The secrets themselves are never quoted."""
    if password is not None and method in ("portal", "token"):
        password = password.strip()  # tokens hold no whitespace; a pasted file's newline is not part of it
    if password and any(not c.isprintable() for c in password):
        raise bad("password", "contains a line break or control character", "Paste the secret again, alone")
    if password and method in ("portal", "token") and not password.isascii():
        # Both travel in HTTP headers, which carry ASCII only (Latin-1 at best).
        raise bad("password", "contains non-ASCII characters", f"Paste {SECRET_MEANING[method]} again, alone")
    client_secret = options.get("keycloak_client_secret") or None
    if client_secret is not None and not client_secret.isprintable():
        raise bad("extra.keycloak_client_secret", "contains a line break or control character", "Paste it again, alone")
    if method in SECRET_MEANING and not password:
        raise bad(
            "password",
            f"is empty but auth_method={method} needs it",
            f"Put {SECRET_MEANING[method]} in the connection's password field",
        )
    return password or None, client_secret


def read_lifespan(given: Mapping[str, Any], method: str, bad: Complaint) -> int:
    """Seconds a minted token lives: the form's default, or a signing key's shorter one when unset."""
    if "jwt_lifespan" in given:
        value = given["jwt_lifespan"]
    else:
        value = SIGNING_KEY_TOKEN_LIFESPAN if method == "signing_key" else field_default("jwt_lifespan")
    lifespan = whole_seconds(value, "extra.jwt_lifespan", bad)
    if lifespan > MAX_TOKEN_LIFESPAN or lifespan < MIN_TOKEN_LIFESPAN:
        raise bad(
            "extra.jwt_lifespan",
            f"is {lifespan} s",
            f"Choose {MIN_TOKEN_LIFESPAN} to {MAX_TOKEN_LIFESPAN} s: DESY issues tokens of at most 24 h, "
            f"and below {MIN_TOKEN_LIFESPAN} s a token would need renewing for every request",
        )
    return lifespan


def read_signing_key(options: Mapping[str, Any], method: str, login: str, bad: Complaint) -> bytes | None:
    """The decoded key of an auth_method=signing_key connection (None for the other methods)."""
    if method != "signing_key":
        return None
    if login.lower() in SLURM_SUPERUSERS:
        raise bad(
            "login",
            f"is {login!r}, which a signing key would mint tokens for: a token for root or for Slurm's own user "
            "(slurm) acts for every user of the cluster",
            "Give the service account's own user name",
        )
    raw = options.get("signing_secret")
    if not raw:
        raise bad(
            "extra.signing_secret",
            "is missing but auth_method=signing_key needs it",
            "Put the cluster's jwt_hs256.key, base64-encoded (base64 -w0 jwt_hs256.key), in "
            "extra.signing_secret (the form's 'Signing key' field)",
        )
    try:
        signing_key = base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        raise bad("extra.signing_secret", "is not valid base64", "Encode the key file with `base64 -w0`") from None
    if len(signing_key) < 16:
        raise bad(
            "extra.signing_secret",
            f"decodes to only {len(signing_key)} bytes",
            "Slurm's jwt_hs256.key holds at least 16 random bytes: check you encoded the key file itself",
        )
    return signing_key


def read_api_version(options: Mapping[str, Any], bad: Complaint) -> str:
    """'auto' (asked of the server) or a REST API version this package speaks."""
    from airflow_provider_maxwell.slurm.dialects import SUPPORTED_VERSIONS

    api_version = str(options["api_version"])
    if api_version != "auto" and api_version not in SUPPORTED_VERSIONS:
        raise bad(
            "extra.api_version", f"is {shown(api_version)}", f"Use 'auto' or one of {', '.join(SUPPORTED_VERSIONS)}"
        )
    return api_version


def read_tls(options: Mapping[str, Any], bad: Complaint) -> bool | str:
    """What requests and httpx take as `verify`: on, off, or the path of a CA bundle (extra.ca_bundle, or
    requests' own convention of a path in extra.verify)."""
    verify = read_verify(options["verify"], bad)
    ca_bundle = options.get("ca_bundle")
    if ca_bundle is None:
        return verify
    if verify is False:
        raise bad(
            "extra.ca_bundle",
            "is set but extra.verify is false",
            "Turn TLS verification on to verify with the CA bundle, or clear the CA bundle",
        )
    if isinstance(verify, str):
        raise bad(
            "extra.ca_bundle",
            "is set and extra.verify names a CA bundle too",
            "Give the CA bundle's path in extra.ca_bundle only and set extra.verify to true",
        )
    return read_ca_bundle(ca_bundle, bad)


def read_verify(value: Any, bad: Complaint) -> bool | str:
    """extra.verify: a flag, or a CA bundle's path (requests' own convention)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    if not os.path.isfile(text):
        raise bad(
            "extra.verify",
            f"names {shown(text)}, which is not a file",
            "Give true, false, or the path of a CA bundle (PEM) readable on workers and triggerers",
        )
    return text


def read_ca_bundle(value: Any, bad: Complaint) -> str:
    """extra.ca_bundle: the path of a file the workers and triggerers can read."""
    text = str(value).strip()
    if not os.path.isfile(text):
        raise bad(
            "extra.ca_bundle",
            f"names {shown(text)}, which is not a file",
            "Give the path of a CA bundle (PEM) readable on workers and triggerers, or leave it empty for the "
            "system's CAs",
        )
    return text


def read_timeout(value: Any, bad: Complaint, name: str = "extra.timeout") -> float:
    """Seconds a whole request (or, as `extra.submit_timeout`, a whole submission) may take."""
    try:
        if isinstance(value, bool) or (isinstance(value, str) and not value.isascii()):
            raise ValueError  # float() would take True as 1, and full-width digits as plain ones
        timeout = float(value)
        if not 0 < timeout <= MAX_TIMEOUT:  # also refuses nan
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        raise bad(  # the value as given: "nan" as text is quoted as text
            name,
            f"is {shown(value)}",
            f"Give a number of seconds above 0, at most {MAX_TIMEOUT:.0f}",
        ) from None
    return timeout


def read_service_urls(options: Mapping[str, Any], host_parts: SplitResult, bad: Complaint) -> tuple[str, str]:
    """(portal URL, Keycloak URL), without a trailing '/'; the portal's defaults to the REST root's origin."""
    portal_url = str(options.get("portal_url") or f"{host_parts.scheme}://{host_parts.netloc}/reservation").rstrip("/")
    keycloak_url = str(options["keycloak_url"]).rstrip("/")
    for name, url in (("extra.portal_url", portal_url), ("extra.keycloak_url", keycloak_url)):
        if "@" in url or "?" in url or "#" in url:
            raise bad(name, "has credentials, a query or a fragment", "Give the bare http(s):// URL of the service")
        service = url_parts(url)
        if service is None or service.scheme not in ("http", "https") or not service.hostname:
            raise bad(name, f"{quotable(url)} is not a URL", "Give a full http(s):// URL")
    return portal_url, keycloak_url


def read_realm(options: Mapping[str, Any], bad: Complaint) -> str:
    """The Keycloak realm's name, as it goes into a URL path."""
    realm = str(options["keycloak_realm"])
    if not realm or any(c in realm for c in "/?#%") or any(c.isspace() or not c.isprintable() for c in realm):
        raise bad("extra.keycloak_realm", f"is {shown(realm)}", "Give the realm's name alone, e.g. production")
    return realm


def read_job_url_template(value: Any, bad: Complaint) -> str | None:
    """The task's "Slurm job" link: an http(s) URL with {job_id} (and maybe {user}); None when unset."""
    if value is None:
        return None
    text = str(value).strip()
    fix = (
        "Give an http(s) URL with {job_id} where the job id goes, e.g. https://slurm-web.example/job/{job_id} "
        f"(placeholders: {', '.join('{' + p + '}' for p in JOB_URL_PLACEHOLDERS)})"
    )
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError:
        raise bad("extra.job_url_template", f"{quotable(text)} has an unmatched brace", fix) from None
    unknown = sorted(set(names) - set(JOB_URL_PLACEHOLDERS))
    if unknown or "job_id" not in names:
        problem = f"has unknown placeholders {unknown}" if unknown else "has no {job_id} placeholder"
        raise bad("extra.job_url_template", problem, fix)
    if urlsplit(text).scheme not in ("http", "https"):
        raise bad("extra.job_url_template", f"{quotable(text)} is not an http(s) URL", fix)
    return text


def plain_http_in_use(given: Mapping[str, Any], urls: Mapping[str, str], bad: Complaint) -> list[tuple[str, str]]:
    """The (field, URL) pairs that send in clear to another machine, when extra.allow_plain_http allows
    them; the first of them refused when it does not. `urls` in the order a refusal names them: the host
    first (the portal's URL defaults to its origin, and the refusal names what the user wrote)."""
    # Unset is no: the form leaves the switch unsaved until it is turned on.
    allowed = "allow_plain_http" in given and read_flag(given["allow_plain_http"], "extra.allow_plain_http", bad)
    in_clear = [(name, url) for name, url in urls.items() if crosses_network_in_clear(url)]
    if in_clear and not allowed:
        name, url = in_clear[0]
        raise bad(
            name,
            f"{quotable(url)} is plain http:// to another machine: passwords and tokens would cross the network "
            "unencrypted",
            "Use https://, or set extra.allow_plain_http to true if every network between here and there is trusted",
        )
    return in_clear


def whole_seconds(value: Any, name: str, bad: Complaint) -> int:
    """A whole number of seconds, as a JSON number or text."""
    try:
        # int() would take True as 1, 3600.9 as 3600, full-width digits as plain ones (and raise OverflowError on inf)
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        if isinstance(value, str) and not value.isascii():
            raise ValueError
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise bad(name, f"is {shown(value)}", "Give a whole number of seconds") from None


def read_flag(value: Any, name: str, bad: Complaint) -> bool:
    """A switch: a JSON boolean, or one of TRUE_WORDS / FALSE_WORDS as text (the 3.1 form saves text)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    raise bad(name, f"is {shown(value)}", "Give true or false")
