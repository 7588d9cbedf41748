"""A Maxwell connection, read and checked once: defaults filled, every mistake named with its fix."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import os
import string
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from airflow.exceptions import AirflowProviderDeprecationWarning

from airflow_provider_maxwell.exceptions import MaxwellConfigError, secret_forms
from airflow_provider_maxwell.provider_info import (
    AUTH_METHODS,
    CONN_FIELDS,
    DEPRECATED_FIELD_NAMES,
    MAX_TOKEN_LIFESPAN,
    MIN_TOKEN_LIFESPAN,
    SIGNING_KEY_TOKEN_LIFESPAN,
    field_default,
)


@dataclass(frozen=True)
class MaxwellConnectionConfig:
    """A Maxwell connection, validated once: host, login, auth method and their settings."""

    conn_id: str
    host: str
    login: str
    auth_method: str
    password: str | None = field(default=None, repr=False)
    portal_url: str = ""
    token_lifespan: int = field_default("jwt_lifespan")  # extra.jwt_lifespan
    keycloak_url: str = field_default("keycloak_url")
    keycloak_realm: str = field_default("keycloak_realm")
    keycloak_client_id: str = field_default("keycloak_client_id")
    keycloak_client_secret: str | None = field(default=None, repr=False)
    keycloak_scope: str = field_default("keycloak_scope")
    signing_key: bytes | None = field(default=None, repr=False)  # extra.signing_secret, decoded
    api_version: str = field_default("api_version")
    verify: bool | str = field_default("verify")
    timeout: float = float(field_default("timeout"))
    shared_cache: bool = field_default("shared_cache")  # share token and version between this host's processes
    job_url_template: str | None = None

    @property
    def secret_texts(self) -> list[str]:
        """Every form in which the connection's secrets could show up in text: for masking in logs and
        scrubbing from messages, whatever the field's name (the signing key as given, base64, and raw)."""
        texts = [t for t in (self.password, self.keycloak_client_secret) if t]
        # As they travel (URL-encoded in Keycloak's form, in the portal's Basic auth header) and as a server
        # or proxy echoing the request quotes them (URL-encoded, JSON- or HTML-escaped).
        forms = [form for t in texts for form in secret_forms(t)]
        if self.password:
            forms.append(base64.b64encode(f"{self.login}:{self.password}".encode()).decode())
        if self.signing_key:
            forms += [base64.b64encode(self.signing_key).decode(), self.signing_key.decode("latin-1")]
        return list(dict.fromkeys(forms))

    @property
    def fingerprint(self) -> str:
        """Identifies these exact settings (secrets included, hashed) for per-process caches."""
        material = json.dumps(
            [
                self.conn_id,
                self.host,
                self.login,
                self.auth_method,
                self.password,
                self.portal_url,
                self.token_lifespan,
                self.keycloak_url,
                self.keycloak_realm,
                self.keycloak_client_id,
                self.keycloak_client_secret,
                self.keycloak_scope,
                self.signing_key.hex() if self.signing_key else None,
                self.api_version,
                self.verify,
                self.timeout,
                self.shared_cache,
                self.job_url_template,
            ],
        )
        return hashlib.sha256(material.encode()).hexdigest()

    @classmethod
    def from_connection(
        cls, conn_id: str, *, host: str | None, login: str | None, password: str | None, extra: Mapping[str, Any] | None
    ) -> MaxwellConnectionConfig:
        """Read and validate an Airflow connection; errors name the connection, the field and the fix."""

        def bad(field_name: str, problem: str, fix: str) -> MaxwellConfigError:
            return MaxwellConfigError(f"Maxwell connection {conn_id!r}: {field_name} {problem}. {fix}")

        if extra is not None and not isinstance(extra, Mapping):
            raise bad(
                "extra", f"is {json_kind(extra)}, not a JSON object", 'Write it as {"auth_method": "portal", ...}'
            )
        # Null and empty mean "not set": the form saves every field, empty ones included.
        given = {k.removeprefix("extra__maxwell__"): v for k, v in (extra or {}).items() if v not in (None, "")}
        unknown = sorted(set(given) - set(CONN_FIELDS) - set(DEPRECATED_FIELD_NAMES))
        if unknown:
            raise bad("extra", f"has unknown keys {unknown}", f"Known keys: {', '.join(sorted(CONN_FIELDS))}")
        masked = sorted(name for name, value in given.items() if value == MASK)
        if masked:
            raise bad(
                f"extra.{masked[0]}",
                f"is {MASK!r}, the mask Airflow's UI shows for fields whose name looks secret, saved as the value",
                "Type the real value again (this release's field names are not masked unless secret)",
            )
        spelled = {name: f"extra.{name}" for name in CONN_FIELDS}  # how errors name a field: as the user wrote it
        for old, new in DEPRECATED_FIELD_NAMES.items():
            if old not in given:
                continue
            if new in given and given[new] != given[old]:
                raise bad(
                    f"extra.{old}",
                    f"and extra.{new} are both set, to different values",
                    f"Keep only extra.{new} ({old} is its deprecated name)",
                )
            warnings.warn(
                f"Maxwell connection {conn_id!r}: extra.{old} is deprecated; rename it to extra.{new}. "
                f"{DEPRECATION_REASONS[old]}",
                AirflowProviderDeprecationWarning,
                stacklevel=2,
            )
            given[new] = given.pop(old)
            spelled[new] = f"extra.{old}"
        for name in sorted(set(given) & TEXT_FIELDS):
            if not isinstance(given[name], str):
                # Never quoted: signing_key and keycloak_client_secret are secrets.
                raise bad(spelled[name], f"is {json_kind(given[name])}", "Write it as a JSON string")
        # Every field's default comes from the form's own table (provider_info.CONN_FIELDS).
        options = {name: field_default(name) for name in CONN_FIELDS} | given

        host = (host or "").strip().rstrip("/")
        parts = url_parts(host)
        if parts is None:
            raise bad(
                "host", f"{quotable(host)} is not a URL", "Give the REST root, e.g. https://max-slurm-rest.desy.de/sapi"
            )
        if parts.username is not None or parts.password is not None:
            # Never quoted: the part before '@' may hold a password.
            raise bad(
                "host",
                "carries credentials before '@'",
                "Give the bare REST root (e.g. https://max-slurm-rest.desy.de/sapi) and put the user in login and "
                "the secret in password",
            )
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise bad(
                "host", f"{quotable(host)} is not a URL", "Give the REST root, e.g. https://max-slurm-rest.desy.de/sapi"
            )
        if parts.query or parts.fragment or "?" in host or "#" in host:
            raise bad("host", "has a query or fragment", "Give the REST root only, without '?...' or '#...'")
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

        method = str(options["auth_method"])
        if method not in AUTH_METHODS:
            raise bad("extra.auth_method", f"is {shown(method)}", f"Use one of: {', '.join(AUTH_METHODS)}")
        secret_meaning = {
            "portal": "the portal token",
            "keycloak": "the user's DESY password",
            "token": "a Slurm JWT (e.g. from slurm_token)",
        }
        if password is not None and method in ("portal", "token"):
            password = password.strip()  # tokens hold no whitespace; a pasted file's newline is not part of it
        if password and any(not c.isprintable() for c in password):
            # Never quoted: it is the secret itself.
            raise bad("password", "contains a line break or control character", "Paste the secret again, alone")
        if password and method in ("portal", "token") and not password.isascii():
            # Never quoted either. Both travel in HTTP headers, which carry ASCII only (Latin-1 at best).
            raise bad("password", "contains non-ASCII characters", f"Paste {secret_meaning[method]} again, alone")
        client_secret = options.get("keycloak_client_secret") or None
        if client_secret is not None and not client_secret.isprintable():
            raise bad(
                "extra.keycloak_client_secret", "contains a line break or control character", "Paste it again, alone"
            )
        if method in secret_meaning and not password:
            raise bad(
                "password",
                f"is empty but auth_method={method} needs it",
                f"Put {secret_meaning[method]} in the connection's password field",
            )

        if method == "signing_key" and "jwt_lifespan" not in given:
            options["jwt_lifespan"] = SIGNING_KEY_TOKEN_LIFESPAN
        lifespan = _int(options["jwt_lifespan"], spelled["jwt_lifespan"], bad)
        if lifespan > MAX_TOKEN_LIFESPAN or lifespan < MIN_TOKEN_LIFESPAN:
            raise bad(
                spelled["jwt_lifespan"],
                f"is {lifespan} s",
                f"Choose {MIN_TOKEN_LIFESPAN} to {MAX_TOKEN_LIFESPAN} s: DESY issues tokens of at most 24 h, "
                f"and below {MIN_TOKEN_LIFESPAN} s a token would need renewing for every request",
            )

        signing_key = None
        if method == "signing_key" and login.lower() in SLURM_SUPERUSERS:
            raise bad(
                "login",
                f"is {login!r}, which a signing key would mint tokens for: a token for root or for Slurm's own user "
                "(slurm) acts for every user of the cluster",
                "Give the service account's own user name",
            )
        if method == "signing_key":
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
                raise bad(
                    spelled["signing_secret"], "is not valid base64", "Encode the key file with `base64 -w0`"
                ) from None
            if len(signing_key) < 16:
                raise bad(
                    spelled["signing_secret"],
                    f"decodes to only {len(signing_key)} bytes",
                    "Slurm's jwt_hs256.key holds at least 16 random bytes: check you encoded the key file itself",
                )

        api_version = str(options["api_version"])
        from airflow_provider_maxwell.slurm.dialects import SUPPORTED_VERSIONS

        if api_version != "auto" and api_version not in SUPPORTED_VERSIONS:
            raise bad(
                "extra.api_version", f"is {shown(api_version)}", f"Use 'auto' or one of {', '.join(SUPPORTED_VERSIONS)}"
            )

        verify = _verify(options["verify"], bad)
        ca_bundle = options.get("ca_bundle")
        if ca_bundle is not None:
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
            verify = _ca_bundle(ca_bundle, bad)
        given_timeout = options["timeout"]
        try:
            if isinstance(given_timeout, bool) or (isinstance(given_timeout, str) and not given_timeout.isascii()):
                raise ValueError  # float() would take True as 1, and full-width digits as plain ones
            timeout = float(given_timeout)
            if not 0 < timeout <= MAX_TIMEOUT:  # also refuses nan
                raise ValueError
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
            raise bad(  # the value as given: "nan" as text is quoted as text
                "extra.timeout",
                f"is {shown(given_timeout)}",
                f"Give a number of seconds above 0, at most {MAX_TIMEOUT:.0f}",
            ) from None

        portal_url = str(options.get("portal_url") or f"{parts.scheme}://{parts.netloc}/reservation").rstrip("/")
        keycloak_url = str(options["keycloak_url"]).rstrip("/")
        for name, url in (("extra.portal_url", portal_url), ("extra.keycloak_url", keycloak_url)):
            if "@" in url or "?" in url or "#" in url:
                raise bad(name, "has credentials, a query or a fragment", "Give the bare http(s):// URL of the service")
            service = url_parts(url)
            if service is None or service.scheme not in ("http", "https") or not service.hostname:
                raise bad(name, f"{quotable(url)} is not a URL", "Give a full http(s):// URL")
        realm = str(options["keycloak_realm"])
        if not realm or any(c in realm for c in "/?#%") or any(c.isspace() or not c.isprintable() for c in realm):
            raise bad("extra.keycloak_realm", f"is {shown(realm)}", "Give the realm's name alone, e.g. production")
        job_url_template = options.get("job_url_template")
        if job_url_template is not None:
            job_url_template = _job_url_template(job_url_template, bad)
        # Unset is no: the form leaves the switch unsaved until it is turned on.
        allow_plain_http = "allow_plain_http" in given and _flag(
            given["allow_plain_http"], "extra.allow_plain_http", bad
        )
        # The host first: the portal's URL defaults to its origin, and the refusal names what the user wrote.
        in_clear = [
            (name, url)
            for name, url in (("host", host), ("extra.portal_url", portal_url), ("extra.keycloak_url", keycloak_url))
            if crosses_network_in_clear(url)
        ]
        if in_clear and not allow_plain_http:
            name, url = in_clear[0]
            raise bad(
                name,
                f"{quotable(url)} is plain http:// to another machine: passwords and tokens would cross the network "
                "unencrypted",
                "Use https://, or set extra.allow_plain_http to true if every network between here and there is "
                "trusted",
            )
        # Warned only once the connection is known good, so a refused one says one thing: why.
        for name, url in in_clear:
            _warn_once(
                f"Maxwell connection {conn_id!r}: {name} {quotable(url)} is plain http:// to another machine, "
                "allowed by extra.allow_plain_http: passwords and tokens cross the network unencrypted"
            )
        if verify is False:
            _warn_once(
                f"Maxwell connection {conn_id!r}: TLS certificates are not verified (extra.verify is false): whoever "
                "is on the network path can pose as the server and read passwords and tokens. Give the server's CA "
                "in extra.ca_bundle instead"
            )
        return cls(
            conn_id=conn_id,
            host=host,
            login=login,
            auth_method=method,
            password=password or None,
            portal_url=portal_url,
            token_lifespan=lifespan,
            keycloak_url=keycloak_url,
            keycloak_realm=realm,
            keycloak_client_id=str(options["keycloak_client_id"]),
            keycloak_client_secret=client_secret,
            keycloak_scope=str(options["keycloak_scope"]),
            signing_key=signing_key,
            api_version=api_version,
            verify=verify,
            timeout=timeout,
            shared_cache=_flag(options["shared_cache"], "extra.shared_cache", bad),
            job_url_template=job_url_template,
        )

    def job_url(self, job_id: int) -> str | None:
        """The page of a job for the task's "Slurm job" link; None when the connection has no URL template."""
        if not self.job_url_template:
            return None
        return self.job_url_template.format(job_id=job_id, user=self.login)


