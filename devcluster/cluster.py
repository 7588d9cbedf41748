"""The local Maxwell: real Slurm daemons of three releases, DESY's portal (emulated), a Keycloak
stand-in and an nginx front door, all on 127.0.0.1. Standard library only; run as root.

    python3 devcluster/cluster.py up       bring everything up (idempotent: what runs stays)
    python3 devcluster/cluster.py down     stop what `up` started, by PID, and unmount the roots
    python3 devcluster/cluster.py status   what runs, one line each
    python3 devcluster/cluster.py is-up | is-running   exit 0 when all of it / any of it runs
    python3 devcluster/cluster.py up --rate-limit   the same, with slurmctld's RPC rate limiting on
                                           (every stack that has it: 24.11 and 26.05)
    python3 devcluster/cluster.py rate-limit STACK on|off
                                           turn slurmctld's RPC rate limiting on or off for one
                                           stack (slurmctld restarted by PID; jobs stay)
    python3 devcluster/cluster.py reset-jobs STACK FIRST_JOB_ID|next
                                           a Slurm state reset: job ids start again (`next`:
                                           after the highest id accounting knows)
    python3 devcluster/cluster.py load STACK   a busy Maxwell: 10,000 finished accounting records of
                                           mxuser1 over the last 3 days (written into slurmdbd's
                                           MariaDB tables: seconds, not hours of jobs) and 2,000
                                           queued (held) array tasks of mxuser2; idempotent
    python3 devcluster/cluster.py unload STACK the same removed: the queued jobs cancelled, the records deleted

State lives in .devcluster/ (PIDs, logs, keys, configs, `connections.env`, `cluster.json`);
caches (Debian roots for 24.11 and 26.05, the IdP's virtual environment) in .cache/.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from processes import Processes

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
STATE = Path(os.environ.get("MAXWELL_DEV_STATE", PROJECT / ".devcluster")).resolve()
CACHE = Path(os.environ.get("MAXWELL_DEV_CACHE", PROJECT / ".cache")).resolve()
USERS = json.loads((HERE / "users.json").read_text())
REST_USER = "slurmrest"  # slurmrestd refuses to run as root or SlurmUser
REST_UID = 20100

MARIADB_PORT = 13306
PORTAL_PORT = 16850
IDP_PORT = 16860
HTTPS_PORT = 16443
HTTP_PORT = 16480  # only redirects to HTTPS_PORT
CANAILLE_VERSION = "0.3.6"
# slurmctld's RPC rate limiting as busy sites run it: a bucket of 30 RPCs per user, refilled by 2 a
# second. An RPC over the limit is answered "back off" (error 1804/1805), which slurmrestd waits out.
RATE_LIMIT_PARAMETERS = "rl_enable,rl_bucket_size=30,rl_refill_rate=2,rl_refill_period=1"
# Releases without RPC rate limiting (it came with Slurm 23.02): `rate-limit` refuses them.
NO_RATE_LIMIT = {"s22": "Slurm 22.05 has no RPC rate limiting (rl_enable came with 23.02)"}


@dataclass(frozen=True)
class Stack:
    """One Slurm release: its daemons, ports and where its binaries live."""

    name: str
    suite: str | None  # None: the host's own packages; else a Debian suite in a root under .cache
    base_port: int
    api_versions: tuple[str, ...]

    @property
    def cluster(self) -> str:
        return f"maxwell{self.name[1:]}"

    @property
    def node(self) -> str:
        return f"maxwn{self.name[1:]}"

    @property
    def root(self) -> Path | None:
        return CACHE / "roots" / self.suite if self.suite else None

    @property
    def dir(self) -> Path:
        return STATE / self.name

    @property
    def ctld_port(self) -> int:
        return self.base_port

    @property
    def slurmd_port(self) -> int:
        return self.base_port + 1

    @property
    def dbd_port(self) -> int:
        return self.base_port + 2

    @property
    def rest_port(self) -> int:
        return self.base_port + 3

    def cmd(self, *args: str) -> list[str]:
        """A command run with this release's binaries (inside its root where it has one)."""
        return ["chroot", str(self.root), *args] if self.root else list(args)

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_CONF": str(self.dir / "etc" / "slurm.conf"), **extra}


STACKS = (
    Stack("s22", None, 16817, ("v0.0.38",)),
    Stack("s24", "trixie", 16827, ("v0.0.40", "v0.0.41", "v0.0.42")),
    Stack("s26", "sid", 16837, ("v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45")),
)
NEWEST = STACKS[-1]


def log(message: str) -> None:
    print(f"cluster: {message}", flush=True)


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
        )
    return result


# ---------------------------------------------------------------- processes, by PID only


_processes = Processes(STATE)
pid_file = _processes.pid_file
running_pid = _processes.running_pid
start = _processes.start
stop = _processes.stop
wait_for = _processes.wait_for


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_status(url: str, **kw) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, **kw), timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


# ---------------------------------------------------------------- one-time set-up


