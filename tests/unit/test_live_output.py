"""Following a running job's output file with real files: partial lines, truncation, replacement, limits."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell.effects import Note, Sleep
from airflow_provider_maxwell.live_output import (
    CUT_MARK,
    OutputAccess,
    OutputFollower,
    OutputRefused,
    before_each_sleep,
    follower_from_kwargs,
    job_owner_uid,
    output_access,
    path_refusal,
    tail,
    tail_text,
)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def mine(folder: Path) -> OutputAccess:
    """The rule for a job of this process's own user whose output may be any file directly in `folder`."""
    return OutputAccess(os.getuid(), (f"{folder}/%x",))


def test_complete_lines_appear_and_a_partial_line_waits_for_its_end(tmp_path: Path):
    out = tmp_path / "slurm-7.out"
    follower = OutputFollower(str(out), mine(tmp_path))
    assert follower.read() == []  # not there yet (the job is pending): nothing, no error
    append(out, b"step 1 done\nstep 2 ha")
    assert follower.read() == ["step 1 done"]
    assert follower.read() == []
    append(out, b"lf done\r\nstep 3")
    assert follower.read() == ["step 2 half done"]
    append(out, "\u00fc\n".encode()[:1])  # half of a two-byte character: still the same line
    assert follower.read() == []
    append(out, "\u00fc\n".encode()[1:])
    assert follower.read() == ["step 3\u00fc"]


def test_a_truncated_file_is_followed_from_its_start_and_said_so(tmp_path: Path):
    out = tmp_path / "job.out"
    out.write_bytes(b"a long first run of output\n")
    follower = OutputFollower(str(out), mine(tmp_path))
    assert follower.read() == ["a long first run of output"]
    out.write_bytes(b"again\n")  # truncated and rewritten (a requeued job)
    assert follower.read() == ["[the output file was truncated or replaced: following it from its start]", "again"]
    replacement = tmp_path / "new.out"
    replacement.write_bytes(b"again\nand more than before, replaced\n")
    os.replace(replacement, out)  # a new file under the same name
    assert follower.read() == [
        "[the output file was truncated or replaced: following it from its start]",
        "again",
        "and more than before, replaced",
    ]


def test_lines_per_read_keep_the_newest_and_count_the_skipped(tmp_path: Path):
    out = tmp_path / "job.out"
    out.write_bytes(b"".join(b"line %d\n" % i for i in range(50)))
    follower = OutputFollower(str(out), mine(tmp_path), lines_per_read=3)
    assert follower.read() == ["[47 lines skipped: at most 3 per poll]", "line 47", "line 48", "line 49"]


def test_long_lines_are_cut_and_an_endless_line_does_not_grow_memory(tmp_path: Path):
    out = tmp_path / "job.out"
    follower = OutputFollower(str(out), mine(tmp_path), max_line_chars=10)
    out.write_bytes(b"x" * 25 + b"\nshort\n")
    assert follower.read() == ["xxxxxxxxxx [...cut]", "short"]
    append(out, b"\r" * 30 + b"progress 100%")  # a progress bar: no newline for a long time
    lines = follower.read()
    assert lines and lines[0].endswith("[...cut]")
    append(out, b" more of the same line\nnext\n")
    assert follower.read() == ["next"]  # the rest of the cut line is dropped, not shown as a line


def test_a_flood_is_skipped_to_its_newest_bytes(tmp_path: Path):
    out = tmp_path / "job.out"
    follower = OutputFollower(str(out), mine(tmp_path), max_read_bytes=100)
    out.write_bytes(b"".join(b"flood %04d\n" % i for i in range(1000)))  # 11 bytes a line
    lines = follower.read()
    assert lines[0] == "[10900 bytes of output skipped: at most 100 per poll]"
    assert lines[1:] == [f"flood {i:04d}" for i in range(991, 1000)]  # the cut line before is dropped