MASK = "***"  # what Airflow shows instead of a value whose field name looks secret
JOB_URL_PLACEHOLDERS = ("job_id", "user")
DEPRECATION_REASONS = {
    "token_lifespan": "Airflow's UI shows every extra field whose name contains 'token' as '***' and saves that "
    "text when the form is saved.",
    "signing_key": "Airflow shows extra fields in clear unless their name looks secret: the UI and the REST API "
    "showed the key; they mask extra.signing_secret.",
}
# Users whose Slurm token acts for every user: root, and the user slurmctld runs as (SlurmUser, "slurm"
# by convention). A signing_key connection mints for its login, so these logins would hand that power to
# every task that reads it. Compared without case: no real account differs from these by case alone.
SLURM_SUPERUSERS = frozenset({"root", "slurm"})
MAX_TIMEOUT = 3600.0  # seconds per request: more is a typo, and no socket takes infinity
# The extra fields whose values are text (the form's schema says string and nothing else).
TEXT_FIELDS = frozenset(name for name, spec in CONN_FIELDS.items() if spec["schema"]["type"] == ["string", "null"])
SHOWN_LENGTH = 60  # characters of a bad value an error message quotes: enough to recognise it


def quotable(url: str) -> str:
    """A URL as an error message may show it: not at all when it could hold credentials or a token."""
    return shown(url) if not any(c in url for c in "@?#") else "(not shown: it may hold credentials)"


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


