"""A Maxwell connection, read and checked once: defaults filled, every mistake named with its fix."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_maxwell import connection_fields as fields
from airflow_provider_maxwell.exceptions import secret_forms
from airflow_provider_maxwell.provider_info import CONN_FIELDS, field_default
from airflow_provider_maxwell.urls import quotable


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
    submit_timeout: float = float(field_default("submit_timeout"))  # a submission's bound, from its first sending
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
        values = (getattr(self, f.name) for f in dataclasses.fields(self))  # every setting, in field order
        material = json.dumps([v.hex() if isinstance(v, bytes) else v for v in values])
        return hashlib.sha256(material.encode()).hexdigest()

    @classmethod
    def from_connection(
        cls, conn_id: str, *, host: str | None, login: str | None, password: str | None, extra: Mapping[str, Any] | None
    ) -> MaxwellConnectionConfig:
        """Read and validate an Airflow connection; errors name the connection, the field and the fix.

        The fields are read in this order, and where a connection has several mistakes the first is named."""
        bad = fields.complaint(conn_id)
        given = fields.given_extra(extra, bad)
        # Every field's default comes from the form's own table (provider_info.CONN_FIELDS).
        options = {name: field_default(name) for name in CONN_FIELDS} | given
        rest_root_field, host, host_parts = fields.read_rest_root(host, given, bad)
        login = fields.read_login(login, bad)
        method = fields.read_auth_method(options, bad)
        password, client_secret = fields.read_secrets(password, method, options, bad)
        portal_url, keycloak_url = fields.read_service_urls(options, host_parts, bad)
        in_clear = fields.plain_http_in_use(
            given, {rest_root_field: host, "extra.portal_url": portal_url, "extra.keycloak_url": keycloak_url}, bad
        )
        # Each field read where it is set; keyword arguments are evaluated in this order.
        config = cls(
            conn_id=conn_id,
            host=host,
            login=login,
            auth_method=method,
            password=password,
            token_lifespan=fields.read_lifespan(given, method, bad),
            signing_key=fields.read_signing_key(options, method, login, bad),
            api_version=fields.read_api_version(options, bad),
            verify=fields.read_tls(options, bad),
            timeout=fields.read_timeout(options["timeout"], bad),
            portal_url=portal_url,
            keycloak_url=keycloak_url,
            keycloak_realm=fields.read_realm(options, bad),
            keycloak_client_id=str(options["keycloak_client_id"]),
            keycloak_client_secret=client_secret,
            keycloak_scope=str(options["keycloak_scope"]),
            submit_timeout=fields.read_timeout(options["submit_timeout"], bad, "extra.submit_timeout"),
            job_url_template=fields.read_job_url_template(options.get("job_url_template"), bad),
            shared_cache=fields.read_flag(options["shared_cache"], "extra.shared_cache", bad),
        )
        # Warned only once the connection is known good, so a refused one says one thing: why.
        _warn_insecure(conn_id, in_clear, config.verify)
        return config

    def job_url(self, job_id: int) -> str | None:
        """The page of a job for the task's "Slurm job" link; None when the connection has no URL template."""
        if not self.job_url_template:
            return None
        return self.job_url_template.format(job_id=job_id, user=self.login)


class InsecureConnectionWarning(UserWarning):
    """A connection sends secrets where others may read them: plain http:// (allowed on purpose), or TLS
    without verifying the server. Its own category, so a deployment can make it an error
    (`warnings.simplefilter("error", InsecureConnectionWarning)`)."""


def _warn_insecure(conn_id: str, in_clear: list[tuple[str, str]], verify: bool | str) -> None:
    """Say what a connection allowed on purpose sends where others may read it."""
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


_warned: set[str] = set()  # the insecure-connection warnings this process gave


def _warn_once(message: str) -> None:
    # Once per process: a connection is read again for every task and trigger, and one warning per read
    # would bury the task log in the same sentence.
    if message in _warned:
        return
    warnings.warn(message, InsecureConnectionWarning, stacklevel=4)  # the caller of from_connection
    _warned.add(message)  # only once given: a filter that makes it an error refuses the connection every time
