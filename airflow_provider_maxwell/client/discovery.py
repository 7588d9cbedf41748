"""Which Slurm REST API version to speak with a server: decided once per host, not per process.

The newest version this provider speaks whose `ping` the server answers wins: on Slurm 26.05 that is
one tiny request, on 22.05 seven, instead of the 0.5-1.8 MB OpenAPI document. The choice is kept
for the other task processes of the host for VERSION_FILE_TTL (host_files.py), and probed under a
host lock: of many processes starting at once, one probes and the others read its choice. Only when probing
finds nothing (or meets something other than "no such path") is the document read, to choose from
what it lists or to say which versions the server serves. A version pinned in the connection skips
all of it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping

from airflow_provider_maxwell import host_files
from airflow_provider_maxwell.client.exchange import RetryPolicy, exchange
from airflow_provider_maxwell.client.state import ConnectionState
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import Note, Protocol, Sleep
from airflow_provider_maxwell.exceptions import SlurmApiError
from airflow_provider_maxwell.slurm.dialects import (
    DIALECTS,
    OPENAPI_PATHS,
    SUPPORTED_VERSIONS,
    ApiDialect,
    negotiate,
    openapi_route,
    served_versions,
)

# Seconds a host keeps a version choice: short enough that a Slurm upgrade which drops a version is
# noticed within the hour, long enough that its probes are noise (at most 7 tiny requests an hour).
VERSION_FILE_TTL = 3600.0
# Seconds a process waits for another process's probe before probing for itself (a hung prober).
PROBE_LOCK_WAIT = 30.0


def dialect(state: ConnectionState, policy: RetryPolicy) -> Protocol[ApiDialect]:
    """The API version to speak: explicit in the connection, else the host's recent choice, else probed."""
    if state.dialect is not None:
        return state.dialect
    config = state.config
    if config.api_version != "auto":  # the release then shows in the first answer's `meta`
        chosen, how = negotiate((), config.api_version), "set in the connection"
    elif (remembered := recall(config)) is not None:
        (chosen, state.release), how = remembered, "chosen by this host within the hour"
    else:
        chosen, how = yield from _probe_once_per_host(state, policy)
    state.dialect = chosen
    yield Note(
        f"Maxwell connection {config.conn_id}: Slurm {state.release or '(release unknown)'}, REST API "
        f"{chosen.version} ({how})"
    )
    return chosen


def _probe_once_per_host(state: ConnectionState, policy: RetryPolicy) -> Protocol[tuple[ApiDialect, str]]:
    """Probe under the host's lock, so that processes starting together do not each probe: the one
    holding the lock probes and saves its choice, the others wait (as Sleep effects, so the triggerer's
    event loop never blocks) and read it. Without a shared folder, or after PROBE_LOCK_WAIT, a process
    probes for itself."""
    config = state.config
    where = _version_file(config)
    lock = where[0].lock(f"{where[1]}.lock") if where is not None else None
    deadline = time.monotonic() + PROBE_LOCK_WAIT
    while lock is not None and not lock.acquire(0):
        if time.monotonic() >= deadline:
            lock = None
            break
        yield Sleep(host_files.LOCK_POLL)
        if (remembered := recall(config)) is not None:
            (chosen, state.release), how = remembered, "chosen by another process of this host just now"
            return chosen, how
    try:
        # Look again under the lock: its last holder may have saved a choice since we last looked.
        if lock is not None and (remembered := recall(config)) is not None:
            (chosen, state.release) = remembered
            return chosen, "chosen by another process of this host just now"
        chosen, how = yield from _probe(state, policy)
        remember(config, chosen, state.release)
        return chosen, how
    finally:
        if lock is not None:
            lock.release()


def _probe(state: ConnectionState, policy: RetryPolicy) -> Protocol[tuple[ApiDialect, str]]:
    """The newest known version whose ping answers; the OpenAPI document decides when none clearly does."""
    for version in reversed(SUPPORTED_VERSIONS):
        answer = yield from exchange(state, policy, "GET", DIALECTS[version].ping)
        if answer.status == 200 and answer.is_slurm:
            return DIALECTS[version], f"the newest of {', '.join(SUPPORTED_VERSIONS)} it answers"
        if answer.status != 404:
            break  # not "no such version": something else stands in the way, let the document tell
    offered = yield from _offered_by_document(state, policy)
    return negotiate(offered), f"server offers {', '.join(sorted(offered))}"


def _offered_by_document(state: ConnectionState, policy: RetryPolicy) -> Protocol[set[str]]:
    """The versions the server's OpenAPI document lists (the expensive way: read only when probing fails)."""
    for path in OPENAPI_PATHS:
        answer = yield from exchange(state, policy, "GET", openapi_route(path))
        if answer.status == 200 and answer.document is not None:
            state.release = state.release or openapi_release(answer.document)
            return served_versions(answer.document)
        if answer.status != 404:
            raise SlurmApiError(
                "Could not read the server's API versions",
                status=answer.status,
                url=f"{state.config.host}{path}",
                errors=answer.errors,
            )
    return set()


def _version_file(config: MaxwellConnectionConfig) -> tuple[host_files.HostFolder, str] | None:
    """The host's folder and the stem of the file keeping the choice for the connection's server."""
    folder = host_files.shared_folder() if config.shared_cache else None
    return (folder, host_files.own_name("api", config.host)) if folder is not None else None


def recall(config: MaxwellConnectionConfig, now: float | None = None) -> tuple[ApiDialect, str | None] | None:
    """The version (and release) a process of this host chose for the connection's server lately, if any."""
    where = _version_file(config)
    content = where[0].read(f"{where[1]}.json") if where is not None else None
    try:
        kept = json.loads(content) if content else None
        if not isinstance(kept, Mapping) or kept.get("host") != config.host:
            return None
        age = (time.time() if now is None else now) - float(kept["checked_at"])
        release = kept.get("release")
        if 0 <= age < VERSION_FILE_TTL and kept.get("version") in DIALECTS:
            return DIALECTS[kept["version"]], release if isinstance(release, str) else None
    except (ValueError, KeyError, TypeError):
        pass  # a damaged file: probe again, which replaces it
    return None


def remember(config: MaxwellConnectionConfig, chosen: ApiDialect, release: str | None) -> None:
    """Keep a choice for the host's other processes (nothing secret: host, version, release)."""
    where = _version_file(config)
    if where is None:
        return
    content = {"host": config.host, "version": chosen.version, "release": release, "checked_at": time.time()}
    with contextlib.suppress(OSError):  # the others then probe for themselves
        where[0].write(f"{where[1]}.json", json.dumps(content).encode())


def openapi_release(document: Mapping[str, object]) -> str | None:
    """The release an OpenAPI document names (`info.x-slurm.release`), if it names one sensibly."""
    info = document.get("info")
    slurm = info.get("x-slurm") if isinstance(info, Mapping) else None
    release = slurm.get("release") if isinstance(slurm, Mapping) else None
    return release if isinstance(release, str) and release else None