def shown(value: Any) -> str:
    """A (non-secret) bad value as an error message quotes it: its repr, cut short if it is long."""
    text = repr(value)
    return text if len(text) <= SHOWN_LENGTH else f"{text[:SHOWN_LENGTH]}... ({len(text)} characters)"


def url_parts(url: str) -> SplitResult | None:
    """The parts of a URL, or None for what no request can be sent to: unparseable (an unclosed '[' of an
    IPv6 address), or holding whitespace or control characters (which urlsplit silently drops)."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return None
    try:
        return urlsplit(url)
    except ValueError:
        return None


def is_this_machine(hostname: str) -> bool:
    """Whether a URL's host name is this machine by its name alone, with no resolver asked: localhost,
    127.0.0.0/8 or ::1. Traffic to it never leaves the machine."""
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:  # a name (a resolver could map it anywhere), or no address at all
        return False


def crosses_network_in_clear(url: str) -> bool:
    """Whether what is sent to `url` crosses a network unencrypted: plain http:// to another machine."""
    parts = url_parts(url)
    return parts is not None and parts.scheme.lower() == "http" and not is_this_machine(parts.hostname or "")


class InsecureConnectionWarning(UserWarning):
    """A connection sends secrets where others may read them: plain http:// (allowed on purpose), or TLS
    without verifying the server. Its own category, so a deployment can make it an error
    (`warnings.simplefilter("error", InsecureConnectionWarning)`)."""


