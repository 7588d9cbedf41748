"""Record the unit tests' data from the local Maxwell into tests/data/ (`make record`, about 1.5 to 2.5 minutes).

    .venv/bin/python devcluster/record.py [--out DIR]

For every Slurm release of the running local Maxwell (`devcluster/cluster.py up`) and every API
version it serves (`api_versions` in .devcluster/cluster.json), this stores what slurmrestd
answered, unchanged:

    slurm-<release>/openapi-v3.json.gz        GET /openapi/v3: the server's own OpenAPI document
    slurm-<release>/<version>/<service>_job_<case>.json
                                              GET /<service>/<version>/job/{id}, service slurm or slurmdb

Cases (one job of each kind per release, submitted together, read through every version):

    exit0_ended, exit3_ended     `exit 0` / `exit 3`, after it ended
    cancelled_ended              cancelled (DELETE) while running, after it ended
    timeout_ended                time limit 1 minute, script sleeps longer (~90 s)
    sleep_running                a running job
    held_pending                 a job submitted held (pending until released; cancelled at the end)
    exit0_purged                 slurm only: the exit-0 job after slurmctld forgot it (MinJobAge)
    lag                          slurmdb only: a job read right after its submission, before
                                 accounting knew it (only where that moment was caught)
    unknown_id                   a job id that never existed
    expired_token, wrong_key_token   the exit-0 job, with an expired token / one signed with another key

Each file is {"request": "GET <path>", "status": <HTTP status>, "body": <JSON document, or the text>};
nothing in a body is changed. `recorded.json` says when, from which daemons, as which user, which
job ids, and what could not be recorded. Jobs are cancelled at the end, also on failure. The old
tests/data is replaced only when the whole run succeeded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import gzip
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from airflow_provider_maxwell.slurm.states import TERMINAL_STATES

PROJECT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("MAXWELL_DEV_STATE", PROJECT / ".devcluster"))
DEFAULT_OUT = PROJECT / "tests" / "data"
TIMEOUT = 30  # seconds per request
DEADLINE = 300  # seconds for all jobs of a release to reach every recorded moment
POLL = 1.0
SCRIPTS = {
    "exit0": '#!/bin/bash\necho "recorded by devcluster/record.py"\nsleep 1\n',
    "exit3": "#!/bin/bash\necho failing\nexit 3\n",
    "cancelled": "#!/bin/bash\nsleep 600\n",
    "timeout": "#!/bin/bash\nsleep 600\n",
    "sleep": "#!/bin/bash\nsleep 600\n",
    "held": "#!/bin/bash\nsleep 600\n",
}
ENDED = {"exit0", "exit3", "cancelled", "timeout"}
# Base states after which a job no longer changes: the provider's own list.
TERMINAL = {state.value for state in TERMINAL_STATES}
_print_lock = threading.Lock()


def log(stack: str, message: str) -> None:
    with _print_lock:
        print(f"record {stack}: {message}", flush=True)


def states(value: Any) -> list[str]:
    """A job state as a list of names, whichever way the version writes it."""
    if isinstance(value, dict):  # accounting: {"current": ["COMPLETED"]} or {"current": "COMPLETED"}
        value = value.get("current")
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


@dataclass
class Answer:
    """One HTTP answer as stored: request line, status and body (parsed JSON, else text)."""

    request: str
    status: int
    body: Any

    @property
    def jobs(self) -> list[dict[str, Any]]:
        jobs = self.body.get("jobs") if isinstance(self.body, dict) else None
        return jobs if isinstance(jobs, list) else []

    @property
    def error_numbers(self) -> set[int]:
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return {e.get("error_number") for e in errors or [] if isinstance(e, dict)}

    def stored(self) -> dict[str, Any]:
        return {"request": self.request, "status": self.status, "body": self.body}


def session() -> requests.Session:
    """HTTP with retries of reads and cancels (slurmrestd may drop a kept-alive connection); a submit is sent once."""
    retry = Retry(
        total=3, backoff_factor=0.5, allowed_methods={"GET", "DELETE"}, status_forcelist=(), raise_on_status=False
    )
    http = requests.Session()
    http.mount("http://", HTTPAdapter(max_retries=retry))
    http.mount("https://", HTTPAdapter(max_retries=retry))
    return http


@dataclass
class Release:
    """One stack of the local Maxwell and what has been recorded from it so far."""

    name: str
    rest_url: str
    versions: list[str]
    user: str
    key: bytes
    jobs_dir: str
    session: requests.Session = field(default_factory=session)
    release: str = ""
    jobs: dict[str, int] = field(default_factory=dict)
    files: dict[str, Answer | bytes] = field(default_factory=dict)  # relative path -> content
    missing: list[str] = field(default_factory=list)

    @property
    def newest(self) -> str:
        return self.versions[-1]

    def token(self, *, expired: bool = False, key: bytes | None = None) -> str:
        now = int(time.time())
        iat, exp = (now - 3600, now - 600) if expired else (now, now + 1800)
        claims = {"sun": self.user, "iat": iat, "exp": exp}
        return jwt.encode(claims, key or self.key, algorithm="HS256")

    def send(self, method: str, path: str, body: Any = None, token: str | None = None) -> Answer:
        headers = {"X-SLURM-USER-NAME": self.user, "X-SLURM-USER-TOKEN": token or self.token()}
        response = self.session.request(method, self.rest_url + path, json=body, headers=headers, timeout=TIMEOUT)
        try:
            parsed: Any = response.json()
        except ValueError:
            parsed = response.text
        return Answer(f"{method} {path}", response.status_code, parsed)

    def job_path(self, service: str, version: str, job_id: int) -> str:
        return f"/{service}/{version}/job/{job_id}"

    def get_job(self, service: str, version: str, job_id: int, token: str | None = None) -> Answer:
        return self.send("GET", self.job_path(service, version, job_id), token=token)

    def keep(self, version: str, service: str, case: str, answer: Answer) -> None:
        self.files[f"slurm-{self.release}/{version}/{service}_job_{case}.json"] = answer

    def submit(self, kind: str) -> int:
        version = self.newest
        job: dict[str, Any] = {
            "name": f"record-{kind}",
            "partition": "maxcpu",
            "current_working_directory": self.jobs_dir,
            "standard_output": f"{self.jobs_dir}/%x-%j.out",
        }
        if kind == "held":
            job["hold"] = True
        minutes = 1 if kind == "timeout" else 15
        path = f"/slurm/{version}/job/submit"
        if version == "v0.0.38":
            job.update(environment={"PATH": "/usr/bin:/bin"}, time_limit=minutes)
            body = {"script": SCRIPTS[kind], "job": job}
        else:
            job.update(
                script=SCRIPTS[kind],
                environment=["PATH=/usr/bin:/bin"],
                time_limit={"set": True, "infinite": False, "number": minutes},
            )
            body = {"job": job}
        answer = self.send("POST", path, body)
        job_id = answer.body.get("job_id") if isinstance(answer.body, dict) else None
        if answer.status != 200 or not isinstance(job_id, int) or job_id <= 0:
            raise RuntimeError(f"{self.name}: submitting {kind} failed: HTTP {answer.status} {str(answer.body)[:300]}")
        return job_id

    def cancel(self, job_id: int) -> None:
        try:
            self.send("DELETE", f"/slurm/{self.newest}/job/{job_id}")
        except requests.RequestException as failure:
            log(self.name, f"could not cancel job {job_id}: {failure}")


def ctld_state(answer: Answer) -> list[str] | None:
    """slurmctld's state of the job, or None when it does not know the job (purged, unknown)."""
    if answer.status == 200 and answer.jobs:
        return states(answer.jobs[0].get("job_state"))
    return None