def test_the_total_is_bounded_and_the_end_said(tmp_path: Path):
    out = tmp_path / "job.out"
    follower = OutputFollower(str(out), mine(tmp_path), lines_per_read=10, max_total_lines=12)
    out.write_bytes(b"".join(b"%d\n" % i for i in range(10)))
    assert len(follower.read()) == 10
    append(out, b"10\n11\n12\n")
    assert follower.read() == ["10", "11", "[live output stops after 12 lines; the end-of-job tail follows]"]
    append(out, b"13\n")
    assert follower.stopped and follower.read() == []


def test_control_characters_cannot_forge_log_lines(tmp_path: Path):
    out = tmp_path / "job.out"
    out.write_bytes(b"ok\x1b[31m red\x00 \xff\n")
    assert OutputFollower(str(out), mine(tmp_path)).read() == ["ok?[31m red? \ufffd"]


def test_a_fifo_or_a_directory_in_the_files_place_is_not_read(tmp_path: Path):
    fifo = tmp_path / "job.out"
    os.mkfifo(fifo)
    refused = ["[the output file is not copied here: it is not a regular file]"]
    assert OutputFollower(str(fifo), mine(tmp_path)).read() == refused  # a blocking open would hang forever
    folder = tmp_path / "job.err"
    folder.mkdir()
    follower = OutputFollower(str(folder), mine(tmp_path))
    assert follower.read() == refused
    assert follower.stopped and follower.read() == []  # said once


def test_off_with_zero_lines_and_handed_on_through_plain_kwargs(tmp_path: Path):
    out = tmp_path / "job.out"
    out.write_bytes(b"one\ntwo\n")
    assert OutputFollower(str(out), mine(tmp_path), lines_per_read=0).read() == []
    worker = OutputFollower(str(out), mine(tmp_path))
    assert worker.read() == ["one", "two"]
    append(out, b"three\n")
    handed = follower_from_kwargs(worker.to_kwargs())  # the trigger goes on where the worker left off
    assert handed is not None and handed.read() == ["three"]
    assert follower_from_kwargs(None) is None and follower_from_kwargs({"nonsense": 1}) is None
    without_rule = {k: v for k, v in worker.to_kwargs().items() if k != "access"}  # an older release's kwargs
    assert follower_from_kwargs(without_rule) is None  # nothing read without the rule of which file may be


def test_the_owner_is_the_connections_login_as_this_host_names_it(attacker):
    assert job_owner_uid(attacker.name, None) == attacker.uid
    assert job_owner_uid(attacker.name, attacker.uid) == attacker.uid
    assert job_owner_uid(attacker.name, 0) is None  # the record contradicts the login: whose is the job?
    # A login this host does not know: the record's uid, unless the host names that uid otherwise.
    assert job_owner_uid("no-such-user-here", 47123) == 47123
    assert job_owner_uid("no-such-user-here", 0) is None  # root's: a record saying so proves nothing
    assert job_owner_uid("no-such-user-here", attacker.uid) is None
    assert job_owner_uid("no-such-user-here", None) is None
    refusal = path_refusal("/home/x/slurm-1.out", OutputAccess(None, ("/home/x/slurm-%j.out",)))
    assert refusal is not None and "not known on this host" in refusal