_warned: set[str] = set()  # the insecure-connection warnings this process gave


def _warn_once(message: str) -> None:
    # Once per process: a connection is read again for every task and trigger, and one warning per read
    # would bury the task log in the same sentence.
    if message in _warned:
        return
    warnings.warn(message, InsecureConnectionWarning, stacklevel=3)
    _warned.add(message)  # only once given: a filter that makes it an error refuses the connection every time


Complaint = Callable[[str, str, str], MaxwellConfigError]  # (field, problem, fix) -> the error to raise


def _int(value: Any, name: str, bad: Complaint) -> int:
    try:
        # int() would take True as 1, 3600.9 as 3600, full-width digits as plain ones (and raise OverflowError on inf)
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        if isinstance(value, str) and not value.isascii():
            raise ValueError
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise bad(name, f"is {shown(value)}", "Give a whole number of seconds") from None


TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")


def _flag(value: Any, name: str, bad: Complaint) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    raise bad(name, f"is {shown(value)}", "Give true or false")


def _verify(value: Any, bad: Complaint) -> bool | str:
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    # A CA bundle's path in `verify` (requests' own convention) is still read; the form has extra.ca_bundle.
    if not os.path.isfile(text):
        raise bad(
            "extra.verify",
            f"names {shown(text)}, which is not a file",
            "Give true, false, or the path of a CA bundle (PEM) readable on workers and triggerers",
        )
    return text


def _ca_bundle(value: Any, bad: Complaint) -> str:
    text = str(value).strip()
    if not os.path.isfile(text):
        raise bad(
            "extra.ca_bundle",
            f"names {shown(text)}, which is not a file",
            "Give the path of a CA bundle (PEM) readable on workers and triggerers, or leave it empty for the "
            "system's CAs",
        )
    return text


def _job_url_template(value: Any, bad: Complaint) -> str:
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
