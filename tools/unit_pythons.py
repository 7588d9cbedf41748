"""The unit tests on every CPython Debian's archives offer besides the host's (`make unit-pythons`).

The host (Debian 12) has only Python 3.11. Newer CPythons come from Debian roots built once with
mmdebstrap and cached under .cache/python-roots/ (trixie: 3.13; sid: whatever python3.X-venv it
offers). In each root, one venv per Python holds Airflow and the project's dependencies (the project
installed from a copy, for its entry point; the tests import the mounted tree); it is rebuilt only
when pyproject.toml or the Airflow version changes. `--rebuild` builds the roots anew. The tests
run inside the root through chroot, in fresh mount and PID namespaces (unshare): the project and
../shared are bind-mounted read only there, and the mounts and every process of the run end with the
namespace, so nothing is left mounted or running even when a run fails or is interrupted. The one
process started here (unshare) is stopped by its PID.

    python3 tools/unit_pythons.py                 # every Python, printing a summary line for each
    python3 tools/unit_pythons.py --suites trixie # only the trixie root
    python3 tools/unit_pythons.py -- -x -k token  # extra pytest arguments
    python3 tools/unit_pythons.py --rebuild       # fresh roots (sid moves on; a cached root does not)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"  # the recorded answers and OpenAPI documents the unit tests read
CACHE = Path(os.environ.get("MAXWELL_DEV_CACHE", PROJECT / ".cache")).resolve() / "python-roots"
MIRROR = "http://deb.debian.org/debian"
SUITES = ("trixie", "sid")
AIRFLOW_VERSION = os.environ.get("AIRFLOW_VERSION", "3.3.2")
# Inside the root: where the project and shared/ appear (siblings, as on the host: tests find
# ../shared) and where the venvs live (outside the project, so the host's tree stays untouched).
INNER_PROJECT = "/src/project"
INNER_SHARED = "/src/shared"
UNIT_MARKERS = "not cluster and not package"
# The host's CA bundle (pip on this machine is pointed at it by PIP_CERT) is copied into the root.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
INNER_CA_BUNDLE = "/etc/ssl/certs/host-ca-bundle.crt"
# What pip needs to build the project (pyproject.toml, the package, the files it names).
BUILD_SOURCES = (
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "SECURITY.md",
    "LICENSE",
    "MANIFEST.in",
    "airflow_provider_maxwell",
)


@dataclass
class Result:
    """One Python's run: what it was and how its tests ended."""

    suite: str
    python: str  # e.g. "3.13"
    full_version: str = "?"
    airflow: str = "?"
    summary: str = ""
    counts: dict[str, int] | None = None
    seconds_root: float = 0.0  # building the Debian root (0 when cached)
    seconds_setup: float = 0.0  # making the venv (0 when cached)
    seconds_tests: float = 0.0
    returncode: int | None = None
    unsupported: bool = False  # Airflow does not install on this Python
    note: str = ""


def log(message: str) -> None:
    print(f"unit-pythons: {message}", flush=True)


def isolated(argv: list[str]) -> list[str]:
    """argv in its own mount and PID namespaces: whatever it mounts (mmdebstrap mounts /proc, /dev
    in the root it builds) or starts goes with it, even when it is killed before its own clean-up."""
    return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--", *argv]


def run_host(argv: list[str], log_file: Path | None = None) -> None:
    """A command on the host; its output goes to log_file (shown on failure) or through."""
    if log_file is None:
        subprocess.run(isolated(argv), check=True)
        return
    with log_file.open("ab") as out:
        proc = subprocess.run(isolated(argv), stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"unit-pythons: {argv[0]} failed ({proc.returncode}), see {log_file}:\n" + "\n".join(tail))


def root_dir(suite: str) -> Path:
    return CACHE / suite