def ended(state: list[str] | None) -> bool:
    """A final state, with no COMPLETING flag left (the job record no longer changes)."""
    return bool(state and state[0] in TERMINAL and "COMPLETING" not in state)


def db_record(answer: Answer) -> dict[str, Any] | None:
    return answer.jobs[0] if answer.status == 200 and answer.jobs else None


def db_ended(record: dict[str, Any] | None) -> bool:
    if record is None or not ended(states(record.get("state"))):
        return False
    end = (record.get("time") or {}).get("end")
    return isinstance(end, int) and end > 0


def all_versions(rel: Release, service: str, job_id: int, check) -> list[Answer] | None:
    """The job read through every version; None unless every answer passes `check` (then retried)."""
    answers = [rel.get_job(service, v, job_id) for v in rel.versions]
    return answers if all(check(a) for a in answers) else None


def record_release(rel: Release) -> None:
    """Everything one release answers, in one pass of at most DEADLINE seconds."""
    ping = rel.send("GET", f"/slurm/{rel.newest}/ping")
    meta = ping.body.get("meta", {}) if isinstance(ping.body, dict) else {}
    rel.release = (meta.get("slurm") or meta.get("Slurm") or {}).get("release", "")
    if ping.status != 200 or not rel.release:
        raise RuntimeError(f"{rel.name}: ping failed or named no release: HTTP {ping.status} {str(ping.body)[:300]}")
    log(rel.name, f"Slurm {rel.release}, API versions {', '.join(rel.versions)}")

    lag: dict[str, Answer] = {}  # version -> accounting's answer on a job it did not know yet
    for kind in SCRIPTS:
        job_id = rel.submit(kind)
        rel.jobs[kind] = job_id
        for version in rel.versions:  # accounting may not know the job yet: read it at once
            if version not in lag:
                answer = rel.get_job("slurmdb", version, job_id)
                if db_record(answer) is None:
                    lag[version] = answer
    log(rel.name, "submitted " + ", ".join(f"{k} {v}" for k, v in rel.jobs.items()))
    for version, answer in lag.items():
        rel.keep(version, "slurmdb", "lag", answer)
    if len(lag) < len(rel.versions):
        rel.missing.append(
            "slurmdb lag: accounting already knew every job when read right after its submission "
            f"(caught on: {', '.join(lag) or 'no version'})"
        )

    headers = {"X-SLURM-USER-NAME": rel.user, "X-SLURM-USER-TOKEN": rel.token()}
    raw = rel.session.get(rel.rest_url + "/openapi/v3", headers=headers, timeout=TIMEOUT)
    raw.raise_for_status()
    json.loads(raw.content)  # a document, not an error page
    rel.files[f"slurm-{rel.release}/openapi-v3.json.gz"] = gzip.compress(raw.content, mtime=0)

    unknown = max(rel.jobs.values()) + 1_000_000
    other_key = secrets.token_bytes(32)
    for version in rel.versions:
        for service in ("slurm", "slurmdb"):
            rel.keep(version, service, "unknown_id", rel.get_job(service, version, unknown))
            expired = rel.get_job(service, version, rel.jobs["exit0"], token=rel.token(expired=True))
            rel.keep(version, service, "expired_token", expired)
            wrong = rel.get_job(service, version, rel.jobs["exit0"], token=rel.token(key=other_key))
            rel.keep(version, service, "wrong_key_token", wrong)

    # (service, case) still to be caught; each is read through every version at the same moment
    todo = {("slurm", f"{k}_ended") for k in ENDED} | {("slurmdb", f"{k}_ended") for k in ENDED}
    todo |= {("slurm", "sleep_running"), ("slurmdb", "sleep_running"), ("slurm", "held_pending")}
    todo |= {("slurmdb", "held_pending"), ("slurm", "exit0_purged")}
    cancel_sent = False
    deadline = time.monotonic() + DEADLINE
    while todo and time.monotonic() < deadline:
        for service, case in sorted(todo):
            kind, moment = case.split("_", 1)
            job_id = rel.jobs[kind]
            if service == "slurm":
                if moment == "purged":
                    if ("slurm", "exit0_ended") in todo:
                        continue
                    found = all_versions(rel, service, job_id, lambda a: ctld_state(a) is None)
                else:
                    want = {
                        "ended": ended,
                        "running": lambda s: s == ["RUNNING"],
                        "pending": lambda s: bool(s) and s[0] == "PENDING",
                    }[moment]
                    if kind == "cancelled" and not cancel_sent:
                        if ctld_state(rel.get_job("slurm", rel.newest, job_id)) == ["RUNNING"]:
                            rel.cancel(job_id)
                            cancel_sent = True
                        continue
                    found = all_versions(rel, service, job_id, lambda a, want=want: want(ctld_state(a)))
            else:
                want_db = {
                    "ended": db_ended,
                    "running": lambda r: r is not None and states(r.get("state"))[:1] == ["RUNNING"],
                    "pending": lambda r: r is not None and states(r.get("state"))[:1] == ["PENDING"],
                }[moment]
                found = all_versions(rel, service, job_id, lambda a, want=want_db: want(db_record(a)))
            if found is not None:
                for version, answer in zip(rel.versions, found, strict=True):
                    rel.keep(version, service, case, answer)
                todo.discard((service, case))
                log(rel.name, f"{service} {case} (job {job_id})")
        time.sleep(POLL)
    if todo:
        raise RuntimeError(f"{rel.name}: not reached within {DEADLINE} s: {sorted(todo)}")


