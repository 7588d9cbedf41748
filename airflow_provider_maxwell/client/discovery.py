"""Which Slurm REST API version to speak with a server: decided once per connection state.

The server's OpenAPI document lists the versions it serves; the newest one this provider speaks
wins (slurm/dialects.py). A version pinned in the connection skips the document.
"""

from __future__ import annotations

from collections.abc import Mapping

from airflow_provider_maxwell.client.exchange import RetryPolicy, exchange
from airflow_provider_maxwell.client.state import ConnectionState
from airflow_provider_maxwell.effects import Note, Protocol
from airflow_provider_maxwell.exceptions import SlurmApiError
from airflow_provider_maxwell.slurm.dialects import OPENAPI_PATHS, ApiDialect, negotiate, openapi_route, served_versions


def dialect(state: ConnectionState, policy: RetryPolicy) -> Protocol[ApiDialect]:
    """The API version to speak: explicit in the connection, else negotiated once per process."""
    if state.dialect is not None:
        return state.dialect
    config = state.config
    offered: set[str] = set()
    if config.api_version == "auto":
        for path in OPENAPI_PATHS:
            answer = yield from exchange(state, policy, "GET", openapi_route(path))
            if answer.status == 200 and answer.document is not None:
                offered = served_versions(answer.document)
                state.release = state.release or openapi_release(answer.document)
                break
            if answer.status != 404:
                raise SlurmApiError(
                    "Could not read the server's API versions",
                    status=answer.status,
                    url=f"{config.host}{path}",
                    errors=answer.errors,
                )
    chosen = negotiate(offered, config.api_version)
    if state.release is None:
        yield from exchange(state, policy, "GET", chosen.ping())  # its `meta` names the release
    state.dialect = chosen
    yield Note(
        f"Maxwell connection {config.conn_id}: Slurm {state.release or '(release unknown)'}, REST API "
        f"{chosen.version} ("
        + (f"server offers {', '.join(sorted(offered))}" if offered else "set in the connection")
        + ")"
    )
    return chosen


def openapi_release(document: Mapping[str, object]) -> str | None:
    """The release an OpenAPI document names (`info.x-slurm.release`), if it names one sensibly."""
    info = document.get("info")
    slurm = info.get("x-slurm") if isinstance(info, Mapping) else None
    release = slurm.get("release") if isinstance(slurm, Mapping) else None
    return release if isinstance(release, str) and release else None