def build_root(suite: str) -> Path:
    """Builds (once) a minimal root of `suite` with every python3.X-venv it offers; cached by a stamp."""
    root = root_dir(suite)
    stamp = root / ".maxwell-python-root-ready"
    if stamp.is_file():
        return root
    partial = root.with_name(suite + ".partial")
    log_file = root.with_name(suite + ".log")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")
    log(f"making a {suite} root in {root} (a minute or two)")
    run_host(
        [
            "mmdebstrap", "--mode=root", "--variant=apt", "--format=directory",
            "--aptopt=Acquire::Check-Valid-Until \"false\"",
            "--include=python3,python3-venv,ca-certificates",
            suite, str(partial),
            f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} {suite} main",
        ],
        log_file,
    )  # fmt: skip
    # Every other CPython the suite offers (sid may carry the next one beside its default).
    listed = subprocess.run(
        isolated(["chroot", str(partial), "apt-cache", "search", "--names-only", r"^python3\.[0-9]+-venv$"]),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    venv_packages = sorted(line.split()[0] for line in listed.splitlines() if line.strip())
    if venv_packages:
        install = ["chroot", str(partial), "apt-get", "install", "-y", "-q", "--no-install-recommends", *venv_packages]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with log_file.open("ab") as out:
            proc = subprocess.run(
                isolated(install),
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"unit-pythons: installing {venv_packages} in the {suite} root failed, see {log_file}")
    # Apt's lists and caches are never used again: a third of the root.
    for junk in ("var/lib/apt/lists", "var/cache/apt"):
        for entry in (partial / junk).glob("*"):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    partial.rename(root)
    stamp.write_text(" ".join(pythons_in(root)) + "\n")
    log(f"{suite} root ready: Python {stamp.read_text().strip()}")
    return root


def pythons_in(root: Path) -> list[str]:
    """The CPython versions (X.Y) in a root that can make venvs (ensurepip present)."""
    found = []
    for lib in sorted((root / "usr/lib").glob("python3.*")):
        version = lib.name.removeprefix("python")
        interpreter = root / f"usr/bin/python{version}"
        if re.fullmatch(r"3\.\d+", version) and interpreter.exists() and (lib / "ensurepip").is_dir():
            found.append(version)
    return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


def in_root(root: Path, script: str, env: dict[str, str], log_file: Path | None = None):
    """Runs `sh -c script` chrooted in `root`, in its own mount and PID namespaces.

    The project and shared/ are bind-mounted read only, /proc and /dev are mounted, and all of it
    lives in the new mount namespace: when the run ends (or is killed), the namespace goes and the
    mounts with it; the PID namespace takes every process the run started. Returns the completed
    process (output captured when no log_file).
    """
    inner = root / INNER_PROJECT.lstrip("/")
    inner_shared = root / INNER_SHARED.lstrip("/")
    inner.mkdir(parents=True, exist_ok=True)
    inner_shared.mkdir(parents=True, exist_ok=True)
    mounts = [
        f"mount --bind {PROJECT} {inner}",
        f"mount -o remount,bind,ro {inner}",
        f"mount -t proc proc {root}/proc",
        f"mount --rbind /dev {root}/dev",
    ]
    if SHARED.is_dir():
        mounts += [f"mount --bind {SHARED} {inner_shared}", f"mount -o remount,bind,ro {inner_shared}"]
    setup = " && ".join(mounts)
    outer = f'set -e; {setup}; exec chroot {root} /bin/sh -c "$INNER_SCRIPT"'
    argv = isolated(["/bin/sh", "-c", outer])
    clean_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                 "LANG": "C.UTF-8", "INNER_SCRIPT": script, **env}  # fmt: skip
    out = log_file.open("ab") if log_file else subprocess.PIPE
    proc = subprocess.Popen(argv, env=clean_env, stdout=out, stderr=subprocess.STDOUT, text=log_file is None)
    try:
        stdout, _ = proc.communicate()
    except BaseException:
        # unshare ignores SIGTERM while it waits; killed, it takes the namespace's init with it
        # (--kill-child), and with that every process and mount of the run.
        proc.kill()
        proc.wait()
        raise
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
    return subprocess.CompletedProcess(argv, proc.returncode, stdout or "")