def write(out: Path, releases: list[Release], started: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".record-", dir=out.parent))
    try:
        for rel in releases:
            for relative, content in sorted(rel.files.items()):
                path = tmp / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(json.dumps(content.stored(), indent=1, ensure_ascii=False) + "\n")
        manifest = {
            "recorded_by": "devcluster/record.py (make record)",
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started),
            "user": releases[0].user,
            "releases": {
                rel.release: {
                    "stack": rel.name,
                    "rest_url": rel.rest_url,
                    "api_versions": rel.versions,
                    "submitted_through": rel.newest,
                    "jobs": rel.jobs,
                    "not_recorded": rel.missing,
                }
                for rel in releases
            },
        }
        (tmp / "recorded.json").write_text(json.dumps(manifest, indent=1) + "\n")
        old = out.with_name(out.name + ".old")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (replaced as a whole)")
    args = parser.parse_args()
    info_path = STATE / "cluster.json"
    if not info_path.exists():
        print(f"record: {info_path} not found: bring the local Maxwell up first (make cluster-up)", file=sys.stderr)
        return 2
    info = json.loads(info_path.read_text())
    if info.get("unavailable"):
        print(f"record: every release is needed, unavailable: {info['unavailable']}", file=sys.stderr)
        return 2
    user = json.loads(Path(info["users_file"]).read_text())[0]["name"]
    key = Path(info["jwt_key_file"]).read_bytes()
    releases = [
        Release(name, stack["rest_url"], list(stack["api_versions"]), user, key, info["jobs_dir"])
        for name, stack in sorted(info["stacks"].items())
    ]
    started = time.monotonic()
    failed = False
    try:
        with concurrent.futures.ThreadPoolExecutor(len(releases)) as pool:
            futures = {pool.submit(record_release, rel): rel for rel in releases}
            for future in concurrent.futures.as_completed(futures):
                try:
                    future.result()
                except Exception as failure:
                    failed = True
                    log(futures[future].name, f"FAILED: {failure}")
    finally:
        for rel in releases:
            for job_id in rel.jobs.values():
                rel.cancel(job_id)
            for job_id in rel.jobs.values():
                for output in Path(rel.jobs_dir).glob(f"record-*-{job_id}.out"):
                    output.unlink(missing_ok=True)
    if not failed and not any(f.endswith("_job_lag.json") for rel in releases for f in rel.files):
        failed = True  # tests/unit/slurm/test_job_model.py needs at least one (22.05 shows it every time so far)
        print("record: accounting lag was caught on no release: run again", file=sys.stderr)
    if failed:
        print(f"record: failed; {args.out} left as it was", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, releases, started)
    for rel in releases:
        for note in rel.missing:
            print(f"record {rel.name}: not recorded: {note}")
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"record: wrote {args.out} ({size / 1e6:.2f} MB) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