def test_readable_paths_are_output_paths_the_task_set_or_slurms_default_names_in_its_folder():
    script = (
        "#!/bin/bash\n#SBATCH --output=/scratch/%u/run-%j.log\n#SBATCH -e 'errors/%j.err'\necho #SBATCH -o /etc/x\n"
    )
    access = output_access("root", None, "/work/run/", ["logs/%x-%5j.out", "/data/err/%u_%A_%a.err"], script)
    assert access.patterns == (
        "/work/run/logs/%x-%5j.out",
        "/data/err/%u_%A_%a.err",
        "/scratch/%u/run-%j.log",  # from the script's own #SBATCH lines
        "/work/run/errors/%j.err",
        "/work/run/slurm-%j.out",  # Slurm's own names, where the task set none
        "/work/run/slurm-%A_%a.out",
    )
    for readable in (
        "/work/run/slurm-41.out",
        "/work/run/slurm-41_3.out",
        "/data/err/root_41_3.err",
        "/scratch/root/run-41.log",
        "/work/run/errors/41.err",
    ):
        assert path_refusal(readable, access) is None, readable
    for outside in (
        "/work/run/deep/er/out",  # a file of the job's user under its folder, but no output's name
        "/work/run/airflow.cfg",
        "/work/run/../../etc/shadow",  # not under it once normalized
        "/work/running/slurm-1.out",  # a sibling with the same start
        "/data/err/root_41_3.err.bak",  # not the whole pattern
        "/data/err/x/y_1_2.err",  # a pattern stands for characters within one path component
        "/data/err/../err2/root_1_2.err",
        "relative/slurm-1.out",
        "/etc/shadow",
        "/etc/x",  # an #SBATCH not at a line's start is no directive
    ):
        refusal = path_refusal(outside, access)
        assert refusal is not None and ("no output path" in refusal or "absolute" in refusal), outside


def test_a_file_moved_into_the_outputs_place_keeps_its_age_and_is_refused(tmp_path: Path):
    out = tmp_path / "slurm-1.out"
    out.write_text("db password hunter2\n")  # the job user's own private file, from long ago
    os.utime(out, (time.time() - 3600, time.time() - 3600))
    submitted = time.time() - 60
    access = output_access(pwd.getpwuid(os.getuid()).pw_name, None, str(tmp_path), submitted_at=submitted)
    with pytest.raises(OutputRefused, match="last written before the job was submitted"):
        tail(str(out), 3, access)
    os.utime(out)  # written now, by the job
    assert tail(str(out), 3, access) == ["db password hunter2"]


def test_the_tail_reads_a_bounded_end_and_shows_lines_as_live_output_does(tmp_path: Path):
    out = tmp_path / "slurm-2.out"
    out.write_bytes(b"\r".join(b"progress %d%%" % i for i in range(200_000)) + b"\nend\x1b[31m\n")
    started = time.monotonic()
    lines = tail(str(out), 2, mine(tmp_path))
    assert time.monotonic() - started < 2  # the last 256 KiB only, not the whole 2.7 MB redrawn line
    assert lines[-1] == "end?[31m" and lines[0].endswith(CUT_MARK) and len(lines) == 2


def test_the_tail_reads_only_what_the_rule_allows(tmp_path: Path):
    out = tmp_path / "slurm-1.out"
    out.write_bytes(b"".join(b"line %d\n" % i for i in range(5000)))
    assert tail(str(out), 3, mine(tmp_path)) == ["line 4997", "line 4998", "line 4999"]
    (tmp_path / "link.out").symlink_to(out)
    with pytest.raises(OutputRefused, match="symbolic link"):
        tail(str(tmp_path / "link.out"), 3, mine(tmp_path))
    with pytest.raises(OutputRefused, match="belongs to uid"):
        tail(str(out), 3, OutputAccess(os.getuid() + 1, (f"{tmp_path}/%x",)))
    with pytest.raises(FileNotFoundError):  # not there (yet): not a refusal
        tail(str(tmp_path / "none.out"), 3, mine(tmp_path))


def test_the_action_runs_before_each_pause_and_the_protocol_is_unchanged():
    seen: list[str] = []

    def protocol():
        yield Note("polled")
        yield Sleep(30)
        yield Note("polled again")
        yield Sleep(30)
        return "done"

    wrapped = before_each_sleep(protocol(), lambda: seen.append("read"))
    effects = []
    try:
        effect = next(wrapped)
        while True:
            effects.append(effect)
            seen.append(type(effect).__name__)
            effect = wrapped.send(None)
    except StopIteration as stop:
        assert stop.value == "done"
    assert seen == ["Note", "read", "Sleep", "Note", "read", "Sleep"]
    assert effects == [Note("polled"), Sleep(30), Note("polled again"), Sleep(30)]


