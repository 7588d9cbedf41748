"""Every difference between Slurm REST API versions, as data: one `ApiDialect` per version.

Nothing outside `slurm/` asks which version it talks to; code asks a dialect what to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.slurm.states import TERMINAL_STATES

LISTING_CHUNK = 500  # job ids per accounting query: ~4.5 KB of URL, under nginx's default 8 KB line
# jobs/state and (v0.0.40 on) accounting take each id as its own `job_id=`/`step=` (a comma list is
# refused with 422, measured on 24.11 and 26.05): ~14-17 characters per id, so a query is cut at this
# many characters to stay under nginx's 8 KB request line.
ID_QUERY_CHARS = 6000
_VERSION_PATH = re.compile(r"^/slurm(db)?/(v0\.0\.\d+)/")
OPENAPI_PATHS = ("/openapi/v3", "/openapi.json", "/openapi")  # newest first: where servers publish it


class Service(Enum):
    """Which part of slurmrestd a request goes to: their answers to a refused token differ."""

    SLURM = "slurm"  # slurmctld: jobs, ping, diag
    SLURMDB = "slurmdb"  # slurmdbd: accounting
    OPENAPI = "openapi"  # the server's own description; no token is checked


@dataclass(frozen=True)
class Route:
    """A REST path with what it is: the service it reaches and the API version it belongs to."""

    service: Service
    path: str
    version: str | None = None

    def ping(self) -> Route | None:
        """slurmctld's ping of the same version (checks no token), for telling a stopped slurmctld from a
        refused token; None for paths outside /slurm."""
        if self.service is not Service.SLURM or self.version is None:
            return None
        return Route.of(Service.SLURM, self.version, "ping")

    @classmethod
    def of(cls, service: Service, version: str, rest: str) -> Route:
        """The route to `rest` under a service's versioned prefix: /slurm/v0.0.42/jobs."""
        return cls(service, f"/{service.value}/{version}/{rest}", version)


def openapi_route(path: str) -> Route:
    """One of OPENAPI_PATHS as a route."""
    return Route(Service.OPENAPI, path)


class _Endpoint:
    """A route whose path differs between versions only by the version: read on a dialect
    (`dialect.jobs`), the route of that dialect's version."""

    def __init__(self, service: Service, rest: str) -> None:
        self.service = service
        self.rest = rest

    def __get__(self, dialect: ApiDialect, owner: type[ApiDialect]) -> Route:
        return Route.of(self.service, dialect.version, self.rest)