def install_system() -> None:
    subprocess.run(["bash", str(HERE / "install-system.sh")], check=True)


def build_roots() -> dict[str, str]:
    """Build the Debian roots in parallel; returns {stack: reason} for those that failed."""
    failures: dict[str, str] = {}
    with concurrent.futures.ThreadPoolExecutor() as pool:
        jobs = {
            s.name: pool.submit(run, ["bash", str(HERE / "build-root.sh"), s.suite, str(s.root)])
            for s in STACKS
            if s.suite
        }
        for name, job in jobs.items():
            try:
                log(job.result().stdout.strip())
            except RuntimeError as error:
                failures[name] = str(error)
    return failures


def idp_python() -> Path:
    venv = CACHE / "idp-venv"
    python = venv / "bin" / "python"
    probe = (
        run([str(python), "-c", "import canaille; print(canaille.__name__)"], check=False) if python.exists() else None
    )
    if probe is None or probe.returncode != 0:
        log(f"installing Canaille {CANAILLE_VERSION} into {venv}")
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "-q", f"canaille[oidc]=={CANAILLE_VERSION}"])
    return python


def ensure_users() -> None:
    for entry in [*USERS, {"name": REST_USER, "uid": REST_UID}]:
        if run(["id", "-u", entry["name"]], check=False).returncode != 0:
            run(["useradd", "-u", str(entry["uid"]), "-U", "-m", "-s", "/bin/bash", entry["name"]])


def ensure_dirs() -> None:
    for sub in ("pids", "logs", "keys", "ca", "portal", "idp", "nginx"):
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    (STATE / "keys").chmod(0o700)
    # Job working directory shared by every release, as Maxwell's GPFS is: the worker reads output here.
    jobs = STATE / "jobs"
    jobs.mkdir(exist_ok=True)
    jobs.chmod(0o1777)
    STATE.chmod(0o755)


def ensure_keys(idp: Path) -> None:
    key = STATE / "keys" / "jwt_hs256.key"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    jwks = run([str(idp), str(HERE / "idp.py"), "jwks", "--state", str(STATE / "idp")]).stdout
    (STATE / "keys" / "jwks.json").write_text(jwks)
    (STATE / "keys" / "jwks.json").chmod(0o600)


def ensure_tls() -> None:
    """A local CA and a server certificate for 127.0.0.1/localhost, signed by it."""
    ca, crt = STATE / "ca" / "ca.pem", STATE / "ca" / "server.pem"
    if crt.exists():
        return
    d = STATE / "ca"
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=Maxwell dev local CA",
            "-keyout",
            str(d / "ca.key"),
            "-out",
            str(ca),
        ]
    )
    run(
        [
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(d / "server.key"),
            "-out",
            str(d / "server.csr"),
        ]
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(d / "server.csr"),
            "-CA",
            str(ca),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            str(d / "san.ext"),
            "-out",
            str(crt),
        ]
    )
    for name in ("ca.key", "server.key"):
        (d / name).chmod(0o600)


# ---------------------------------------------------------------- shared services