def test_the_trigger_logs_new_lines_while_the_job_runs(fake, tmp_path: Path, capsys):
    import asyncio

    from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
    from airflow_provider_maxwell.watch import WatchSpec
    from tests.fake_slurm import META

    out = tmp_path / "slurm-7.out"
    out.write_bytes(b"started\n")

    def listing(state: str) -> tuple[int, dict[str, str], dict]:
        times = {"submission": 1_700_000_000, "start": 1_700_000_001, "end": 1_700_000_009}
        doc = {"job_id": 7, "name": "live", "user": "alice", "state": {"current": [state]}, "time": times}
        return (200, {}, {**META, "jobs": [{**doc, "exit_code": {"return_code": 0}}]})

    fake.script["/slurmdb/v0.0.44/jobs"] = [listing("RUNNING")]
    spec = WatchSpec(job_id=7, user="alice", submitted_after=1_700_000_000, poll_interval=0.2)
    trigger = MaxwellJobTrigger(
        maxwell_conn_id=fake.conn_id,
        spec=spec.to_kwargs(),
        live_output=OutputFollower(str(out), mine(tmp_path)).to_kwargs(),
    )
    assert trigger.serialize()[1]["live_output"]["path"] == str(out)  # plain values in the kwargs

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    async def main() -> tuple[str, dict]:
        waiting = asyncio.create_task(first_event())
        await asyncio.sleep(0.6)
        append(out, b"half way\n")
        await asyncio.sleep(0.6)
        assert not waiting.done()
        while_running = capsys.readouterr().out
        fake.script["/slurmdb/v0.0.44/jobs"] = [listing("COMPLETED")]
        return while_running, await waiting

    while_running, event = asyncio.run(main())
    assert event["status"] == "success"
    assert "Slurm job 7 | started" in while_running and "Slurm job 7 | half way" in while_running
    assert while_running.count("| started") == 1  # each line once


@pytest.mark.parametrize("live_output_lines", [20, 0])
def test_the_operators_blocking_wait_logs_new_lines_while_the_job_runs(
    fake, tmp_path: Path, capsys, live_output_lines: int, attacker, monkeypatch: pytest.MonkeyPatch
):
    import threading
    import time
    from types import SimpleNamespace

    from airflow_provider_maxwell.operators.job import MaxwellSubmitJobOperator
    from tests.fake_slurm import META, connection_as

    user = attacker.name  # the job's user: the output file must be theirs (test_output_file_access.py)
    out = tmp_path / "slurm-41.out"
    out.write_bytes(b"")
    os.chown(out, attacker.uid, attacker.gid)
    live = {"job_id": 41, "user_name": user, "name": "d.t", "partition": "p", "standard_output": str(out)}
    fake.script["/slurm/v0.0.44/job/submit"] = [(200, {}, {**META, "job_id": 41})]
    fake.script["/slurm/v0.0.44/job/41"] = [(200, {}, {**META, "jobs": [{**live, "job_state": ["RUNNING"]}]})]
    pushed: dict[str, object] = {}
    ti = SimpleNamespace(
        dag_id="d",
        task_id="t",
        run_id="r",
        map_index=-1,
        try_number=1,
        xcom_push=lambda key, value: pushed.update({key: value}),
    )
    task = MaxwellSubmitJobOperator(
        task_id="t",
        script="#!/bin/bash\ntrue\n",
        maxwell_conn_id=connection_as(fake, user, monkeypatch),
        current_working_directory=str(tmp_path),
        poll_interval=0.2,
        deferrable=False,
        live_output_lines=live_output_lines,
    )
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(task.execute({"ti": ti})))
    worker.start()
    try:
        time.sleep(0.5)
        append(out, b"half way\n")
        time.sleep(0.6)
        assert worker.is_alive()
        while_running = capsys.readouterr().out
    finally:
        times = {"submission": int(time.time()), "start": int(time.time()), "end": int(time.time()) + 1}
        final = {"job_id": 41, "name": "d.t", "user": user, "state": {"current": ["COMPLETED"]}, "time": times}
        final["stdout_expanded"] = str(out)
        fake.script["/slurm/v0.0.44/job/41"] = [(200, {}, {**META, "jobs": [{**live, "job_state": ["COMPLETED"]}]})]
        fake.script["/slurmdb/v0.0.44/job/41"] = [
            (200, {}, {**META, "jobs": [{**final, "exit_code": {"return_code": 0}}]})
        ]
        worker.join(timeout=30)
    assert result == [41]
    assert ("Slurm job 41 | half way" in while_running) is (live_output_lines > 0)  # 0: off
    assert "Last 1 line of" in capsys.readouterr().out  # the end-of-job tail stays


