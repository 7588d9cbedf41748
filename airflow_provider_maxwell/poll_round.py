"""The shared poller's round as a protocol: what one round asks slurmctld and accounting about all the
waits of a connection, and what it learns for each, over explicit state (each wait's turn and last
word, the poller's window of ended jobs). No I/O and no clock: triggers/poller.py runs a round through
the async driver, passes the time, fills the triggers' inboxes and rests between rounds.

A round costs what the waited jobs need, not what the user's history holds (docs/waiting-at-scale.md):

- slurmctld's jobs/state for the waited ids (v0.0.42 on; ~230 bytes per job or task): is anything
  new? Plain ids share `STATE_REQUESTS` request (~375 ids); more plain waits take turns, least
  recently asked first, and their ends come from one accounting window a round (the user's jobs that
  ended since the last window, reaching `ENDS_OVERLAP` back over it). An array is asked on its own
  (its tasks carry ids of their own), at most `ARRAY_STATE_REQUESTS` a round.
- accounting by id (`step=`, no time window, one request for all) only for jobs that ended or are
  ending (an array: once none of its tasks lives), that slurmctld no longer holds (purged, or a
  sensor's old job), a job id given from outside (a sensor's: accounting says whose it is), and each
  job now and then (`REFRESH_AFTER`: a reused id in the same state). A state slurmctld reports changed
  (started, requeued) goes to the wait as its progress, with the job's own slurmctld record read for
  what jobs/state leaves out and a scientist waits on: why it is pending, where it runs (at most
  `DETAIL_READS` a round; a pending job whose reason slurmctld has not set yet is read again).
- one by one, at most `LOOKUPS_PER_ROUND` a round, jobs accounting does not show yet (it lags a
  submission by seconds; held jobs are never in it); on 22.05, whose accounting loses exit codes, each
  ended job is read from slurmctld, at most `EXIT_CODE_LOOKUPS` a round.

Releases without jobs/state (v0.0.38 to v0.0.41), or a proxy that blocks it, ask accounting by id
for every wait each round.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Generic, TypeVar

from airflow_provider_maxwell.client.operations import SlurmOperations
from airflow_provider_maxwell.effects import Protocol
from airflow_provider_maxwell.exceptions import MaxwellError, SlurmAccountingUnavailable, SlurmTransientError
from airflow_provider_maxwell.slurm.job import JobStatus, SlurmJob
from airflow_provider_maxwell.slurm.states import JobState, accounting_due
from airflow_provider_maxwell.watch import JobWatch, Observation, WatchSpec, observe

LOOKUPS_PER_ROUND = 10  # one-by-one lookups of jobs accounting did not show, per round
EXIT_CODE_LOOKUPS = 20  # 22.05: ended jobs read from slurmctld per round (its accounting loses exit codes)
REFRESH_AFTER = 600.0  # seconds (+-50 %, spread): a quiet job is read from accounting at least this often
STATE_REQUESTS = 1  # jobs/state requests for plain waits per round (~375 ids each); more waits take turns
ENDS_OVERLAP = 3.0  # seconds each window of ended jobs reaches back over the last (accounting writes ends late)
ENDS_AHEAD = 60.0  # seconds past our clock a window reaches: Slurm's clock may be ahead of ours
ARRAY_STATE_REQUESTS = 8  # array waits asked of jobs/state per round, a request each; the others read accounting
DETAIL_READS = 10  # plain jobs' own slurmctld records read per round for their progress (pending reason, nodes)
REASON_LOOKS = 2  # reads of a pending job's record in all while slurmctld names no reason for its wait

#: What slurmctld's jobs/state said of one job: its entries in a fixed order (compared round to round).
Said = tuple[JobStatus, ...]


@dataclass(eq=False)
class Wait:
    """One wait the rounds serve: its JobWatch, and what the rounds remember of it between them."""

    watch: JobWatch
    looked_up_at: float = 0.0  # when it was last looked up on its own (accounting did not show it)
    last_said: Said = ()  # what slurmctld's jobs/state said of the job when last asked
    states_asked_at: float = 0.0  # when jobs/state last answered about it (waits taking turns, arrays)
    refresh_at: float = 0.0  # when accounting is asked even if slurmctld says nothing changed (0: first round)
    detail: SlurmJob | None = None  # slurmctld's full record of the job, last read (a plain wait's progress)
    reason_looks: int = 0  # reads of its record that found it pending without a reason

    @property
    def spec(self) -> WatchSpec:
        """What the wait is for (its JobWatch's spec)."""
        return self.watch.spec

    @property
    def is_array(self) -> bool:
        """An array's wait: asked of jobs/state on its own, its end read once none of its tasks lives."""
        return self.spec.expected_tasks > 1


@dataclass
class PollState:
    """What a poller's rounds carry from one to the next, besides each wait's own."""

    statuses_unavailable: bool = False  # no jobs/state (older release, or a proxy blocks it): accounting only
    taking_turns: bool = False  # more plain waits than STATE_REQUESTS can name: they take turns on jobs/state
    ends_asked_at: float | None = None  # when accounting was last asked which jobs ended (taking turns)


W = TypeVar("W", bound=Wait)


class PollRound(Generic[W]):
    """One round over `waits` at clock reading `now` (epoch seconds): `run()` is its protocol.

    What it learns for each wait is kept in `deliveries` as it goes, so that a round failing half way
    still hands over what it learnt before failing (the caller delivers them either way).
    """

    def __init__(self, ops: SlurmOperations, state: PollState, waits: list[W], now: float) -> None:
        self.ops = ops
        self.state = state
        self.waits = waits
        self.now = now
        self.deliveries: list[tuple[W, Observation]] = []

    def run(self) -> Protocol[list[tuple[W, Observation]]]:
        """slurmctld's state of the waited jobs (some of them, when they take turns), the window of ended
        jobs while they do, accounting by id for those that need it, then a few one-by-one lookups of
        jobs accounting did not show. Returns what to deliver to which wait."""
        said = yield from self._controller_states()
        ended = (yield from self._ended_lately()) if self.state.taking_turns else {}
        due, changed = self._settle(said, ended)
        yield from self._read_details(changed)
        unlisted = yield from self._read_accounting(due, said or {})
        yield from self._look_up(unlisted)
        for wait in said or ():
            wait.states_asked_at = self.now  # only now: a round that failed leaves these their turn
        return self.deliveries

    def _deliver(self, wait: W, seen: Observation) -> None:
        self.deliveries.append((wait, seen))

    def _controller_states(self) -> Protocol[dict[W, Said] | None]:
        """What slurmctld's jobs/state says of each waited job it was asked about this round ((): it
        holds none of it), or None where jobs/state is unavailable. Plain ids go in `STATE_REQUESTS`
        requests, the least recently asked first (more waits take turns: `taking_turns`); each array
        on its own, at most `ARRAY_STATE_REQUESTS` a round (the others read accounting): jobs/state
        names a task by its own id, not its array's, so only an array asked alone can be told apart."""
        if self.state.statuses_unavailable:
            return None
        ops = self.ops
        plain = sorted((w for w in self.waits if not w.is_array), key=lambda w: w.states_asked_at)
        arrays = sorted((w for w in self.waits if w.is_array), key=lambda w: w.states_asked_at)
        fits = (yield from ops.dialect()).job_ids_within([w.spec.job_id for w in plain], STATE_REQUESTS)
        said: dict[W, Said] = {}
        if plain:
            statuses = yield from ops.job_statuses([w.spec.job_id for w in plain[:fits]])
            if statuses is None:
                self._give_up_states()
                return None
            by_job = _said_by_job(statuses)
            said.update((w, by_job.get(w.spec.job_id, ())) for w in plain[:fits])
        for wait in arrays[:ARRAY_STATE_REQUESTS]:
            statuses = yield from ops.job_statuses([wait.spec.job_id])
            if statuses is None:
                self._give_up_states()
                return None
            said[wait] = _in_order(statuses)
        self.state.taking_turns = fits < len(plain)
        if not self.state.taking_turns:
            # jobs/state has just named every plain wait: a window opened later need reach back only to here.
            self.state.ends_asked_at = self.now
        return said

    def _give_up_states(self) -> None:
        """jobs/state is unavailable (older release, or a proxy blocks it): accounting by id for every
        wait from now on, no turns, no windows."""
        self.state.statuses_unavailable, self.state.taking_turns = True, False

    def _ended_lately(self) -> Protocol[dict[int, list[SlurmJob]]]:
        """Accounting's records of the user's jobs (not array tasks) that ended since the last window
        (or the last round that named every wait), reaching `ENDS_OVERLAP` back over it: accounting
        writes an end a moment after it happened. While slurmdbd is unavailable, none: the next window
        covers this one's time, and jobs still running are not failed for an outage (a job that ended
        meanwhile is asked of accounting by id, whose error its trigger waits out)."""
        since = (self.state.ends_asked_at if self.state.ends_asked_at is not None else self.now) - ENDS_OVERLAP
        try:
            records = yield from self.ops.accounting_ended(since, self.now + ENDS_AHEAD)
        except SlurmAccountingUnavailable:
            return {}
        self.state.ends_asked_at = self.now
        ended: dict[int, list[SlurmJob]] = {}
        for record in records:
            if record.array_task_id is None:
                ended.setdefault(record.job_id, []).append(record)
        return ended

    def _settle(self, said: dict[W, Said] | None, ended: dict[int, list[SlurmJob]]) -> tuple[list[W], list[W]]:
        """Deliver what slurmctld's word and the window settle on their own (no request); return the
        waits accounting is asked about by id, and the plain waits whose progress is read in full."""
        due: list[W] = []
        changed: list[W] = []
        for wait in self.waits:
            wait.refresh_at = wait.refresh_at or _refresh_time(self.now)
            entries = said.get(wait) if said is not None else None
            seen_ending = [r for r in ended.get(wait.spec.job_id, ()) if wait.spec.belongs(r)]
            if seen_ending and not wait.is_array:  # the window saw it end, its turn or not
                said_now = _as_jobs(wait, entries or ()) or None
                self._deliver(wait, Observation(live=said_now, final=seen_ending))
                wait.refresh_at = _refresh_time(self.now)
            elif entries is None and said is not None and not wait.is_array:
                if not wait.states_asked_at or not accounting_due(wait.last_said, ending_will_do=True):
                    continue  # not its turn on jobs/state this round; its end comes from the window
                due.append(wait)  # ended or gone on its last turn: accounting by id until it answers
            elif entries is None or self._needs_accounting(wait, entries):
                due.append(wait)  # (a sensor's job first seen may be running: its progress is read too)
                if _progress_read_due(wait, entries) and len(changed) < DETAIL_READS:
                    changed.append(wait)
            elif entries != wait.last_said or _reason_unset(wait, entries):  # started, requeued: progress
                if not _progress_read_due(wait, entries) or len(changed) >= DETAIL_READS:  # the state alone
                    self._deliver(wait, Observation(live=_as_jobs(wait, entries)))
                else:
                    changed.append(wait)
            wait.last_said = entries if entries is not None else wait.last_said
        return due, changed

    def _read_details(self, changed: list[W]) -> Protocol[None]:
        """Deliver the progress of plain waits whose state changed (at most `DETAIL_READS` a round; `_settle`
        delivered the others' state alone): slurmctld's own record of each, for why it is pending and
        where it runs (jobs/state names the state only); where the read fails, the state alone (a
        progress line is no reason to fail a round)."""
        for wait in changed:
            try:
                live = yield from self.ops.controller_jobs(wait.spec.job_id)
            except MaxwellError:
                live = None
            ours = [j for j in live or [] if j.job_id == wait.spec.job_id and wait.spec.belongs(j)]
            if ours:
                wait.detail = ours[0]
                wait.reason_looks += ours[0].state is JobState.PENDING and ours[0].reason is None
            self._deliver(wait, Observation(live=ours or _as_jobs(wait, wait.last_said)))

    def _needs_accounting(self, wait: W, said: Said) -> bool:
        """Whether this round asks accounting about the job: not while slurmctld says it still lives (its
        state changes come from slurmctld), unless it is due a refresh."""
        if accounting_due(said, ending_will_do=True):
            # slurmctld holds none of it (purged, or never ours), or all it holds has ended or is ending
            # (an array: the tasks it purged ended before): accounting has, or soon has, the end.
            return True
        if wait.spec.submitted_after is None and not wait.last_said:
            return True  # an id given from outside (a sensor's), first seen: accounting says whose job it is
        return self.now >= wait.refresh_at

    def _read_accounting(self, due: list[W], said: dict[W, Said]) -> Protocol[list[W]]:
        """Accounting by id for the `due` waits, delivered with slurmctld's word; return the waits
        accounting does not show yet."""
        records = (yield from self.ops.accounting_by_id([w.spec.job_id for w in due])) if due else []
        by_job = _by_job(records)
        reliable_exit_codes = (yield from self.ops.dialect()).accounting_exit_code_reliable
        exit_code_reads = 0
        unlisted = []
        for wait in due:
            final = by_job.get(wait.spec.job_id)
            if final is None:
                unlisted.append(wait)  # accounting lags a submission by seconds; held jobs are not in it
                continue
            # slurmctld's current word too: accounting may lag behind it, and progress lines show the newer.
            live = _as_jobs(wait, said.get(wait, ())) or None
            if not reliable_exit_codes and all(j.is_terminal for j in final):
                # 22.05's accounting loses exit codes; slurmctld still has them for MinJobAge (300 s by
                # default): read each ended job there, a bounded number per round, the rest next round.
                if exit_code_reads >= EXIT_CODE_LOOKUPS:
                    continue
                exit_code_reads += 1
                try:
                    live = yield from self.ops.controller_jobs(wait.spec.job_id)
                except SlurmTransientError:
                    continue  # next round
                except Exception:  # the job's end is known; only its exit code stays unknown
                    live = None
            self._deliver(wait, Observation(live=live, final=final))
            wait.refresh_at = _refresh_time(self.now)
        return unlisted

    def _look_up(self, unlisted: list[W]) -> Protocol[None]:
        """One by one, the waits looked up longest ago first, at most `LOOKUPS_PER_ROUND`."""
        for wait in sorted(unlisted, key=lambda w: w.looked_up_at)[:LOOKUPS_PER_ROUND]:
            wait.looked_up_at = self.now
            try:
                seen = yield from observe(self.ops, wait.watch)
            except Exception as error:  # one job's error is that trigger's, not everyone's
                seen = Observation(error=error)
            self._deliver(wait, seen)


def _said_by_job(statuses: list[JobStatus]) -> dict[int, Said]:
    """jobs/state's entries under each job's own id, in a comparable order."""
    said: dict[int, list[JobStatus]] = {}
    for status in statuses:
        said.setdefault(status.job_id, []).append(status)
    return {job_id: _in_order(entries) for job_id, entries in said.items()}


def _in_order(statuses: list[JobStatus]) -> Said:
    """Entries in a fixed order (by task index, then own id), so that rounds compare equal when nothing changed."""
    return tuple(sorted(statuses, key=lambda e: (e.array_task_id or 0, e.job_id)))


def _as_jobs(wait: Wait, said: Said) -> list[SlurmJob]:
    """slurmctld's entries as job records for the wait's progress: an array's under the array's id; a
    plain job's last full record while its state is the same (so its progress keeps reason and nodes)."""
    detail = wait.detail
    if len(said) == 1 and detail is not None and (said[0].state, said[0].flags) == (detail.state, detail.flags):
        return [detail]
    array_job_id = wait.spec.job_id if wait.is_array else None
    return [entry.as_job(array_job_id) for entry in said]


def _progress_read_due(wait: Wait, said: Said | None) -> bool:
    """Whether a plain job's own slurmctld record is read for its progress line: slurmctld says it lives,
    and its state changed (or it is still pending with no reason named yet)."""
    if wait.is_array or not said or accounting_due(said, ending_will_do=True):
        return False
    return said != wait.last_said or _reason_unset(wait, said)


def _reason_unset(wait: Wait, said: Said) -> bool:
    """A plain job slurmctld still says is pending, whose record named no reason when last read (it sets
    one with its first scheduling pass, seconds after the submission): worth reading again, up to
    `REASON_LOOKS` times."""
    detail = wait.detail
    return (
        not wait.is_array
        and wait.reason_looks < REASON_LOOKS
        and detail is not None
        and detail.state is JobState.PENDING
        and detail.reason is None
        and [e.state for e in said] == [JobState.PENDING]
    )


def _refresh_time(now: float) -> float:
    """When a quiet job is next read from accounting: spread, so waits started together do not refresh together."""
    return now + REFRESH_AFTER * random.uniform(0.5, 1.5)


def _by_job(records: list[SlurmJob]) -> dict[int, list[SlurmJob]]:
    """Records under each id a wait may be on: a job's own, and an array's for each of its tasks."""
    by_job: dict[int, list[SlurmJob]] = {}
    for record in records:
        by_job.setdefault(record.job_id, []).append(record)
        if record.array_job_id is not None and record.array_job_id != record.job_id:
            by_job.setdefault(record.array_job_id, []).append(record)
    return by_job
