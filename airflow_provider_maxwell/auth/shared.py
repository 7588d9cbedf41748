"""One connection's current Slurm token, shared by the task processes of one host, encrypted.

A portal or Keycloak token is minted once per host and lifetime instead of once per task process.
The file lives in the user's private folder (host_files.py) and is encrypted (Fernet: AES-128-CBC
with HMAC-SHA256) with a key derived by scrypt from the connection's own secret (portal token or
password) and its fingerprint: reading it requires what Airflow's connection already guards, and
guessing a weak password from it costs scrypt per guess. Its name comes from the connection's
settings without the secret: a name is there for anyone who may list the folder to see, so it
must not let them test guesses. Connections differing only in their secret therefore share a
name; a file that does not decrypt with this connection's key is a miss, and its mint replaces it.
SECURITY.md says more.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_maxwell import host_files
from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.config import MaxwellConnectionConfig

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

FORMAT = 1
# scrypt cost: ~50 ms and 16 MiB once per process and connection, for every guess of an attacker.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
LOCK_WAIT = 120.0  # seconds to wait for another process's mint before minting without it


class SharedTokenFile:
    """The encrypted file holding a connection's token on this host, and the lock around minting it."""

    def __init__(self, config: MaxwellConnectionConfig, folder: host_files.HostFolder) -> None:
        self.config = config
        self.folder = folder

    @cached_property
    def name(self) -> str:
        """The file's stem: a hash of the connection's settings but its secrets (all of the fingerprint's
        others, so that only a changed secret makes two connections meet at one name)."""
        config = self.config
        public = [
            config.conn_id,
            config.host,
            config.login,
            config.auth_method,
            config.portal_url,
            config.token_lifespan,
            config.keycloak_url,
            config.keycloak_realm,
            config.keycloak_client_id,
            config.keycloak_scope,
            config.api_version,
            config.verify,
            config.timeout,
            config.submit_timeout,
            config.job_url_template,
        ]
        return host_files.own_name("token", json.dumps(public))

    @property
    def path(self) -> Path:
        """Where the encrypted token file was found (for messages and tests; opened through its folder)."""
        return self.folder.path / f"{self.name}.token"

    @cached_property
    def lock(self) -> host_files.HostLock:
        """The host-wide lock held while this connection's token is minted."""
        return self.folder.lock(f"{self.name}.lock")

    @classmethod
    def for_connection(cls, config: MaxwellConnectionConfig) -> SharedTokenFile | None:
        """The connection's shared token file, or None when sharing is off or no private folder exists."""
        if not config.shared_cache or not config.password:
            return None
        folder = host_files.shared_folder()
        return cls(config, folder) if folder is not None else None

    @cached_property
    def _key(self) -> bytes:
        """The file's key: scrypt over the connection's secret, salted with its settings."""
        secret = "\0".join(filter(None, [self.config.password, self.config.keycloak_client_secret]))
        return hashlib.scrypt(
            secret.encode(),
            salt=f"maxwell token key\0{self.config.fingerprint}".encode(),
            n=SCRYPT_N,
            r=SCRYPT_R,
            p=SCRYPT_P,
            dklen=32,
        )

    @cached_property
    def _fernet(self) -> Fernet:
        from cryptography.fernet import Fernet  # imported only when a token is shared: DAG files never pay for it

        return Fernet(base64.urlsafe_b64encode(self._key))

    def load(self) -> MintedToken | None:
        """The token another process stored, if the file exists and decrypts to one of this connection."""
        from cryptography.fernet import InvalidToken

        sealed = self.folder.read(f"{self.name}.token")
        if not sealed:
            return None
        try:
            content = json.loads(self._fernet.decrypt(sealed))
            if content.get("format") != FORMAT or content.get("fingerprint") != self.config.fingerprint:
                return None
            return MintedToken(
                value=str(content["token"]),
                issued_at=float(content["issued_at"]),
                expires_at=float(content["expires_at"]),
                user=content.get("user"),
            )
        except (InvalidToken, ValueError, KeyError, TypeError, AttributeError):
            # Another key (a changed secret, or another connection of the same name), a damaged file:
            # a miss; the mint that follows replaces it.
            return None

    def save(self, token: MintedToken) -> None:
        """Store a newly minted token for the other processes (replacing the file atomically)."""
        content = {
            "format": FORMAT,
            "fingerprint": self.config.fingerprint,
            "token": token.value,
            "issued_at": token.issued_at,
            "expires_at": token.expires_at,
            "user": token.user,
        }
        try:
            self.folder.write(f"{self.name}.token", self._fernet.encrypt(json.dumps(content).encode()))
            self.folder.prune()
        except OSError:
            pass  # a full or vanished folder: this process keeps its token in memory, the others mint theirs