def ensure_munge() -> None:
    Path("/run/munge").mkdir(exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    if not Path("/etc/munge/munge.key").exists():
        run(["mungekey", "--create"])
        shutil.chown("/etc/munge/munge.key", "munge", "munge")
    start(
        "munged",
        [
            "setpriv",
            "--reuid=munge",
            "--regid=munge",
            "--init-groups",
            "munged",
            "--foreground",
            "--pid-file",
            "/run/munge/maxwell-dev.pid",
        ],
    )
    wait_for("munge", lambda: run(["munge", "-n"], check=False).returncode == 0, 20, name="munged")


def mariadb_password() -> str:
    path = STATE / "keys" / "mariadb.pw"
    if not path.exists():
        path.write_text(secrets.token_hex(16))
        path.chmod(0o600)
    return path.read_text()


def ensure_mariadb() -> None:
    data = STATE / "mariadb"
    if not (data / "mysql").exists():
        data.mkdir(exist_ok=True)
        shutil.chown(data, "mysql", "mysql")
        run(
            [
                "mariadb-install-db",
                "--user=mysql",
                f"--datadir={data}",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ]
        )
    sock = data / "mysqld.sock"
    # mariadbd itself, not mysqld_safe: mysqld_safe would restart it when stopped by PID.
    start(
        "mariadb",
        [
            "mariadbd",
            "--user=mysql",
            f"--datadir={data}",
            f"--socket={sock}",
            f"--port={MARIADB_PORT}",
            "--bind-address=127.0.0.1",
            f"--pid-file={data}/mariadbd.pid",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--log-error=" + str(STATE / "logs" / "mariadb-error.log"),
        ],
    )
    wait_for(
        "MariaDB",
        lambda: run(["mariadb-admin", f"--socket={sock}", "ping"], check=False).returncode == 0,
        60,
        name="mariadb",
    )
    pw = mariadb_password()
    sql = (
        f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{pw}';"
        "GRANT ALL ON *.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
    )
    run(["mariadb", f"--socket={sock}", "-e", sql])


def ensure_portal() -> None:
    start(
        "portal",
        [
            sys.executable,
            str(HERE / "portal.py"),
            "--state",
            str(STATE / "portal"),
            "--port",
            str(PORTAL_PORT),
            "--jwt-key",
            str(STATE / "keys" / "jwt_hs256.key"),
            "--users",
            str(HERE / "users.json"),
        ],
    )
    wait_for("the portal emulator", lambda: port_open(PORTAL_PORT), 20, name="portal")


def ensure_idp(idp: Path) -> None:
    env = {
        **os.environ,
        "IDP_ACCESS_LIFETIME": os.environ.get("IDP_ACCESS_LIFETIME", "300"),
        "IDP_REFRESH_LIFETIME": os.environ.get("IDP_REFRESH_LIFETIME", "1800"),
    }
    start(
        "idp",
        [str(idp), str(HERE / "idp.py"), "serve", "--state", str(STATE / "idp"), "--port", str(IDP_PORT)],
        env=env,
    )
    wait_for("the identity provider", lambda: port_open(IDP_PORT), 30, name="idp")


def ensure_nginx() -> None:
    conf = STATE / "nginx" / "nginx.conf"
    before = conf.read_text() if conf.exists() else None
    conf.write_text(
        (HERE / "nginx.conf.in")
        .read_text()
        .format(
            state=STATE,
            https_port=HTTPS_PORT,
            http_port=HTTP_PORT,
            rest_port=NEWEST.rest_port,
            portal_port=PORTAL_PORT,
            idp_port=IDP_PORT,
        )
    )
    if before != conf.read_text():
        stop("nginx")  # a front door left running by an earlier `up` serves the new configuration
    start("nginx", ["nginx", "-c", str(conf), "-g", "daemon off;"])
    wait_for("nginx", lambda: port_open(HTTPS_PORT) and port_open(HTTP_PORT), 20, name="nginx")


# ---------------------------------------------------------------- Slurm stacks


def write_stack_config(stack: Stack, first_job_id: int | None = None) -> None:
    for sub in ("etc", "state", "spool", "run", "log"):
        (stack.dir / sub).mkdir(parents=True, exist_ok=True)
    keys = STATE / "keys"
    values = dict(
        cluster=stack.cluster,
        host=socket.gethostname().split(".")[0],
        dir=stack.dir,
        node=stack.node,
        ctld_port=stack.ctld_port,
        slurmd_port=stack.slurmd_port,
        dbd_port=stack.dbd_port,
        jwt=f"jwt_key={keys / 'jwt_hs256.key'},jwks={keys / 'jwks.json'}",
        cpus=8,
        mariadb_port=MARIADB_PORT,
        db=f"slurm_acct_{stack.name}",
        first_job_id=first_job_id or int(stack.name[1:]) * 100000,  # s22: 2200000, s24: 2400000, s26: 2600000
        db_password=mariadb_password(),
        # 22.05 still wants a switch plugin named; 24.11 dropped the option.
        switch="SwitchType=switch/none" if stack.name == "s22" else "",
        ctld_parameters=f"SlurmctldParameters={RATE_LIMIT_PARAMETERS}" if rate_limited(stack) else "",
    )
    etc = stack.dir / "etc"
    (etc / "slurm.conf").write_text((HERE / "slurm.conf.in").read_text().format(**values))
    (etc / "slurmdbd.conf").write_text((HERE / "slurmdbd.conf.in").read_text().format(**values))
    (etc / "slurmdbd.conf").chmod(0o600)
    # 26.05's slurmd wants cgroup.conf even with cgroups unused; older releases do not read it.
    (etc / "cgroup.conf").write_text("CgroupPlugin=disabled\n" if stack.name != "s22" else "")


def rate_limit_marker(stack: Stack) -> Path:
    """Present while the stack's slurmctld runs with RPC rate limiting (so a restart keeps the choice)."""
    return stack.dir / "rate-limited"


def rate_limited(stack: Stack) -> bool:
    return rate_limit_marker(stack).exists()


def set_rate_limit(stack: Stack, on: bool) -> None:
    """Turn slurmctld's RPC rate limiting on or off: rewrite slurm.conf, restart slurmctld by PID.

    Queued and running jobs stay (slurmctld reads its saved state); slurmd and slurmrestd stay up.
    """
    if on:
        rate_limit_marker(stack).touch()
    else:
        rate_limit_marker(stack).unlink(missing_ok=True)
    write_stack_config(stack)
    stop(f"{stack.name}-slurmctld")
    start_slurmctld(stack)
    wait_for(f"{stack.name} node {stack.node} idle", lambda: node_idle(stack), 60, name=f"{stack.name}-slurmd")


def mount_root(stack: Stack) -> None:
    """Bind what the daemons inside a root share with the host: munge's socket and .devcluster."""
    root = stack.root
    assert root is not None
    mounted = Path("/proc/mounts").read_text()
    for source, target, fstype in (
        ("proc", root / "proc", "proc"),
        ("/dev", root / "dev", None),
        ("/sys", root / "sys", None),
        ("/run/munge", root / "run" / "munge", None),
        (str(STATE), Path(f"{root}{STATE}"), None),
    ):
        target.mkdir(parents=True, exist_ok=True)
        if f" {target} " in mounted:
            continue
        run(["mount", "-t", fstype, source, str(target)] if fstype else ["mount", "--bind", source, str(target)])
    shutil.copy("/etc/hosts", root / "etc" / "hosts")
    # The job users and slurmrestd's user, with the host's uids.
    for db in ("passwd", "group", "shadow"):
        host_lines = Path(f"/etc/{db}").read_text().splitlines()
        root_file = root / "etc" / db
        have = {line.split(":")[0] for line in root_file.read_text().splitlines()}
        wanted = [u["name"] for u in USERS] + [REST_USER]
        extra = [line for line in host_lines if line.split(":")[0] in wanted and line.split(":")[0] not in have]
        if extra:
            with root_file.open("a") as f:
                f.write("\n".join(extra) + "\n")
    for user in USERS:
        home = root / "home" / user["name"]
        if not home.exists():
            home.mkdir(parents=True)
            os.chown(home, user["uid"], user["uid"])


def unmount_root(stack: Stack) -> None:
    root = stack.root
    if root is None:
        return
    for target in (Path(f"{root}{STATE}"), root / "run" / "munge", root / "sys", root / "dev", root / "proc"):
        if f" {target} " in Path("/proc/mounts").read_text():
            run(["umount", "-l", str(target)], check=False)


def sacctmgr(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return run(stack.cmd("sacctmgr", "-i", *args), env=stack.env(), check=False)


def ensure_associations(stack: Stack) -> None:
    listed = run(
        stack.cmd("sacctmgr", "-nP", "list", "associations", "format=cluster,account,user"), env=stack.env()
    ).stdout
    if f"{stack.cluster}|" not in listed:
        sacctmgr(stack, "add", "cluster", stack.cluster)
    for account in sorted({u["account"] for u in USERS}):
        if f"|{account}|" not in listed:
            sacctmgr(
                stack, "add", "account", account, f"cluster={stack.cluster}", "description=dev", "organization=dev"
            )
    for user in USERS:
        if f"|{user['account']}|{user['name']}" not in listed:
            sacctmgr(stack, "add", "user", user["name"], f"account={user['account']}", f"cluster={stack.cluster}")


def node_idle(stack: Stack) -> bool:
    out = run(stack.cmd("sinfo", "-h", "-N", "-o", "%t"), env=stack.env(), check=False).stdout
    states = {line.strip().rstrip("*~#") for line in out.splitlines() if line.strip()}
    return bool(states) and states <= {"idle", "mix", "alloc"}


def start_slurmctld(stack: Stack, *options: str) -> None:
    """Start the stack's slurmctld (unless it runs) and wait until `scontrol ping` says it is UP."""
    tag = stack.name
    start(f"{tag}-slurmctld", stack.cmd("slurmctld", "-D", "-i", *options), env=stack.env())
    wait_for(
        f"{tag} slurmctld",
        lambda: run(stack.cmd("scontrol", "ping"), env=stack.env(), check=False).stdout.count("UP") > 0,
        60,
        name=f"{tag}-slurmctld",
    )


def ensure_stack(stack: Stack) -> None:
    if stack.root:
        mount_root(stack)
    write_stack_config(stack)
    tag = stack.name
    start(f"{tag}-slurmdbd", stack.cmd("slurmdbd", "-D"), env=stack.env())
    wait_for(f"{tag} slurmdbd", lambda: port_open(stack.dbd_port), 60, name=f"{tag}-slurmdbd")
    ensure_associations(stack)
    start_slurmctld(stack)
    start(f"{tag}-slurmd", stack.cmd("slurmd", "-D", "-N", stack.node), env=stack.env())
    wait_for(f"{tag} node {stack.node} idle", lambda: node_idle(stack), 60, name=f"{tag}-slurmd")
    rest = stack.cmd(
        "slurmrestd", "-u", REST_USER, "-g", REST_USER, "-a", "rest_auth/jwt", f"127.0.0.1:{stack.rest_port}"
    )
    start(f"{tag}-slurmrestd", rest, env=stack.env(SLURM_JWT="daemon"))
    # slurmrestd answers 401 to a request without a token once it serves.
    wait_for(
        f"{tag} slurmrestd",
        lambda: http_status(f"http://127.0.0.1:{stack.rest_port}/openapi/v3") == 401,
        30,
        name=f"{tag}-slurmrestd",
    )


def reset_jobs(stack: Stack, first_job_id: int) -> None:
    """What an admin's state reset does: slurmctld restarted without its saved state, so job ids
    are handed out again from the first one, here `first_job_id`. Queued and running jobs are lost;
    accounting keeps every record, so old ids now have several. slurmd and slurmrestd stay up."""
    tag = stack.name
    stop(f"{tag}-slurmctld")
    # As admins do it: empty StateSaveLocation. `-c` alone still reads the job id sequence from it.
    for saved in (stack.dir / "state").iterdir():
        if saved.is_dir():
            shutil.rmtree(saved)
        else:
            saved.unlink()
    write_stack_config(stack, first_job_id)
    try:
        start_slurmctld(stack, "-c")
    finally:
        # slurmctld read it at start; the file goes back to the usual range so that a later plain
        # restart reads what `up` writes (slurmctld then continues from its saved sequence).
        write_stack_config(stack)
    wait_for(f"{tag} node {stack.node} idle", lambda: node_idle(stack), 60, name=f"{tag}-slurmd")


def stop_stack(stack: Stack) -> None:
    for daemon in ("slurmrestd", "slurmd", "slurmctld", "slurmdbd"):
        stop(f"{stack.name}-{daemon}")
    unmount_root(stack)


# ---------------------------------------------------------------- what users and tests read


def portal_token(user: dict) -> str:
    auth = base64.b64encode(f"{user['name']}:{user['password']}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORTAL_PORT}/reservation/get_new_token?cli_api=4.6.0",
        headers={"Authorization": f"Basic {auth}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read().decode().strip()


def slurm_token(user: str, lifespan: int) -> str:
    sys.path.insert(0, str(HERE))
    from portal import mint_hs256

    return mint_hs256((STATE / "keys" / "jwt_hs256.key").read_bytes(), user, lifespan)


def write_connections(up: list[Stack]) -> None:
    """`.devcluster/connections.env`: ready Airflow connections, one per release and per auth method."""
    user1, user2 = USERS[0], USERS[1]
    ca = str(STATE / "ca" / "ca.pem")
    https = f"https://127.0.0.1:{HTTPS_PORT}"
    conns: dict[str, dict] = {}
    token1 = portal_token(user1)
    for stack in up:
        conns[f"maxwell_{stack.name}"] = {
            "conn_type": "maxwell",
            "host": f"http://127.0.0.1:{stack.rest_port}",
            "login": user1["name"],
            "password": token1,
            "extra": {"auth_method": "portal", "portal_url": f"http://127.0.0.1:{PORTAL_PORT}/reservation"},
        }
    if NEWEST in up:
        conns["maxwell_default"] = {
            "conn_type": "maxwell",
            "host": f"{https}/sapi",
            "login": user1["name"],
            "password": token1,
            "extra": {"auth_method": "portal", "verify": ca},
        }
        conns["maxwell_portal"] = conns["maxwell_default"]
        conns["maxwell_keycloak"] = {
            "conn_type": "maxwell",
            "host": f"{https}/sapi",
            "login": user2["name"],
            "password": user2["password"],
            "extra": {"auth_method": "keycloak", "keycloak_url": f"{https}/auth", "verify": ca},
        }
        conns["maxwell_token"] = {
            "conn_type": "maxwell",
            "host": f"{https}/sapi",
            "login": user1["name"],
            "password": slurm_token(user1["name"], 86400),
            "extra": {"auth_method": "token", "verify": ca},
        }
        key = base64.b64encode((STATE / "keys" / "jwt_hs256.key").read_bytes()).decode()
        conns["maxwell_signing_key"] = {
            "conn_type": "maxwell",
            "host": f"{https}/sapi",
            "login": user1["name"],
            "extra": {"auth_method": "signing_key", "signing_secret": key, "verify": ca},
        }
    lines = [
        "# Written by `make cluster-up`: Airflow connections to the local Maxwell. Holds dev secrets: keep it private."
    ]
    for conn_id, conn in conns.items():
        lines.append(f"export AIRFLOW_CONN_{conn_id.upper()}='{json.dumps(conn)}'")
    path = STATE / "connections.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_cluster_json(up: list[Stack], unavailable: dict[str, str]) -> None:
    """.devcluster/cluster.json: what tests read to find the cluster (no secrets in it)."""
    info = {
        "state": str(STATE),
        "jobs_dir": str(STATE / "jobs"),
        "ca_bundle": str(STATE / "ca" / "ca.pem"),
        "jwt_key_file": str(STATE / "keys" / "jwt_hs256.key"),
        "users_file": str(HERE / "users.json"),
        "portal_url": f"http://127.0.0.1:{PORTAL_PORT}/reservation",
        "idp_url": f"http://127.0.0.1:{IDP_PORT}/auth",
        # Tests start their own short-lived IdP instances with the same signing key (trusted by Slurm).
        "idp_command": [
            str(CACHE / "idp-venv" / "bin" / "python"),
            str(HERE / "idp.py"),
            "serve",
            "--state",
            str(STATE / "idp"),
        ],
        "front_door": f"https://127.0.0.1:{HTTPS_PORT}",
        "plain_http_front_door": f"http://127.0.0.1:{HTTP_PORT}",  # answers every request with a 301 to HTTPS
        "front_door_log": str(STATE / "logs" / "nginx-access.log"),
        "stacks": {
            s.name: {
                "cluster": s.cluster,
                "node": s.node,
                "rest_url": f"http://127.0.0.1:{s.rest_port}",
                "api_versions": list(s.api_versions),
                "root": str(s.root) if s.root else None,
                "slurm_conf": str(s.dir / "etc" / "slurm.conf"),
            }
            for s in up
        },
        "unavailable": unavailable,
    }
    (STATE / "cluster.json").write_text(json.dumps(info, indent=2))


# ---------------------------------------------------------------- commands


def up(rate_limit: bool = False) -> int:
    began = time.monotonic()
    install_system()
    unavailable = build_roots()
    for name, reason in unavailable.items():
        log(f"Slurm stack {name} is NOT available on this machine: {reason}. Its tests will skip with this reason.")
    ensure_dirs()
    ensure_users()
    idp = idp_python()
    ensure_keys(idp)
    ensure_tls()
    ensure_munge()
    ensure_mariadb()
    ensure_portal()
    ensure_idp(idp)
    up_stacks = []
    for stack in STACKS:
        if stack.name in unavailable:
            continue
        if rate_limit and stack.name in NO_RATE_LIMIT:
            log(f"{stack.name}: {NO_RATE_LIMIT[stack.name]}: it runs without")
        elif rate_limit and not rate_limited(stack):
            stack.dir.mkdir(parents=True, exist_ok=True)
            rate_limit_marker(stack).touch()
            stop(f"{stack.name}-slurmctld")  # a running one restarts with the limit
        try:
            ensure_stack(stack)
            up_stacks.append(stack)
        except RuntimeError as error:
            unavailable[stack.name] = str(error)
            log(f"Slurm stack {stack.name} failed to start: {error}")
    if NEWEST in up_stacks:
        ensure_nginx()
    write_connections(up_stacks)
    write_cluster_json(up_stacks, unavailable)
    log(
        f"up in {time.monotonic() - began:.0f} s: "
        + ", ".join(f"{s.name} ({s.cluster}) REST on 127.0.0.1:{s.rest_port}" for s in up_stacks)
    )
    log(
        f"front door https://127.0.0.1:{HTTPS_PORT} (CA {STATE / 'ca' / 'ca.pem'}); "
        f"connections: source {STATE / 'connections.env'}"
    )
    # A release missing on this machine is reported, and its tests skip with the reason; the rest works.
    return 0 if up_stacks else 1


def down() -> int:
    stop("nginx")
    for stack in reversed(STACKS):
        stop_stack(stack)
    for name in ("idp", "portal"):
        stop(name)
    stop("mariadb", timeout=60)
    stop("munged")
    leftovers = [p.stem for p in (STATE / "pids").glob("*.pid")] if (STATE / "pids").exists() else []
    for name in leftovers:
        stop(name)
    (STATE / "cluster.json").unlink(missing_ok=True)
    log("down: every daemon started by `up` is stopped")
    return 0


def status() -> int:
    names = ["munged", "mariadb", "portal", "idp", "nginx"] + [
        f"{s.name}-{d}" for s in STACKS for d in ("slurmdbd", "slurmctld", "slurmd", "slurmrestd")
    ]
    for name in names:
        pid = running_pid(name)
        print(f"{name:16} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


def is_up() -> int:
    """Exit 0 when every daemon of a previous `up` still runs (so a wrapper leaves it running)."""
    if not (STATE / "cluster.json").exists():
        return 1
    info = json.loads((STATE / "cluster.json").read_text())
    names = ["munged", "mariadb", "portal", "idp"] + [
        f"{n}-{d}" for n in info["stacks"] for d in ("slurmdbd", "slurmctld", "slurmd", "slurmrestd")
    ]
    return 0 if all(running_pid(n) for n in names) else 1


def is_running() -> int:
    """Exit 0 when any daemon of a previous `up` runs: someone's cluster, perhaps with one daemon stopped
    on purpose by a fault test, which a wrapper must not take for its own and take down."""
    alive = [p.stem for p in (STATE / "pids").glob("*.pid") if running_pid(p.stem)] if (STATE / "pids").exists() else []
    return 0 if alive else 1


def verify_down() -> int:
    """Exit 1 if any daemon recorded by `up` still runs or a root is still mounted (for CI)."""
    alive = [p.stem for p in (STATE / "pids").glob("*.pid") if running_pid(p.stem)] if (STATE / "pids").exists() else []
    mounts = [
        line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if str(CACHE) in line.split()[1]
    ]
    for name in alive:
        print(f"cluster: still running: {name} (pid {running_pid(name)})")
    for mount in mounts:
        print(f"cluster: still mounted: {mount}")
    if not alive and not mounts:
        log("verified: no daemon of ours runs and no root is mounted")
    return 1 if alive or mounts else 0


def highest_job_id(stack: Stack) -> int:
    """The highest job id in the stack's accounting (array tasks included; 0 when there is none)."""
    listing = run(
        stack.cmd("sacct", "-a", "-X", "-n", "-P", "-o", "jobidraw", "-S", "2000-01-01", "-E", "now"), env=stack.env()
    ).stdout
    return max((int(line) for line in listing.split() if line.isdigit()), default=0)


def reset_jobs_command(name: str, first_job_id: str) -> int:
    stack = next((s for s in STACKS if s.name == name), None)
    if stack is None or not (first_job_id.isdigit() or first_job_id == "next") or not running_pid(f"{name}-slurmd"):
        print(f"cluster: reset-jobs needs a running stack ({', '.join(s.name for s in STACKS)}) and a job id or 'next'")
        return 2
    # `next`: past every id accounting knows, so that no id is handed out twice from here on
    first = highest_job_id(stack) + 1 if first_job_id == "next" else int(first_job_id)
    reset_jobs(stack, first)
    log(f"{name}: slurmctld state cleared, job ids start again at {first}")
    return 0


def rate_limit_command(name: str, switch: str) -> int:
    stack = next((s for s in STACKS if s.name == name), None)
    if stack is None or switch not in ("on", "off") or not running_pid(f"{name}-slurmctld"):
        print(f"cluster: rate-limit needs a running stack ({', '.join(s.name for s in STACKS)}) and on|off")
        return 2
    if name in NO_RATE_LIMIT:
        if switch == "off":
            log(f"{name}: rate limiting is off (it has none)")
            return 0
        print(f"cluster: {name}: {NO_RATE_LIMIT[name]}; use s24 or s26", file=sys.stderr)
        return 2
    began = time.monotonic()
    if rate_limited(stack) == (switch == "on") and slurmctld_has_rate_limit(stack) == (switch == "on"):
        log(f"{name}: rate limiting already {switch}")
        return 0
    set_rate_limit(stack, switch == "on")
    log(
        f"{name}: rate limiting {switch} "
        + (f"({RATE_LIMIT_PARAMETERS}) " if switch == "on" else "")
        + f"(slurmctld restarted in {time.monotonic() - began:.1f} s)"
    )
    return 0


def slurmctld_has_rate_limit(stack: Stack) -> bool:
    """Whether the running slurmctld's configuration has rate limiting (as `scontrol show config` says)."""
    config = run(stack.cmd("scontrol", "show", "config"), env=stack.env(), check=False).stdout
    return any(line.startswith("SlurmctldParameters") and "rl_enable" in line for line in config.splitlines())


LOAD_FIRST_ID = 1_000_000  # the loaded records' job ids: below every stack's first real id (2200000), never handed out
LOAD_RECORDS = 10_000
LOAD_DAYS = 3
LOAD_QUEUED = 2_000  # held array tasks of another user
LOAD_ARRAY = 1_000  # tasks per array: MaxArraySize defaults to 1001
LOAD_NAME = "maxwell-load"
BENCH_NAME = "bench-wait"  # benchmarks/waiting_at_scale.py names its jobs bench-wait-<i>


def mariadb(database: str, sql: str) -> str:
    """Run SQL against the local MariaDB as root (its socket), tab-separated output without headers."""
    return run(["mariadb", f"--socket={STATE / 'mariadb' / 'mysqld.sock'}", "-N", "-B", database, "-e", sql]).stdout


def as_user(stack: Stack, user: dict, *args: str) -> list[str]:
    """A command of `stack`'s release run as one of the job users."""
    if stack.root:
        return ["chroot", f"--userspec={user['uid']}:{user['uid']}", str(stack.root), *args]
    return ["setpriv", f"--reuid={user['uid']}", f"--regid={user['uid']}", "--clear-groups", *args]


def load_records(stack: Stack) -> int:
    """LOAD_RECORDS finished jobs of the first user, copied from one real record of theirs with new ids,
    names and times spread over LOAD_DAYS: what a beamline account leaves in accounting."""
    database, table = f"slurm_acct_{stack.name}", f"{stack.cluster}_job_table"
    user = USERS[0]
    last = LOAD_FIRST_ID + LOAD_RECORDS - 1
    have = int(mariadb(database, f"SELECT COUNT(*) FROM {table} WHERE id_job BETWEEN {LOAD_FIRST_ID} AND {last}"))
    if have == LOAD_RECORDS:
        return 0
    template = mariadb(
        database,
        f"SELECT job_db_inx FROM {table} WHERE id_user = {user['uid']} AND state = 3 AND id_array_job = 0 "
        "ORDER BY job_db_inx DESC LIMIT 1",
    ).strip()
    if not template:
        raise SystemExit(f"cluster: load needs one completed job of {user['name']} on {stack.name} to copy: run one")
    columns = mariadb(
        "information_schema",
        f"SELECT column_name FROM columns WHERE table_schema = '{database}' AND table_name = '{table}' "
        "ORDER BY ordinal_position",
    ).split()
    now, span = int(time.time()), LOAD_DAYS * 86400
    submit = f"({now} - s.seq * {span} DIV {LOAD_RECORDS})"
    overrides = {
        "job_db_inx": "NULL",
        "id_job": f"{LOAD_FIRST_ID - 1} + s.seq",
        "job_name": f"CONCAT('{LOAD_NAME}-', s.seq)",
        "time_submit": submit,
        "time_eligible": submit,
        "time_start": f"{submit} + 5",
        "time_end": f"{submit} + 65",
        "mod_time": str(now),
    }
    values = ", ".join(overrides.get(c, f"t.`{c}`") for c in columns)  # `partition` is a reserved word
    mariadb(
        database,
        f"DELETE FROM {table} WHERE id_job BETWEEN {LOAD_FIRST_ID} AND {last}; "
        f"INSERT INTO {table} ({', '.join(f'`{c}`' for c in columns)}) SELECT {values} FROM {table} t "
        f"JOIN seq_1_to_{LOAD_RECORDS} s WHERE t.job_db_inx = {template}",
    )
    return LOAD_RECORDS


def queued_tasks(stack: Stack) -> int:
    """How many of the loaded held array tasks slurmctld holds."""
    listed = run(stack.cmd("squeue", "-h", "-r", "-n", f"{LOAD_NAME}-queued", "-o", "%i"), env=stack.env()).stdout
    return len(listed.split())


def load_command(name: str) -> int:
    stack = next((s for s in STACKS if s.name == name), None)
    if stack is None or not running_pid(f"{name}-slurmctld"):
        print(f"cluster: load needs a running stack ({', '.join(s.name for s in STACKS)})")
        return 2
    added = load_records(stack)
    log(f"{name}: {LOAD_RECORDS} accounting records of {USERS[0]['name']} over {LOAD_DAYS} days ({added} added)")
    other = USERS[1]
    queued = queued_tasks(stack)
    while queued < LOAD_QUEUED:
        run(
            as_user(
                stack,
                other,
                "sbatch",
                "--hold",
                f"--array=0-{LOAD_ARRAY - 1}",
                "-p",
                "maxcpu",
                "-J",
                f"{LOAD_NAME}-queued",
                "-o",
                "/dev/null",
                f"--chdir=/home/{other['name']}",
                "--wrap=true",
            ),
            env=stack.env(),
        )
        queued += LOAD_ARRAY
    log(f"{name}: {queued_tasks(stack)} held array tasks of {other['name']} queued")
    return 0


def unload_command(name: str) -> int:
    stack = next((s for s in STACKS if s.name == name), None)
    if stack is None or not running_pid(f"{name}-slurmctld"):
        print(f"cluster: unload needs a running stack ({', '.join(s.name for s in STACKS)})")
        return 2
    run(stack.cmd("scancel", f"--user={USERS[1]['name']}", f"--name={LOAD_NAME}-queued"), env=stack.env(), check=False)
    database, table = f"slurm_acct_{stack.name}", f"{stack.cluster}_job_table"
    last = LOAD_FIRST_ID + LOAD_RECORDS - 1
    mariadb(database, f"DELETE FROM {table} WHERE id_job BETWEEN {LOAD_FIRST_ID} AND {last}")
    # `make bench` leaves its jobs' records too (10,000 per run at N = 10,000): a day of them makes the
    # tests that list the user's day (the old poll round, measured for comparison) time out.
    benched = mariadb(database, f"SELECT COUNT(*) FROM {table} WHERE job_name LIKE '{BENCH_NAME}-%'").strip()
    mariadb(database, f"DELETE FROM {table} WHERE job_name LIKE '{BENCH_NAME}-%'")
    log(f"{name}: loaded records and {benched} benchmark records deleted, queued jobs cancelled")
    return 0


def main() -> int:
    commands = {
        "up": up,
        "down": down,
        "status": status,
        "is-up": is_up,
        "is-running": is_running,
        "verify-down": verify_down,
    }
    args = sys.argv[1:]
    loads = {"load": load_command, "unload": unload_command}
    known = (
        (len(args) == 1 and args[0] in commands)
        or args == ["up", "--rate-limit"]
        or (len(args) == 3 and args[0] in ("reset-jobs", "rate-limit"))
        or (len(args) == 2 and args[0] in loads)
    )
    if not known:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("cluster: run as root (the local Maxwell starts system daemons and mounts Debian roots)", file=sys.stderr)
        return 2
    if args[0] == "reset-jobs":
        return reset_jobs_command(args[1], args[2])
    if args[0] == "rate-limit":
        return rate_limit_command(args[1], args[2])
    if args == ["up", "--rate-limit"]:
        return up(rate_limit=True)
    if args[0] in loads:
        return loads[args[0]](args[1])
    return commands[args[0]]()


if __name__ == "__main__":
    sys.exit(main())