@pytest.mark.parametrize("timeout", [None, 3600.0])
def test_the_trigger_reads_the_output_every_interval_while_the_poller_has_no_news(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, timeout: float | None
):
    # The poller sends news only when the job's state changes (jobs/state, v0.0.42 on): a job printing
    # while it stays RUNNING sends none, and its lines must still reach the log within an interval, also
    # when the wait has a timeout an hour away.
    import asyncio
    import time
    from contextlib import asynccontextmanager
    from types import SimpleNamespace

    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
    from airflow_provider_maxwell.triggers.job import MaxwellJobTrigger
    from airflow_provider_maxwell.triggers.poller import JobPoller
    from airflow_provider_maxwell.watch import WatchSpec

    class QuietPoller:
        @asynccontextmanager
        async def subscribe(self, job_watch: object) -> Any:
            yield asyncio.Queue()  # no observation, ever

    async def client(self: object) -> Any:
        return SimpleNamespace(state=SimpleNamespace(config=SimpleNamespace(host="https://rest.example")))

    monkeypatch.setattr(JobPoller, "for_client", classmethod(lambda cls, client: QuietPoller()))
    monkeypatch.setattr(MaxwellHook, "aclient", client)  # the trigger's client comes from its hook
    out = tmp_path / "slurm-7.out"
    out.write_bytes(b"")
    deadline = time.time() + timeout if timeout else None
    spec = WatchSpec(job_id=7, user="alice", submitted_after=1_700_000_000, poll_interval=0.2, deadline=deadline)
    trigger = MaxwellJobTrigger(
        maxwell_conn_id="c", spec=spec.to_kwargs(), live_output=OutputFollower(str(out), mine(tmp_path)).to_kwargs()
    )

    async def main() -> str:
        waiting = asyncio.create_task(anext(aiter(trigger.run())))
        await asyncio.sleep(0.3)
        append(out, b"half way\n")
        await asyncio.sleep(0.6)
        logged = capsys.readouterr().out
        assert not waiting.done()
        waiting.cancel()
        return logged

    assert "Slurm job 7 | half way" in asyncio.run(main())


def test_a_job_without_visible_output_adds_no_heading_and_blank_line_to_the_task_log(tmp_path: Path):
    out = tmp_path / "slurm-3.out"
    for empty in (b"", b"\n", b"\r\n\n", b"  \n\t\n"):
        out.write_bytes(empty)
        assert tail_text(str(out), 20, mine(tmp_path)) == ""
    out.write_bytes(b"result 42\n\n")
    assert tail_text(str(out), 20, mine(tmp_path)) == f"Last 1 line of {out}:\nresult 42"
    out.write_bytes(b"a\n\nb\n")  # blank lines among others are left out, as live output leaves them
    assert tail_text(str(out), 20, mine(tmp_path)) == f"Last 2 lines of {out}:\na\nb"
