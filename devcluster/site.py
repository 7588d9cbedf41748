"""The local site: Airflow as a facility runs it, all on 127.0.0.1, beside the local Maxwell.

    python3 devcluster/site.py up [--dags FOLDER] [--venv VENV] [--shared-dir FOLDER]
                                         bring it up (idempotent: what runs stays); --shared-dir: one
                                         folder for all hosts' token and API version files
    python3 devcluster/site.py down      stop every process of it, by PID (and what each started)
    python3 devcluster/site.py pids      one `name pid` line per running process
    python3 devcluster/site.py status    each process, running or stopped

Debian's PostgreSQL is the metadata database, Debian's Redis the Celery broker; the API server,
scheduler and DAG processor run on this machine as they are; the two Celery workers and the two
triggerers each run as a host of their own: a UTS namespace (its own hostname) and a mount
namespace with its own tmpfs on /run/user/<uid> (its XDG_RUNTIME_DIR), and its own HOME, so what
one keeps for "this host" the others do not see. The network stays shared (all on 127.0.0.1), so
each host's log server has a port of its own, and the task logs are written to one folder all
share, as a site's shared file system would hold them.

State lives in .devcluster/site/ (data folders, PIDs, logs, `site.env`); the Maxwell connections
come from the local Maxwell's `connections.env` (`make cluster-up`; never started or stopped here).
Only the API server holds them: the hosts reach connections through its Execution API.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import secrets
import shlex
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import cluster
from processes import Processes

SITE = Path(os.environ.get("MAXWELL_SITE_STATE", cluster.PROJECT / ".devcluster" / "site")).resolve()


def newest_postgres() -> Path:
    found = Path("/usr/lib/postgresql").glob("*/bin")
    return max(found, key=lambda p: int(p.parent.name), default=Path("/nonexistent"))


PG_BIN = newest_postgres()
# Seven ports from here: a second site (the tests' own) runs beside `make site` on another base.
PORT_BASE = int(os.environ.get("MAXWELL_SITE_PORT_BASE", "16910"))
POSTGRES_PORT = PORT_BASE
REDIS_PORT = PORT_BASE + 1
API_PORT = PORT_BASE + 2
WORKER_LOG_PORTS = {"worker-1": PORT_BASE + 3, "worker-2": PORT_BASE + 4}
TRIGGER_LOG_PORTS = {"triggerer-1": PORT_BASE + 5, "triggerer-2": PORT_BASE + 6}
HOSTS = {"worker-1": "site-worker-1", "worker-2": "site-worker-2", "triggerer-1": "site-triggerer-1",
         "triggerer-2": "site-triggerer-2"}  # fmt: skip
ORDER = ("postgres", "redis", "api-server", "scheduler", "dag-processor", "worker-1", "worker-2", "triggerer-1",
         "triggerer-2")  # fmt: skip
WORKER_CONCURRENCY = int(os.environ.get("SITE_WORKER_CONCURRENCY", "16"))

processes = Processes(SITE)


def log(message: str) -> None:
    print(f"site: {message}", flush=True)


def site_secrets() -> dict[str, str]:
    """The site's own secrets, made once (the admin's password, the database's, the keys Airflow's
    components must share to trust each other's tokens and read each other's encrypted fields)."""
    path = SITE / "secrets.json"
    if not path.exists():
        made = {
            "admin_password": secrets.token_urlsafe(12),
            "postgres_password": secrets.token_urlsafe(16),
            "jwt_secret": secrets.token_urlsafe(32),
            "api_secret_key": secrets.token_urlsafe(32),
            "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(made))
    return json.loads(path.read_text())


def maxwell_connections() -> dict[str, str]:
    env = {}
    for line in (cluster.STATE / "connections.env").read_text().splitlines():
        if line.startswith("export AIRFLOW_CONN_"):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
    return env


def site_env(dags: Path, venv: Path, shared: Path | None) -> dict[str, str]:
    """What every Airflow process of the site shares (written to site.env for the CLI and scripts)."""
    keys = site_secrets()
    database = f"airflow:{keys['postgres_password']}@127.0.0.1:{POSTGRES_PORT}/airflow"
    jobs_dir = json.loads((cluster.STATE / "cluster.json").read_text())["jobs_dir"]
    return {
        "AIRFLOW_HOME": str(SITE / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "false",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": "64",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{API_PORT}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(SITE / "admin-password.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{database}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{database}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(API_PORT),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{API_PORT}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(SITE / "airflow-home" / "logs"),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        # a triggerer silent this long is taken for dead and its waits go to the other (default 30 s)
        "AIRFLOW__SCHEDULER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
        # a task whose worker died is failed (and retried) after this long without a heartbeat (default 300 s)
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW_VAR_MAXWELL_WORKDIR": jobs_dir,
        # this checkout's provider, whatever the venv's editable install points at
        "PYTHONPATH": str(cluster.PROJECT),
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/sbin:/usr/bin:/sbin:/bin",
        # A folder every host sees (GPFS on Maxwell, a volume for pods): one token and one version
        # probe for the whole site instead of one per host.
        **({"MAXWELL_SHARED_DIR": str(shared)} if shared else {}),
        "SITE_API_URL": f"http://127.0.0.1:{API_PORT}",
        "SITE_ADMIN_USER": "admin",
        "SITE_ADMIN_PASSWORD": keys["admin_password"],
    }


def write_site_env(env: dict[str, str]) -> None:
    path = SITE.parent / "site.env"
    lines = ["# Written by `make site`: the local site's Airflow. Holds the site's secrets: keep it private."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items() if name != "PATH"]
    lines.append(f'export PATH={shlex.quote(env["PATH"].split(os.pathsep)[0])}:"$PATH"  # its `airflow`')
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")


def as_host(name: str, cmd: list[str]) -> list[str]:
    """`cmd` as host `name` runs it: its own hostname and its own tmpfs on /run/user/<uid>."""
    runtime = f"/run/user/{os.getuid()}"
    Path(runtime).mkdir(parents=True, exist_ok=True)
    script = 'hostname "$0" && mount -t tmpfs -o mode=0700,size=16m site-runtime "$1" && shift && exec "$@"'
    return ["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", script, HOSTS[name], runtime, *cmd]


def host_env(base: dict[str, str], name: str) -> dict[str, str]:
    home = SITE / "hosts" / HOSTS[name] / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {**base, "HOME": str(home), "XDG_RUNTIME_DIR": f"/run/user/{os.getuid()}"}


# ---------------------------------------------------------------- PostgreSQL and Redis


def ensure_packages() -> None:
    """Debian's postgresql and redis-server, installed without starting their system-wide services
    (a policy-rc.d that refuses, for the install only): the site runs its own, by PID."""
    global PG_BIN
    if (PG_BIN / "postgres").exists() and shutil.which("redis-server"):
        return
    log("installing Debian's postgresql and redis-server")
    policy = Path("/usr/sbin/policy-rc.d")
    made = not policy.exists()
    if made:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        cluster.run(["apt-get", "update", "-q"])
        cluster.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql", "redis-server"],
                    env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    finally:
        if made:
            policy.unlink()
    PG_BIN = newest_postgres()


def ensure_postgres() -> None:
    ensure_packages()
    data = SITE / "postgres"
    owner = ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups"]
    data.mkdir(parents=True, exist_ok=True)
    # the data folder's parents must let the postgres user through
    for parent in data.parents:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o001)
    if not (data / "PG_VERSION").exists():
        pwfile = SITE / "postgres.pw"
        pwfile.write_text(site_secrets()["postgres_password"] + "\n")
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
        cluster.run([*owner, str(PG_BIN / "initdb"), "-D", str(data), "-U", "airflow", f"--pwfile={pwfile}",
                     "--auth=scram-sha-256", "-E", "UTF8"])  # fmt: skip
        pwfile.unlink()
    cmd = [*owner, str(PG_BIN / "postgres"), "-D", str(data), "-p", str(POSTGRES_PORT), "-k", str(data),
           "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]  # fmt: skip
    processes.start("postgres", cmd)
    processes.wait_for("PostgreSQL", lambda: cluster.port_open(POSTGRES_PORT), 60, name="postgres")
    env = {**os.environ, "PGPASSWORD": site_secrets()["postgres_password"]}
    psql = ["psql", "-h", "127.0.0.1", "-p", str(POSTGRES_PORT), "-U", "airflow", "-d", "postgres", "-tAc"]
    processes.wait_for("PostgreSQL to accept logins", lambda: cluster.run([*psql, "SELECT 1"], env=env), 30)
    if cluster.run([*psql, "SELECT 1 FROM pg_database WHERE datname = 'airflow'"], env=env).stdout.strip() != "1":
        cluster.run([*psql, "CREATE DATABASE airflow"], env=env)


def ensure_redis() -> None:
    data = SITE / "redis"
    data.mkdir(parents=True, exist_ok=True)
    cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--dir", str(data),
           "--appendonly", "yes", "--save", "", "--daemonize", "no"]  # fmt: skip
    processes.start("redis", cmd)
    processes.wait_for("Redis", lambda: cluster.port_open(REDIS_PORT), 30, name="redis")


# ---------------------------------------------------------------- Airflow


def api_ready() -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}/api/v2/monitor/health", timeout=5) as answer:
        return bool(json.load(answer)["metadatabase"]["status"] == "healthy")


def logged_since(name: str, offset: int, text: str) -> bool:
    with open(processes.log_file(name), "rb") as logfile:
        logfile.seek(offset)
        return text.encode() in logfile.read()


def log_size(name: str) -> int:
    path = processes.log_file(name)
    return path.stat().st_size if path.exists() else 0


def start_airflow(env: dict[str, str]) -> None:
    airflow = str(Path(env["PATH"].split(os.pathsep)[0]) / "airflow")
    base = {k: v for k, v in env.items() if not k.startswith("SITE_")}
    password_file = SITE / "admin-password.json"
    if not password_file.exists():
        password_file.touch(mode=0o600)
        password_file.write_text(json.dumps({"admin": site_secrets()["admin_password"]}) + "\n")
    log("airflow db migrate")
    cluster.run([airflow, "db", "migrate"], env=base, timeout=600)
    connections = maxwell_connections()
    # The API server answers the workers' tasks' connection requests (Execution API): workers hold none.
    processes.start("api-server", [airflow, "api-server"], env={**base, **connections})
    processes.start("scheduler", [airflow, "scheduler"], env=base)
    processes.start("dag-processor", [airflow, "dag-processor"], env=base)
    # only those started now announce themselves (a host brought back after it died)
    offsets = {
        name: log_size(name) for name in (*WORKER_LOG_PORTS, *TRIGGER_LOG_PORTS) if not processes.running_pid(name)
    }
    for name, port in WORKER_LOG_PORTS.items():
        cmd = [airflow, "celery", "worker", "--celery-hostname", HOSTS[name], "--without-mingle", "--without-gossip"]
        host = {**host_env(base, name), "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port)}
        processes.start(name, as_host(name, cmd), env=host)
    for name, port in TRIGGER_LOG_PORTS.items():
        # Triggerers look connections up themselves (environment, then the metadata database)
        host = {**host_env(base, name), **connections, "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port)}
        processes.start(name, as_host(name, [airflow, "triggerer"]), env=host)
    processes.wait_for("the API server", api_ready, 180, name="api-server")
    for name, offset in offsets.items():
        said = " ready." if name.startswith("worker") else "riggerer"
        processes.wait_for(f"{name} ready", lambda n=name, o=offset, t=said: logged_since(n, o, t), 180, name=name)


def up(dags: Path, venv: Path, shared: Path | None = None) -> int:
    began = time.monotonic()
    if not (cluster.STATE / "connections.env").exists():
        log(f"no local Maxwell in {cluster.STATE}: `make cluster-up` first")
        return 1
    for port in (POSTGRES_PORT, REDIS_PORT, API_PORT):
        if cluster.port_open(port) and not any(processes.running_pid(name) for name in ORDER):
            log(f"port {port} is taken by another program: MAXWELL_SITE_PORT_BASE picks other ports")
            return 1
    SITE.mkdir(parents=True, exist_ok=True)
    SITE.chmod(0o755)
    ensure_postgres()
    ensure_redis()
    env = site_env(dags.resolve(), venv.resolve(), shared.resolve() if shared else None)
    write_site_env(env)
    start_airflow(env)
    log(f"up in {time.monotonic() - began:.0f} s: UI {env['SITE_API_URL']} (admin, password in .devcluster/site.env)")
    return 0


def stop(name: str) -> None:
    began = time.monotonic()
    if processes.running_pid(name):
        processes.stop(name, timeout=30 if name.startswith("worker") else 20, tree=True)
        log(f"{name} stopped in {time.monotonic() - began:.1f} s")


def down() -> int:
    """Airflow's processes all at once (each on its own: none waits for another), then Redis and PostgreSQL."""
    airflow = [name for name in ORDER if name not in ("postgres", "redis")]
    with concurrent.futures.ThreadPoolExecutor(len(airflow)) as pool:
        list(pool.map(stop, airflow))
    stop("redis")
    stop("postgres")
    return 0


def pids() -> int:
    for name in ORDER:
        pid = processes.running_pid(name)
        if pid:
            print(f"{name} {pid}")
    return 0


def status() -> int:
    for name in ORDER:
        pid = processes.running_pid(name)
        print(f"{name:16} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "pids", "status"))
    parser.add_argument("--dags", type=Path, default=cluster.PROJECT / "example_dags", help="the DAG folder")
    parser.add_argument("--shared-dir", type=Path, help="one folder for every host's token and version files")
    parser.add_argument("--venv", type=Path, default=cluster.PROJECT / ".venv", help="the venv with Airflow")
    args = parser.parse_args()
    if args.command == "up":
        return up(args.dags, args.venv, args.shared_dir)
    return {"down": down, "pids": pids, "status": status}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
