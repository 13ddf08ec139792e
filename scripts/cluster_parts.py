"""The parts of ``scripts/cluster``: its state file, PostgreSQL, Ceph, the gateways and
HAProxy, each started, checked and stopped (the commands and their order are in the script)."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.ceph import CephCluster, CephUnavailable  # noqa: E402 - tests/ is on the path now
from support.ceph import start_ceph as bootstrap_ceph  # noqa: E402

STATE_FILE = "cluster.json"
FORMAT = 1
SITE = "ceph-1"
POOL = "andromede"
AUDIT_POOL = "audit"  # every gateway's audit chain, mirrored before a request is answered
FAILURE_DOMAIN = "dc1"
READY_PATH = "/_andromede/ready"
GATEWAY_START_S = 120.0  # a first start runs the migrations; 2 shared cores make it slow
GATEWAY_STOP_S = 30.0
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SERVER_CHECKS = (
    "check inter 1s fastinter 250ms downinter 1s fall 2 rise 2 "
    "observe layer4 error-limit 1 on-error fail-check"
)
OPERATOR_ENV = frozenset({"ANDROMEDE_ROOT_ACCESS_KEY", "ANDROMEDE_ROOT_SECRET_KEY"})
# Set by the cluster for each gateway or for all of them: the environment does not choose them.
OWN_ENV = frozenset(
    {
        "ANDROMEDE_DATA_DIR",
        "ANDROMEDE_ADDRESS",
        "ANDROMEDE_WORKERS",
        "ANDROMEDE_DATABASE_URL",
        "ANDROMEDE_DATA_DIR_SITE",
        "ANDROMEDE_TRUSTED_PROXIES",
        "ANDROMEDE_KEYSTORE_DIR",
        "ANDROMEDE_RESIDENCY_SIGNING_KEY_FILE",
        "ANDROMEDE_AUDIT_DIR",
        "ANDROMEDE_AUDIT_RADOS",
        "ANDROMEDE_AUDIT_SIGNING_KEY_FILE",
        "ANDROMEDE_AUDIT_WRITER_SOCKET",
        "ANDROMEDE_START_TOKEN",
        "ANDROMEDE_ROOT_ACCESS_KEY",
        "ANDROMEDE_ROOT_SECRET_KEY",
        "ANDROMEDE_ROOT_ACCESS_KEY_FILE",
        "ANDROMEDE_ROOT_SECRET_KEY_FILE",
        "ANDROMEDE_ENDPOINT",
        "ANDROMEDE_ACCESS_KEY",
        "ANDROMEDE_SECRET_KEY",
    }
)


class ClusterError(RuntimeError):
    """A start or stop that cannot go on; the message says why and where to look."""


# --- the state file ---------------------------------------------------------------------------
def load_state(directory: Path) -> dict[str, Any] | None:
    path = directory / STATE_FILE
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def save_state(directory: Path, state: dict[str, Any]) -> None:
    """Atomically, mode 0600: the operator's secret is in it."""
    tmp = directory / (STATE_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, directory / STATE_FILE)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One ``start`` or ``stop`` at a time on a DIR."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)  # PostgreSQL (another user) goes in it
    with (directory / "cluster.lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterError(f"another scripts/cluster is working on {directory}") from None
        yield


# --- processes --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# The processes this run started: right after exec, /proc/PID/cmdline may still read empty.
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def alive(pid: int | None, marker: str) -> bool:
    """Whether ``pid`` runs and is still the process we started (its command line names
    ``marker``): a pid file that outlived a reboot must not make us kill a stranger."""
    if not pid:
        return False
    if pid in CHILDREN:
        return CHILDREN[pid].poll() is None
    line = cmdline(pid)
    if not line or marker not in line:
        return False
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return status[0] != "Z"
    return False


def wait_gone(pids: list[tuple[int, str]], seconds: float) -> list[int]:
    """Wait until none of ``pids`` runs; the ones still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        left = [pid for pid, marker in pids if alive(pid, marker)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def tail(path: str | Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"({path}: nothing written)"
    return "\n".join(text[-lines:])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our loopback
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def gateway_answers(port: int) -> bool:
    """Ready: its database answers and its audit trail takes records (HAProxy's check too)."""
    return http_status(f"http://127.0.0.1:{port}{READY_PATH}") == 200


# --- PostgreSQL -------------------------------------------------------------------------------
def reachable_by(uid: int, gid: int, path: Path) -> bool:
    """Whether user ``uid`` may walk down to ``path`` (PostgreSQL runs as ``postgres`` when we
    are root, and pytest's temporary directories are 0700)."""
    for part in [path, *path.parents]:
        st = part.stat()
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def postgres_user() -> pwd.struct_passwd | None:
    """Who PostgreSQL runs as: ourselves, or when we are root (it refuses to run as root)
    the user ``tests/support/postgres.py`` picks."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


def start_postgres(directory: Path) -> dict[str, Any]:
    # Here, not at the top: it loads SQLAlchemy, which `status` and `stop` do not need.
    from support.postgres import (  # noqa: PLC0415
        PostgresUnavailable,
        create_database,
        start_cluster,
    )

    user = postgres_user()
    base = directory / "postgres"
    base.mkdir(exist_ok=True, mode=0o755)
    if user is not None and not reachable_by(user.pw_uid, user.pw_gid, base):
        base = Path(tempfile.gettempdir())  # start_cluster makes its own 0700 dir in it
    try:
        cluster = start_cluster(base)
    except PostgresUnavailable as exc:
        raise ClusterError(f"PostgreSQL is not installed here: {exc}") from exc
    url = create_database(cluster.url, "andromede")
    return {
        "root": str(cluster.root),
        "port": cluster.port,
        "bindir": str(cluster.bindir),
        "run_as": cluster.run_as.pw_name if cluster.run_as is not None else None,
        "url": url,
        "outside_dir": base != directory / "postgres",
    }


def pg_ctl(pg: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(Path(pg["bindir"]) / "pg_ctl"), "-D", str(Path(pg["root"]) / "data"), *args]
    if pg.get("run_as"):
        argv = ["runuser", "-u", pg["run_as"], "--", *argv]
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"}
    )


def postgres_running(pg: dict[str, Any]) -> bool:
    return bool(pg) and pg_ctl(pg, "status").returncode == 0


def resume_postgres(pg: dict[str, Any]) -> None:
    from support.postgres import PostgresCluster  # noqa: PLC0415 - as in start_postgres

    run_as = pwd.getpwnam(pg["run_as"]) if pg.get("run_as") else None
    PostgresCluster(Path(pg["bindir"]), run_as, Path(pg["root"]), int(pg["port"])).start()


def stop_postgres(pg: dict[str, Any]) -> None:
    if postgres_running(pg):
        done = pg_ctl(pg, "-m", "fast", "-w", "-t", "60", "stop")
        if done.returncode != 0:
            pg_ctl(pg, "-m", "immediate", "-w", "stop")


# --- Ceph -------------------------------------------------------------------------------------
def start_ceph(directory: Path, osds: int, store: str) -> dict[str, Any]:
    size = min(osds, 3)
    try:
        pools = {POOL: size, AUDIT_POOL: size}
        cluster = bootstrap_ceph(directory / "ceph", osds=osds, pools=pools, store=store)
    except CephUnavailable as exc:
        raise ClusterError(f"Ceph is not installed here: {exc}") from exc
    return {
        "root": str(cluster.root),
        "conf": str(cluster.conf),
        "user": cluster.user,
        "pool": POOL,
        "audit_pool": AUDIT_POOL,
        "size": size,
        "osds": osds,
        "store": store,
    }


def ceph_daemons(ceph: dict[str, Any]) -> dict[str, int | None]:
    """Each daemon (``mon.a``, ``osd.0``...) and its pid, None when it is not running."""
    daemons: dict[str, int | None] = {}
    root = ceph.get("root")
    if not root:
        return daemons
    for pidfile in sorted((Path(root) / "run").glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text())
            daemons[pidfile.stem] = pid if alive(pid, root) else None
    return daemons


def ceph_running(ceph: dict[str, Any]) -> bool:
    """Whether the monitor and every OSD run."""
    daemons = ceph_daemons(ceph)
    return all(daemons.get(name) for name in ["mon.a", *(f"osd.{i}" for i in range(ceph["osds"]))])


def resume_ceph(ceph: dict[str, Any]) -> None:
    stop_ceph(ceph)  # what still runs of it: CephCluster.start starts every daemon
    pools = {POOL: ceph["size"], AUDIT_POOL: ceph["size"]}
    cluster = CephCluster(Path(ceph["root"]), ceph["osds"], pools, ceph["user"])
    cluster.start()


def stop_ceph(ceph: dict[str, Any]) -> None:
    """SIGKILL, as ``tests/support/ceph.py --stop`` does, but only to the daemons of this
    cluster still running (a pid file may outlive its process)."""
    root = ceph.get("root")
    if not root:
        return
    daemons = ceph_daemons(ceph)
    for pid in daemons.values():
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_gone([(pid, root) for pid in daemons.values() if pid], 10)
    for pidfile in (Path(root) / "run").glob("*.pid"):
        pidfile.unlink(missing_ok=True)


# --- gateways ---------------------------------------------------------------------------------
def audit_mirror(ceph: dict[str, Any]) -> str:
    """The ``rados:`` location of the pool the gateways mirror their audit chains to."""
    query = urllib.parse.urlencode({"conf": ceph["conf"], "user": ceph["user"]})
    return f"rados:{ceph['audit_pool']}?{query}"


def gateway_env(state: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ANDROMEDE_")}
    env.update(state["env"])
    env.update(
        {
            "ANDROMEDE_DATABASE_URL": state["postgres"]["url"],
            "ANDROMEDE_AUDIT_RADOS": audit_mirror(state["ceph"]),
            "ANDROMEDE_DATA_DIR_SITE": "false",
            "ANDROMEDE_TRUSTED_PROXIES": "127.0.0.1",  # HAProxy sets X-Forwarded-For
            "ANDROMEDE_KEYSTORE_DIR": state["keystore"],
            # One residency key for every gateway: a report verifies under the one public key
            # whichever gateway answered (the first start makes it, atomically).
            "ANDROMEDE_RESIDENCY_SIGNING_KEY_FILE": str(
                Path(state["dir"]) / "residency-signing.key"
            ),
            "ANDROMEDE_ROOT_ACCESS_KEY_FILE": str(Path(state["dir"]) / "operator" / "access-key"),
            "ANDROMEDE_ROOT_SECRET_KEY_FILE": str(Path(state["dir"]) / "operator" / "secret-key"),
        }
    )
    return env


def spawn_gateway(state: dict[str, Any], gw: dict[str, Any]) -> None:
    Path(gw["data_dir"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    log = Path(gw["log"])
    gw["log_offset"] = log.stat().st_size if log.exists() else 0
    argv = [sys.executable, "-m", "andromede", "serve", "--data-dir", gw["data_dir"]]
    argv += ["--address", f"127.0.0.1:{gw['port']}", "--workers", str(state["workers"])]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=gateway_env(state),
            start_new_session=True,
            cwd=state["dir"],
        )
    CHILDREN[proc.pid] = proc
    gw["pid"] = proc.pid  # also its process group: the workers and the audit writer are in it


class PortTaken(ClusterError):
    """The port probed free was taken before the gateway bound it."""


def wait_gateway(gw: dict[str, Any]) -> None:
    """Until the gateway answers; a ClusterError with its log's end if it exits first."""
    deadline = time.monotonic() + GATEWAY_START_S
    while not gateway_answers(gw["port"]):
        if not alive(gw["pid"], "andromede"):
            this_run = Path(gw["log"]).read_bytes()[gw.get("log_offset", 0) :]
            if b"address already in use" in this_run.lower():
                raise PortTaken(gw["name"])
            raise ClusterError(f"gateway {gw['name']} exited; {gw['log']}:\n{tail(gw['log'])}")
        if time.monotonic() > deadline:
            raise ClusterError(
                f"gateway {gw['name']} did not answer in {GATEWAY_START_S:.0f} s; "
                f"{gw['log']}:\n{tail(gw['log'])}"
            )
        time.sleep(0.2)


def start_gateway(state: dict[str, Any], gw: dict[str, Any], fresh: bool) -> None:
    """Start and wait; on a first start, a port taken meanwhile is replaced by another."""
    for attempt in range(3):
        spawn_gateway(state, gw)
        try:
            wait_gateway(gw)
        except PortTaken:
            if not fresh or attempt == 2:
                raise
            gw["port"] = free_port()
        else:
            return


def group(pgid: int | None) -> list[int]:
    """The processes of process group ``pgid`` (a gateway: ``serve``, its workers, its audit
    writer), if it is one of ours: one of them runs Andromède."""
    if not pgid:
        return []
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    ours = any("andromede" in cmdline(pid) for pid in members)
    return members if ours else []


def stop_gateways(gateways: list[dict[str, Any]]) -> None:
    """SIGTERM to each gateway's process group (the audit writer signs the trail's head),
    SIGKILL to what is left after a while."""
    running = [gw["pid"] for gw in gateways if group(gw.get("pid"))]
    for pgid in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + GATEWAY_STOP_S
    while any(group(pgid) for pgid in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pgid in running:
        if group(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def admin(state: dict[str, Any], port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ANDROMEDE_")}
    env["ANDROMEDE_ACCESS_KEY"] = state["operator"]["access_key"]
    env["ANDROMEDE_SECRET_KEY"] = state["operator"]["secret_key"]
    argv = [sys.executable, "-m", "andromede", "admin", *args]
    argv += ["--endpoint", f"http://127.0.0.1:{port}", "--json"]
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=120)


def add_site(state: dict[str, Any], port: int, fresh: bool) -> None:
    """Register the Ceph pool as a site (once: the registry is in the database)."""
    if not fresh:
        listed = admin(state, port, "site", "list")
        if listed.returncode == 0 and any(s.get("name") == SITE for s in json.loads(listed.stdout)):
            return
    ceph = state["ceph"]
    where = ["--jurisdiction", state["jurisdiction"], "--failure-domain", FAILURE_DOMAIN]
    pool = ["--ceph-conf", ceph["conf"], "--pool", ceph["pool"], "--ceph-user", ceph["user"]]
    done = admin(state, port, "site", "add", SITE, *where, "--backend", "rados", *pool)
    if done.returncode != 0:
        raise ClusterError(f"site add {SITE} failed:\n{done.stdout}{done.stderr}")


# --- HAProxy ----------------------------------------------------------------------------------
def haproxy_config(state: dict[str, Any]) -> str:
    ha = state["haproxy"]
    servers = "\n".join(
        f"    server {gw['name']} 127.0.0.1:{gw['port']}" for gw in state["gateways"]
    )
    return f"""\
# Written by scripts/cluster (start): HAProxy in front of the gateways.
global
    log stdout format raw local0 info
    stats socket {ha["socket"]} mode 600 level admin
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    option dontlognull
    # A gateway that does not accept a connection within 2 s is retried elsewhere.
    timeout connect 2s
    # Request headers must arrive within 30 s; a request body may pause up to 60 s (the gateway
    # itself answers 400 RequestTimeout after 20 s without a byte, as S3 does).
    timeout http-request 30s
    timeout client 60s
    # A gateway may be silent this long: the end of a large upload (its last fsync and the
    # commit), or a request waiting for the database (the gateway answers 503 after 10 s).
    timeout server 120s
    timeout http-keep-alive 30s
    timeout queue 30s
    timeout check 2s

frontend s3
    bind 127.0.0.1:{ha["port"]}
    # The client's address for the gateways' audit trail (they trust it from 127.0.0.1 only:
    # ANDROMEDE_TRUSTED_PROXIES); whatever a client sent as X-Forwarded-For is replaced.
    http-request set-header X-Forwarded-For %[src]
    default_backend gateways

backend gateways
    balance roundrobin
    option httpchk GET {READY_PATH}
    http-check expect status 200
    # Checked every second: down after two failed checks, up again after two good ones. A
    # connection that live traffic finds refused counts as a failed check at once.
    default-server {SERVER_CHECKS}
    # A request that never reached a gateway, or that a gateway dropped without answering, is
    # sent again to another gateway: a gateway killed between requests costs clients nothing.
    # Only requests that fit in HAProxy's buffer (tune.bufsize, 16 KiB) can be sent again; a
    # larger upload cut off gets 502 and the client's own retry.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    # Not POSTs (CreateMultipartUpload, CompleteMultipartUpload, DeleteObjects), nor
    # conditional requests: sent twice, they would not answer as the first one did.
    http-request disable-l7-retry if METH_POST
    acl conditional req.hdr(if-none-match) -m found
    acl conditional req.hdr(if-match) -m found
    http-request disable-l7-retry if conditional
{servers}
"""


def haproxy_servers(socket_path: str) -> dict[str, str]:
    """HAProxy's view of the gateways: server name → status (UP, DOWN, ...)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(socket_path)
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    rows = csv.DictReader(data.decode().lstrip("# ").splitlines())
    return {
        row["svname"]: row["status"]
        for row in rows
        if row.get("pxname") == "gateways" and row["svname"] not in ("FRONTEND", "BACKEND")
    }


def start_haproxy(state: dict[str, Any], fresh: bool) -> None:
    ha = state["haproxy"]
    for attempt in range(3):
        Path(ha["config"]).write_text(haproxy_config(state))
        check = subprocess.run(
            [HAPROXY, "-c", "-q", "-f", ha["config"]], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise ClusterError(f"haproxy refused {ha['config']}:\n{check.stdout}{check.stderr}")
        Path(ha["socket"]).unlink(missing_ok=True)
        log = Path(ha["log"])
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", ha["config"]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        CHILDREN[proc.pid] = proc
        ha["pid"] = proc.pid
        deadline = time.monotonic() + 10
        while not Path(ha["socket"]).exists() and proc.poll() is None:
            if time.monotonic() > deadline:
                raise ClusterError(f"haproxy did not start; {log}:\n{tail(log)}")
            time.sleep(0.05)
        if proc.poll() is None:
            return
        if b"address already in use" in log.read_bytes()[offset:].lower() and fresh and attempt < 2:
            ha["port"] = free_port()
            continue
        raise ClusterError(f"haproxy exited; {log}:\n{tail(log)}")


def wait_haproxy_up(state: dict[str, Any], seconds: float = 30) -> None:
    ha = state["haproxy"]
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError):
            servers = haproxy_servers(ha["socket"])
            # "UP 1/2" is also how a server looks before its first check: wait for "UP".
            if servers and all(status == "UP" for status in servers.values()):
                return
        if time.monotonic() > deadline:
            raise ClusterError(
                f"HAProxy does not count every gateway up after {seconds:.0f} s "
                f"(its check: GET {READY_PATH} must answer 200); {ha['log']}:\n{tail(ha['log'])}"
            )
        time.sleep(0.2)


def stop_haproxy(ha: dict[str, Any]) -> None:
    pid: int | None = ha.get("pid")
    if pid and alive(pid, "haproxy"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if wait_gone([(pid, "haproxy")], 10):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