def install_fingerprint() -> str:
    """What the venv is made from: reinstalled when this changes."""
    digest = hashlib.sha256((PROJECT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return f"pyproject={digest} airflow={AIRFLOW_VERSION}"


def pip_env() -> dict[str, str]:
    env = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": os.environ.get("PIP_DEFAULT_TIMEOUT", "180")}
    if HOST_CA_BUNDLE.is_file():
        env["PIP_CERT"] = INNER_CA_BUNDLE
    return env


def ensure_venv(root: Path, result: Result) -> bool:
    """The venv for one Python, (re)installed when pyproject.toml or the Airflow version changed."""
    venv = f"/opt/venv-{result.python}"
    stamp = root / venv.lstrip("/") / ".maxwell-installed"
    want = install_fingerprint()
    if stamp.is_file() and stamp.read_text().strip() == want:
        return True
    if HOST_CA_BUNDLE.is_file():
        shutil.copyfile(HOST_CA_BUNDLE, root / INNER_CA_BUNDLE.lstrip("/"))
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    log_file = CACHE / f"{result.suite}-{result.python}-install.log"
    log_file.write_text("")
    log(
        f"Python {result.python} ({result.suite}): installing the project and Airflow {AIRFLOW_VERSION}, log {log_file}"
    )
    # pip builds a local project in its own directory: it builds from a copy, never the mounted tree.
    # The tests import the mounted tree (PYTHONPATH), the installed copy gives the dependencies and
    # the provider's entry point.
    build = "/tmp/project-build"
    sources = " ".join(f"{INNER_PROJECT}/{name}" for name in BUILD_SOURCES)
    script = (
        f"set -e; rm -rf {venv} {build}; mkdir {build}; cp -r {sources} {build}/; "
        f"python{result.python} -m venv {venv}; "
        f"{venv}/bin/pip install -q --upgrade pip; "
        f"{venv}/bin/pip install -q '{build}[dev]' 'apache-airflow=={AIRFLOW_VERSION}'; rm -rf {build}"
    )
    proc = in_root(root, script, pip_env(), log_file=log_file)
    if proc.returncode != 0:
        text = log_file.read_text(errors="replace")
        if "requires a different Python" in text or "Requires-Python" in text:
            # A Python newer than any Airflow release takes (3.3.x: >=3.10, !=3.15): said, not failed.
            result.unsupported = True
            result.note = (
                f"Airflow {AIRFLOW_VERSION} does not install on Python {result.python}: not tested ({log_file})"
            )
            return False
        tail = "\n".join(text.splitlines()[-15:])
        result.note = f"install failed (see {log_file}):\n{tail}"
        return False
    stamp.write_text(want + "\n")
    return True


SUMMARY_LINE = re.compile(r"^=+ (?P<body>.*\b(passed|failed|error|errors|skipped|no tests ran)\b.*) in [\d.]+s.* =+$")


def parse_counts(output: str) -> tuple[str, dict[str, int]]:
    """pytest's closing line ("== 3 failed, 900 passed, 2 skipped in 80.1s ==") and its counts."""
    for line in reversed(output.splitlines()):
        match = SUMMARY_LINE.match(line.strip())
        if match:
            body = match.group("body")
            counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", body)}
            return line.strip("= ").strip(), counts
    return "", {}


def run_tests(root: Path, result: Result, pytest_args: list[str]) -> None:
    venv = f"/opt/venv-{result.python}"
    log_file = CACHE / f"{result.suite}-{result.python}-tests.log"
    log_file.write_text("")
    env = {
        "PYTHONPATH": INNER_PROJECT,  # the mounted tree, not the copy installed in the venv
        "PYTHONPYCACHEPREFIX": "/var/cache/pycache",  # the project is read only; bytecode stays in the root
        "HYPOTHESIS_STORAGE_DIRECTORY": "/tmp/hypothesis",
        "AIRFLOW_HOME": "/tmp/airflow-home",
    }
    probe = in_root(
        root,
        f"{venv}/bin/python -c 'import sys, importlib.metadata as m, airflow_provider_maxwell as p; "
        f'print(sys.version.split()[0], m.version("apache-airflow"), p.__file__)\'',
        env,
    )
    if probe.returncode != 0 or len(probe.stdout.split()) < 3:
        result.note = f"the venv does not start: {probe.stdout.strip()[-2000:]}"
        return
    result.full_version, result.airflow, package_file = probe.stdout.split()[-3:]
    if not package_file.startswith(INNER_PROJECT + "/"):  # the tests must see the tree as it is now
        result.note = f"the package is imported from {package_file}, not from the project ({INNER_PROJECT})"
        return
    args = " ".join(f"'{a}'" for a in ["-m", UNIT_MARKERS, "-p", "no:cacheprovider", *pytest_args])
    log(f"Python {result.full_version} ({result.suite}), Airflow {result.airflow}: unit tests, log {log_file}")
    began = time.monotonic()
    proc = in_root(root, f"cd {INNER_PROJECT} && exec {venv}/bin/python -m pytest {args}", env, log_file=log_file)
    result.seconds_tests = time.monotonic() - began
    result.returncode = proc.returncode
    result.summary, result.counts = parse_counts(log_file.read_text(errors="replace"))
    if proc.returncode != 0:
        failed = [
            line for line in log_file.read_text(errors="replace").splitlines() if line.startswith(("FAILED", "ERROR"))
        ]
        result.note = "\n".join(failed[:40]) or "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", default=",".join(SUITES), help="Debian suites to take Pythons from")
    parser.add_argument("--rebuild", action="store_true", help="build the roots anew (sid moves on)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    options = parser.parse_args()
    # A stop (make's or CI's SIGTERM) unwinds like Ctrl-C: the running namespace is ended by its PID.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if os.geteuid() != 0:
        raise SystemExit("unit-pythons: needs root (mmdebstrap --mode=root, chroot, mount namespaces)")
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    tested = {host}  # the host's own Python runs the unit tests in `make unit`
    results: list[Result] = []
    for suite in options.suites.split(","):
        if suite not in SUITES:
            raise SystemExit(f"unit-pythons: --suites takes {', '.join(SUITES)}, not {suite!r}")
        if options.rebuild:
            shutil.rmtree(root_dir(suite), ignore_errors=True)
        began = time.monotonic()
        root = build_root(suite)
        root_seconds = time.monotonic() - began
        for python in pythons_in(root):
            if python in tested:
                log(f"{suite}: Python {python} skipped, already tested")
                continue
            tested.add(python)
            result = Result(suite=suite, python=python)
            results.append(result)
            began = time.monotonic()
            installed = ensure_venv(root, result)
            result.seconds_setup = time.monotonic() - began
            result.seconds_root, root_seconds = root_seconds, 0.0
            if installed:
                run_tests(root, result, options.pytest_args)
    print()
    print("unit-pythons: the unit tests per Python")
    for r in results:
        counts = r.counts or {}
        figures = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "skipped"))
        if counts.get("error") or counts.get("errors"):
            figures += f", {counts.get('error', 0) + counts.get('errors', 0)} errors"
        status = "ok" if r.returncode == 0 else "unsupported by Airflow" if r.unsupported else "FAILED"
        print(
            f"  Python {r.full_version} ({r.suite} root), Airflow {r.airflow}: {figures if r.counts else 'not run'}"
            f" [{status}; root {r.seconds_root:.0f} s, venv {r.seconds_setup:.0f} s, tests {r.seconds_tests:.0f} s]"
        )
        if r.note:
            print("    " + r.note.replace("\n", "\n    "))
    return 0 if results and all(r.returncode == 0 or r.unsupported for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
