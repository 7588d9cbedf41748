"""The Slurm operations as protocol steps: submit, read, list, search and cancel jobs.

Each method returns a generator of effects (effects.py); `SlurmClient.run` or `arun` (drivers.py)
carries it out. Version differences are asked of the dialect (slurm/dialects.py), answers are read by
slurm/answers.py and slurm/job.py: this module only strings the calls together.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from airflow_provider_maxwell.auth.tokens import MintedToken
from airflow_provider_maxwell.client import discovery
from airflow_provider_maxwell.client.exchange import RetryPolicy, exchange
from airflow_provider_maxwell.client.lost_answers import find_marked, submission_mark
from airflow_provider_maxwell.client.state import ConnectionState
from airflow_provider_maxwell.effects import GetToken, Note, Protocol
from airflow_provider_maxwell.exceptions import (
    MaxwellAuthError,
    SlurmAccountingUnavailable,
    SlurmApiError,
    SlurmJobNotFound,
    SlurmTransientError,
)
from airflow_provider_maxwell.slurm import answers
from airflow_provider_maxwell.slurm.answers import Answer
from airflow_provider_maxwell.slurm.dialects import ApiDialect, Route
from airflow_provider_maxwell.slurm.job import (
    MAX_JOB_ID,
    JobStatus,
    SlurmJob,
    parse_accounting_jobs,
    parse_controller_jobs,
    parse_job_statuses,
)
from airflow_provider_maxwell.slurm.states import ended_or_ending
from airflow_provider_maxwell.slurm.submit import build_submit_body, default_working_directory

BLOCKED_BY_PROXY = (403, 404, 405, 501)  # a proxy's answers to a path it does not pass on
NOT_IMPLEMENTED = 501
SUBMIT_TIMEOUT = 120.0  # seconds at least for a submission's answer (slurmrestd may wait out a rate limit)


class SlurmOperations:
    """Slurm's operations for one connection state, as protocol steps (no I/O)."""

    def __init__(self, state: ConnectionState, policy: RetryPolicy) -> None:
        self.state = state
        self.policy = policy

    def _call(self, method: str, route: Route, **options: Any) -> Protocol[Answer]:
        """exchange() on this connection: `options` are its keyword arguments (params, body, resend_safe)."""
        return exchange(self.state, self.policy, method, route, **options)

    def url(self, route: Route) -> str:
        """The full URL of a route on this connection's server."""
        return f"{self.state.config.host}{route.path}"

    @staticmethod
    def token() -> Protocol[MintedToken]:
        """The connection's current token (minted or renewed by the driver as needed)."""
        token: MintedToken = yield GetToken()
        return token

    def dialect(self) -> Protocol[ApiDialect]:
        """The REST API version spoken with the server (negotiated once per process and connection)."""
        return discovery.dialect(self.state, self.policy)

    def submit(self, script: str, fields: Mapping[str, Any]) -> Protocol[int]:
        """Submit a batch job; returns its id. Exactly one job per call: when the answer is lost, the job
        is looked for by the mark it carries before the submission is sent again.

        All of it, from the first sending, ends within the connection's `submit_timeout` S: each
        sending, each look for a lost answer's job and each pause is cut to what is left of it, and a
        request runs at most 1.1 x its timeout + 0.5 s (`whole_request_seconds`). So a submission
        gives up after at most 1.1 x S + 1.5 s (`drivers.submit_bound`)."""
        dialect = yield from self.dialect()
        mark = submission_mark()
        marked = {**fields, "comment": f"{fields['comment']} {mark}" if fields.get("comment") else mark}
        default_cwd = default_working_directory(self.state.config.login)
        body = build_submit_body(dialect, script, marked, default_cwd=default_cwd)
        config = self.state.config
        deadline = time.time() + config.submit_timeout
        # slurmrestd holds a submission while slurmctld tells it to back off: leave it room to answer.
        timeout = max(config.timeout, SUBMIT_TIMEOUT)
        for sending in range(1, self.policy.limit + 1):
            sent_at = time.time()
            try:
                answer = yield from self._call(
                    "POST", dialect.submit, body=body, resend_safe=False, timeout=timeout, deadline=deadline
                )
            except SlurmTransientError as lost:
                if lost.never_sent:
                    raise  # nothing reached slurmrestd, after the retries such a failure allows
                found = yield from find_marked(self, mark, fields.get("name"), sent_at, deadline)
                if found is not None:
                    yield Note(f"The answer to submission {mark} was lost ({lost}); its job {found} was found")
                    return found
                if sending == self.policy.limit or time.time() >= deadline:
                    raise SlurmTransientError(
                        f"{lost}; no job of submission {mark} was found after {sending} sending(s) within the "
                        f"submission's {config.submit_timeout:.0f} s (extra.submit_timeout). The job may still "
                        "appear: look for it by name before submitting again",
                        status=lost.status,
                        url=lost.url,
                    ) from None
                yield Note(f"The answer to submission {mark} was lost ({lost}) and no job carries it: sending it again")
                continue
            return self._submitted_job_id(answer, dialect.submit)
        raise AssertionError("unreachable: the loop returns or raises")

    def _submitted_job_id(self, answer: Answer, route: Route) -> int:
        """The job id a submission's answer gives, or the error it holds."""
        job_id = (answer.document or {}).get("job_id")
        if answers.is_error(answer) and not (answers.only_held(answer) and is_job_id(job_id)):
            too_large = (
                " (the request is larger than the server or a proxy in front of it accepts: make the script "
                "smaller, e.g. pass large data through files on the shared file system)"
                if answer.status == 413
                else ""
            )
            raise SlurmApiError(
                f"Slurm refused the job{too_large}", status=answer.status, url=self.url(route), errors=answer.errors
            )
        if not is_job_id(job_id):
            raise SlurmApiError(
                f"Slurm answered the submission without a job id ({job_id!r}); the job may exist: look for it by "
                "name before submitting again",
                status=answer.status,
                url=self.url(route),
            )
        return job_id

    def controller_jobs(self, job_id: int, deadline: float | None = None) -> Protocol[list[SlurmJob] | None]:
        """All records slurmctld has under `job_id` (an array's tasks too); None once it forgot the job."""
        dialect = yield from self.dialect()
        route = dialect.job(job_id)
        answer = yield from self._call("GET", route, deadline=deadline)
        if answers.is_unknown_job(answer):
            return None
        if answers.is_error(answer):
            raise SlurmApiError(
                f"Could not read Slurm job {job_id}", status=answer.status, url=self.url(route), errors=answer.errors
            )
        return parse_controller_jobs(job_documents(answer))

    def controller_listing(self) -> Protocol[list[SlurmJob]]:
        """Every job slurmctld holds (all users): large on a busy cluster, so used only where nothing
        narrower exists."""
        dialect = yield from self.dialect()
        answer = yield from self._call("GET", dialect.jobs)
        if answers.is_error(answer):
            raise SlurmApiError(
                "Could not list Slurm jobs", status=answer.status, url=self.url(dialect.jobs), errors=answer.errors
            )
        return parse_controller_jobs(job_documents(answer))

    def accounting_query(
        self,
        route: Route,
        what: str,
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        deadline: float | None = None,
    ) -> Protocol[list[SlurmJob]]:
        """GET an accounting route and parse its jobs; 7000 after a renewal means slurmdbd is down."""
        dialect = yield from self.dialect()
        answer = yield from self._call("GET", route, params=params, deadline=deadline)
        if answer.has_code(answers.ACCOUNTING_CONNECT_ERROR):
            raise SlurmAccountingUnavailable(
                "Slurm accounting (slurmdbd) is unavailable",
                status=answer.status,
                url=self.url(route),
                errors=answer.errors,
            )
        if answers.is_error(answer) and not (missing_ok and answer.status == 404 and answer.is_slurm):
            raise SlurmApiError(what, status=answer.status, url=self.url(route), errors=answer.errors)
        reliable = dialect.accounting_exit_code_reliable
        return parse_accounting_jobs(job_documents(answer), exit_code_reliable=reliable)

    def accounting_jobs(self, job_id: int) -> Protocol[list[SlurmJob]]:
        """Every accounting record under `job_id`; [] while accounting has none (yet)."""
        dialect = yield from self.dialect()
        what = f"Could not read accounting for Slurm job {job_id}"
        return (yield from self.accounting_query(dialect.accounting_job(job_id), what, missing_ok=True))

    def accounting_by_id(self, job_ids: list[int]) -> Protocol[list[SlurmJob]]:
        """Accounting records of the given jobs (an array's id: every task), whenever they ran, in as few
        requests as the URL length allows: the answer grows with these jobs, not with the user's history."""
        dialect = yield from self.dialect()
        records: list[SlurmJob] = []
        for params in dialect.accounting_by_id(self.state.config.login, job_ids):
            what = f"Could not read accounting records of {len(job_ids)} jobs"
            records += yield from self.accounting_query(dialect.accounting_jobs, what, params)
        return records

    def accounting_ended(self, since: float, until: float, users: Sequence[str] = ()) -> Protocol[list[SlurmJob]]:
        """Accounting records of the user's jobs (or `users`' jobs) that ended between `since` and `until`
        (epoch seconds): the answer grows with the jobs that ended in the window, not with the history."""
        dialect = yield from self.dialect()
        params = dialect.ended_jobs_query(",".join(users) or self.state.config.login, since, until)
        what = "Could not read the Slurm jobs that ended lately"
        return (yield from self.accounting_query(dialect.accounting_jobs, what, params))

    def job_statuses(self, job_ids: list[int]) -> Protocol[list[JobStatus] | None]:
        """slurmctld's state of the given jobs (~230 bytes each; ids it does not hold are left out), or
        None where it cannot say: a release without jobs/state (before v0.0.42), or a proxy that blocks
        the path (HTTP 403/404/405/501 not from Slurm). An array's id lists every task."""
        dialect = yield from self.dialect()
        if not dialect.controller_states_by_id:
            return None
        route = dialect.job_states
        statuses: list[JobStatus] = []
        for params in dialect.job_state_queries(job_ids):
            try:
                answer = yield from self._call("GET", route, params=params)
            except MaxwellAuthError:
                # A proxy refusing this one path looks like a refused token; if the token is the
                # problem, the accounting request that follows says so.
                return None
            except SlurmTransientError as error:
                if error.status == NOT_IMPLEMENTED:  # retried as a server fault first, then given up
                    return None
                raise
            if answers.is_unknown_job(answer):
                continue  # none of these ids is known to slurmctld
            if answer.status in BLOCKED_BY_PROXY and not answer.is_slurm:
                return None
            if answers.is_error(answer):
                raise SlurmApiError(
                    f"Could not read the state of {len(job_ids)} Slurm jobs",
                    status=answer.status,
                    url=self.url(route),
                    errors=answer.errors,
                )
            statuses += parse_job_statuses(job_documents(answer))
        return statuses

    def accounting_job(self, job_id: int) -> Protocol[SlurmJob | None]:
        """The newest accounting record under `job_id` (None while there is none yet)."""
        records = yield from self.accounting_jobs(job_id)
        return newest_record(records, job_id)

    def job(self, job_id: int) -> Protocol[SlurmJob]:
        """slurmctld's record while it knows the job, else the newest accounting record; SlurmJobNotFound if neither."""
        live = yield from self.controller_jobs(job_id)
        job = newest_record(live or [], job_id)
        if job is not None:
            return job
        # slurmctld forgot the job (MinJobAge passed): its final record lives in accounting.
        final = yield from self.accounting_job(job_id)
        if final is None:
            dialect = yield from self.dialect()
            raise SlurmJobNotFound(job_id, status=None, url=self.url(dialect.job(job_id)))
        return final

    def find_jobs_by_name(self, name: str, since: float | None = None) -> Protocol[list[SlurmJob]]:
        """This user's jobs named `name` (submitted or active after `since`, if given), oldest first.

        Asked of accounting by name and user, so the answer grows with this user's jobs of that name,
        not with the cluster's queue. Accounting stores a job's comment only when the job ends, and
        its state with a lag: jobs it shows as live are read from slurmctld by id. Held jobs, never
        eligible, are not in accounting and so not found. Only while accounting is down is
        slurmctld's whole listing searched instead.
        """
        dialect = yield from self.dialect()
        login = self.state.config.login
        params = dialect.accounting_search(name, login)
        if since is not None:
            params["start_time"] = dialect.accounting_time(since)
        try:
            in_accounting = yield from self.accounting_query(
                dialect.accounting_jobs, f"Could not search accounting for jobs named {name!r}", params=params
            )
        except SlurmAccountingUnavailable as down:
            yield Note(f"{down}: searching slurmctld's listing of all jobs for {name!r} instead")
            listed = yield from self.controller_listing()
            return sorted((j for j in listed if j.name == name and j.user == login), key=lambda j: j.submitted)
        # One entry per job: an id alone is not one after a state reset, when accounting holds
        # several jobs under it (oldest first), often of the same name.
        found: dict[tuple[int, float], SlurmJob] = {}
        for record in in_accounting:
            if record.name != name or record.user != login:
                continue
            current = None if record.is_terminal else (yield from self.controller_jobs(record.job_id))
            live = newest_record(current or [], record.job_id)
            found[(record.job_id, record.submitted)] = live if live is not None else record
        return sorted(found.values(), key=lambda j: j.submitted)

    def cancel(self, job_id: int, signal: str | int | None = None) -> Protocol[None]:
        """Cancel (or signal) a job, or raise: SlurmJobNotFound for an id slurmctld does not know,
        SlurmApiError when Slurm did not act (another user's job). A job that already ended is no error."""
        dialect = yield from self.dialect()
        route = dialect.job(job_id)
        params = {"signal": str(signal)} if signal is not None else None
        answer = yield from self._call("DELETE", route, params=params)
        failures = answers.signal_failures(answer)  # a 200 may carry "nothing done" per job
        if answers.is_unknown_job(answer) or any(f.code == answers.INVALID_JOB_ID for f in failures):
            raise SlurmJobNotFound(
                job_id, status=answer.status, url=self.url(route), errors=[*answer.errors, *failures]
            )
        if answers.is_error(answer) or failures:
            raise SlurmApiError(
                f"Slurm did not cancel job {job_id}",
                status=answer.status,
                url=self.url(route),
                errors=[*answer.errors, *failures],
            )
        if signal is None and not dialect.cancel_reports_failures:
            yield from self._confirm_cancelled(job_id, route)

    def _confirm_cancelled(self, job_id: int, route: Route) -> Protocol[None]:
        """Where the answer cannot say a cancel did nothing, slurmctld's record of the job does."""
        live = yield from self.controller_jobs(job_id)
        if live is None:
            raise SlurmJobNotFound(job_id, status=None, url=self.url(route))
        job = newest_record(live, job_id)
        if job is not None and not ended_or_ending(job):
            owner = f" (a job of user {job.user!r})" if job.user and job.user != self.state.config.login else ""
            raise SlurmApiError(
                f"Slurm did not cancel job {job_id}{owner}: it is still {job.state_text}",
                status=None,
                url=self.url(route),
            )

    def diag(self) -> Protocol[ApiDialect]:
        """slurmctld's diagnostics: the cheapest call that checks the token (ping and openapi do not)."""
        dialect = yield from self.dialect()
        answer = yield from self._call("GET", dialect.diag)
        if answers.is_error(answer):
            raise SlurmApiError(
                "Slurm refused the diagnostic call",
                status=answer.status,
                url=self.url(dialect.diag),
                errors=answer.errors,
            )
        return dialect


def is_job_id(value: object) -> TypeGuard[int]:
    """A Slurm job id: a whole number from 1 to 2**32 - 1 (not a bool, which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_JOB_ID


def job_documents(answer: Answer) -> list[Mapping[str, Any]]:
    """The job objects of an answer's `jobs` list (anything else in it is skipped)."""
    jobs = (answer.document or {}).get("jobs")
    return [j for j in jobs if isinstance(j, Mapping)] if isinstance(jobs, list) else []


def newest_record(records: list[SlurmJob], job_id: int) -> SlurmJob | None:
    """The record for `job_id` itself; with several (job ids reused after a reset), the newest."""
    exact = [r for r in records if r.job_id == job_id] or records
    if not exact:
        return None
    return max(exact, key=lambda r: r.submitted)