@dataclass(frozen=True)
class ApiDialect:
    """What one REST API version needs: paths, value shapes and known quirks, as data."""

    version: str
    #: {set, infinite, number} structs instead of plain integers in requests (v0.0.39 on).
    numbers_as_structs: bool
    #: `nodes` as a range string ("2-4") instead of a [min, max] list (v0.0.39 on).
    nodes_as_range_string: bool
    #: environment as ["K=V", ...] instead of {"K": "V"} (v0.0.39 on).
    environment_as_list: bool
    #: the batch script inside `job` rather than at the top level (v0.0.40 on; top level deprecated in 41).
    script_in_job: bool
    #: Slurm 22.05's slurmdb (v0.0.38) reports exit code 0 for jobs that exited non-zero.
    accounting_exit_code_reliable: bool
    #: /slurmdb/vX/jobs takes `users=` (v0.0.40 on; v0.0.38 answers "Unknown Query field").
    accounting_filters_by_user: bool
    #: a cancel that did nothing says so: an HTTP error (v0.0.38) or per-job `status` (v0.0.42 on);
    #: v0.0.40 and v0.0.41 answer 200 and nothing else (measured on 24.11).
    cancel_reports_failures: bool
    #: accounting's start_time/end_time query parameters take Unix seconds only as `uts<seconds>`
    #: (v0.0.38: plain seconds are HTTP 500 "Unable to parse time format", measured on 22.05; v0.0.40
    #: on take both).
    accounting_time_needs_uts: bool
    #: GET /slurm/vX/jobs/state?job_id=..&job_id=.. answers the state of just those jobs (v0.0.42 on).
    controller_states_by_id: bool
    #: /slurmdb/vX/jobs takes several ids as repeated `step=` and refuses a comma list with 422 (v0.0.40
    #: on); v0.0.38 takes `step=1,2,3` and reads only the last of repeated ones (measured on 22.05-26.05).
    accounting_ids_repeated: bool

    @property
    def key(self) -> tuple[int, ...]:
        """The version as a sortable tuple."""
        return version_key(self.version)

    #: POST: submit a batch job.
    submit = _Endpoint(Service.SLURM, "job/submit")
    #: GET: every job slurmctld holds.
    jobs = _Endpoint(Service.SLURM, "jobs")
    #: GET: slurmctld's state of the jobs named by `job_id` parameters (only on `controller_states_by_id`).
    job_states = _Endpoint(Service.SLURM, "jobs/state")
    #: GET: accounting's records matching query parameters.
    accounting_jobs = _Endpoint(Service.SLURMDB, "jobs")
    #: GET: slurmctld's statistics (checks the token, unlike ping).
    diag = _Endpoint(Service.SLURM, "diag")
    #: GET: slurmctld's ping (checks no token).
    ping = _Endpoint(Service.SLURM, "ping")

    def job(self, job_id: int) -> Route:
        """GET: slurmctld's records of a job (an array's tasks too); DELETE: cancel it."""
        return Route.of(Service.SLURM, self.version, f"job/{job_id}")

    def accounting_job(self, job_id: int) -> Route:
        """GET: accounting's records of a job."""
        return Route.of(Service.SLURMDB, self.version, f"job/{job_id}")

    def accounting_search(self, job_name: str, user: str) -> dict[str, str]:
        """Query parameters of /slurmdb/vX/jobs for one job name (and user, where the version can)."""
        params = {"job_name": job_name}
        if self.accounting_filters_by_user:
            params["users"] = user
        return params

    def accounting_time(self, seconds: float) -> str:
        """A moment as accounting's start_time/end_time query parameters take it."""
        return f"uts{int(seconds)}" if self.accounting_time_needs_uts else str(int(seconds))

    def job_state_queries(self, job_ids: Iterable[int]) -> list[dict[str, list[str]]]:
        """Query parameters of jobs/state for `job_ids`: one `job_id` per id (an array's id lists its
        tasks), cut so each URL stays under proxies' 8 KB line."""
        return [{"job_id": chunk} for chunk in _repeated(job_ids, "job_id")]

    def job_ids_within(self, job_ids: Sequence[int], requests: int) -> int:
        """How many of `job_ids`, taken in this order, jobs/state answers in `requests` requests (cut
        as `job_state_queries` cuts them: each cut wastes less than one id's length)."""
        budget = requests * (ID_QUERY_CHARS - _id_param_chars("job_id", "9" * 10))  # 32-bit ids: 10 digits
        for taken, job_id in enumerate(job_ids):
            budget -= _id_param_chars("job_id", str(job_id))
            if budget < 0:
                return taken
        return len(job_ids)

    def ended_jobs_query(self, user: str, since: float, until: float) -> dict[str, Any]:
        """Query parameters of /slurmdb/vX/jobs for `user`'s jobs that ended between `since` and `until`.

        With `state=` and both times, accounting selects by end time: measured on 24.11 and 26.05, a
        10 s window around a wave of 2,000 cancels answers exactly those 2,000 (and without `end_time`
        it answers none). The shared poller uses it from v0.0.42 on (`controller_states_by_id`).

        v0.0.38 knows neither `users=` nor a list of states ("Unknown Query field", measured on 22.05):
        there the window is every job the token may read that was active in it (running ones too), and
        the reader keeps the ended ones of its users."""
        if not self.accounting_filters_by_user:
            return {"start_time": self.accounting_time(since), "end_time": self.accounting_time(until)}
        return {
            "users": user,
            "state": sorted(state.value for state in TERMINAL_STATES),
            "start_time": self.accounting_time(since),
            "end_time": self.accounting_time(until),
            "skip_steps": "true",
        }

    def accounting_by_id(self, user: str, job_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Query parameters of /slurmdb/vX/jobs for the records of `job_ids` (`step=`, no time window:
        measured on 22.05, 24.11 and 26.05, an id's records whenever it ran; an array's id gives every
        task), in chunks that keep the URL under proxies' limits. Where accounting filters by user the
        query names the user too: another user's job under a reused id is not even sent.
        """
        # Steps are not needed to judge a job and make up ~40 % of each record (measured on 24.11).
        by_user = {"users": user} if self.accounting_filters_by_user else {}
        if self.accounting_ids_repeated:
            return [{"step": chunk, "skip_steps": "true", **by_user} for chunk in _repeated(job_ids, "step")]
        ids = sorted(set(job_ids))
        return [
            {"step": ",".join(map(str, ids[i : i + LISTING_CHUNK])), "skip_steps": "true", **by_user}
            for i in range(0, len(ids), LISTING_CHUNK)
        ]

    def number(self, value: int) -> int | dict[str, Any]:
        """An integer as this version takes it in requests: plain, or a {set, infinite, number} struct."""
        return {"set": True, "infinite": False, "number": value} if self.numbers_as_structs else value

    def environment(self, env: Mapping[str, str]) -> dict[str, str] | list[str]:
        """The job environment as this version takes it: a dict, or a list of NAME=value."""
        return [f"{k}={v}" for k, v in env.items()] if self.environment_as_list else dict(env)

    def node_range(self, low: int, high: int) -> str | list[int]:
        """A node count range as this version takes it: "2-4" (or "2"), or [min, max] on v0.0.38."""
        if self.nodes_as_range_string:
            return f"{low}-{high}" if high != low else str(low)
        return [low, high]


def _repeated(job_ids: Iterable[int], key: str) -> list[list[str]]:
    """Distinct ids in ascending order, cut into lists that make at most ID_QUERY_CHARS of `key=id&` each."""
    chunks: list[list[str]] = []
    chars = ID_QUERY_CHARS
    for job_id in sorted(set(job_ids)):
        text = str(job_id)
        if chars + _id_param_chars(key, text) > ID_QUERY_CHARS:
            chunks.append([])
            chars = 0
        chunks[-1].append(text)
        chars += _id_param_chars(key, text)
    return chunks


def _id_param_chars(key: str, job_id: str) -> int:
    """What one id adds to a query: `key=id&`."""
    return len(key) + len(job_id) + 2


def version_key(version: str) -> tuple[int, ...]:
    """'v0.0.42' -> (0, 0, 42)."""
    return tuple(int(part) for part in version.lstrip("v").split("."))


def _dialect(minor: int) -> ApiDialect:
    return ApiDialect(
        version=f"v0.0.{minor}",
        numbers_as_structs=minor >= 39,
        nodes_as_range_string=minor >= 39,
        environment_as_list=minor >= 39,
        script_in_job=minor >= 40,
        accounting_exit_code_reliable=minor >= 39,
        accounting_filters_by_user=minor >= 40,
        cancel_reports_failures=minor == 38 or minor >= 42,
        accounting_time_needs_uts=minor == 38,
        controller_states_by_id=minor >= 42,
        accounting_ids_repeated=minor >= 40,
    )


#: The versions this provider speaks, oldest first. v0.0.39 (Slurm 23.02 only) is left out on purpose.
DIALECTS: dict[str, ApiDialect] = {d.version: d for d in map(_dialect, (38, 40, 41, 42, 43, 44, 45))}
SUPPORTED_VERSIONS: tuple[str, ...] = tuple(DIALECTS)


def served_versions(openapi: Mapping[str, Any]) -> set[str]:
    """The versions a server offers for both /slurm and /slurmdb, read from its `/openapi/v3` document."""
    slurm: set[str] = set()
    slurmdb: set[str] = set()
    paths = openapi.get("paths")
    for path in paths if isinstance(paths, Mapping) else ():
        match = _VERSION_PATH.match(path) if isinstance(path, str) else None
        if match:
            (slurmdb if match.group(1) else slurm).add(match.group(2))
    return slurm & slurmdb if slurmdb else slurm


def negotiate(served: Iterable[str], requested: str = "auto") -> ApiDialect:
    """The newest version both sides speak, or the one asked for if the server has it."""
    offered = set(served)
    if requested != "auto":
        if requested not in DIALECTS:
            raise MaxwellConfigError(
                f"api_version {requested!r} is not one this provider speaks; use 'auto' or one of "
                f"{', '.join(SUPPORTED_VERSIONS)}"
            )
        return DIALECTS[requested]
    common = sorted((v for v in offered if v in DIALECTS), key=version_key)
    newer = sorted((v for v in offered if version_key(v) > version_key(SUPPORTED_VERSIONS[-1])), key=version_key)
    if not common and newer and len(newer) == len(offered):
        from airflow_provider_maxwell import __version__

        raise MaxwellConfigError(
            f"the server serves only Slurm REST API versions newer than this provider knows: {', '.join(newer)}; "
            f"airflow-provider-maxwell {__version__} speaks {SUPPORTED_VERSIONS[0]} to {SUPPORTED_VERSIONS[-1]}. "
            f"Upgrade to a release of airflow-provider-maxwell newer than {__version__} that speaks {newer[-1]} "
            "(pip install -U airflow-provider-maxwell; its CHANGELOG lists the versions each release speaks)"
        )
    if not common:
        raise MaxwellConfigError(
            f"the server offers Slurm REST API versions {sorted(offered, key=version_key) or 'none'} and this "
            f"provider speaks {', '.join(SUPPORTED_VERSIONS)}: no common version. Upgrade airflow-provider-maxwell "
            "or set api_version in the connection's extra"
        )
    return DIALECTS[common[-1]]
