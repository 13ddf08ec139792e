"""A throwaway Ceph cluster (RADOS only) for tests, development and benchmarks.

``start_ceph(root)`` bootstraps Debian's Ceph by hand in ``root``: one monitor and ``osds``
OSDs (memstore by default: objects in RAM, a start in a few seconds; ``store="bluestore"`` on
sparse files), no manager, no gateway, cephx on, loopback only, on free ports, so that two
clusters can stand for two data centres. It makes the pools asked for (``size`` replicas each)
and a client key restricted to them. :meth:`CephCluster.stop_osd` / ``start_osd`` stop and start
one OSD (a failed disk); :meth:`CephCluster.stop` stops the whole cluster (a lost data centre)
and :meth:`CephCluster.start` starts it again (memstore OSDs come back empty: use bluestore
where the data must survive).

Run as a script (``python tests/support/ceph.py DIR [--osds N] [--pool NAME]``), it starts a
cluster and prints its ``ceph.conf``; ``--stop DIR`` stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

_DAEMONS = ("ceph-mon", "ceph-osd", "ceph-authtool", "monmaptool")


class CephUnavailable(RuntimeError):
    """Ceph's daemons or python3-rados are not installed here."""


def available() -> str | None:
    """Why a cluster cannot be started here (None: it can)."""
    missing = [tool for tool in _DAEMONS if shutil.which(tool) is None]
    if missing:
        return "not installed: " + ", ".join(missing)
    try:
        import rados  # noqa: F401
    except ImportError:
        return "python3-rados is not importable (scripts/install-deps makes it so)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_range(width: int = 40) -> int:
    """The first of ``width`` consecutive ports free now (the OSDs bind in it)."""
    for _ in range(200):
        base = _free_port()
        if base + width >= 65000:
            continue
        ok = True
        for port in range(base, base + width):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range for Ceph")


@dataclass
class CephCluster:
    """A running cluster; ``conf`` is what clients pass as ``--ceph-conf``."""

    root: Path
    osds: int
    pools: dict[str, int]
    user: str = "andromede"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        """The cluster's ``ceph.conf`` (the client keyring is named in it)."""
        return self.root / "ceph.conf"

    @property
    def admin_conf(self) -> Path:
        """A ``ceph.conf`` whose keyring is client.admin's."""
        return self.root / "admin" / "ceph.conf"

    # --- daemons --------------------------------------------------------------------------
    def _spawn(self, name: str, *argv: str) -> None:
        log = (self.root / "log" / f"{name}.stdout").open("ab")
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        (self.root / "run" / f"{name}.pid").write_text(str(proc.pid))

    def _kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.kill()
        proc.wait()

    def ceph(self, *args: str, timeout: float = 30) -> str:
        """Run the ``ceph`` tool as client.admin; its stdout."""
        out = subprocess.run(
            ["ceph", "-c", str(self.admin_conf), "--connect-timeout", "20", *args],
            check=True, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        return out.stdout

    def start_mon(self) -> None:
        self._spawn("mon.a", "ceph-mon", "-c", str(self.admin_conf), "-i", "a", "-f")
        deadline = time.monotonic() + 60
        while True:
            try:
                self.ceph("mon", "stat", timeout=10)
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ceph-mon did not come up; see {self.root}/log") from None
                time.sleep(0.3)

    def start_osd(self, i: int) -> None:
        """Start OSD ``i`` (again) and wait until the cluster counts it up."""
        self._spawn(f"osd.{i}", "ceph-osd", "-c", str(self.admin_conf), "-i", str(i), "-f")
        self._wait_osds(lambda up: i in up)

    def stop_osd(self, i: int) -> None:
        """Kill OSD ``i`` and mark it down at once (as the monitor would after its grace)."""
        self._kill(f"osd.{i}")
        self.ceph("osd", "down", str(i))

    def _wait_osds(self, ready: object) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                dump = json.loads(self.ceph("osd", "dump", "-f", "json", timeout=10))
                up = {o["osd"] for o in dump["osds"] if o["up"]}
                if ready(up):  # type: ignore[operator]
                    return
            time.sleep(0.3)
        raise RuntimeError(f"OSDs did not come up; see {self.root}/log")

    def stop(self) -> None:
        """Stop every daemon (SIGKILL): the whole cluster is gone until :meth:`start`."""
        for name in list(self.procs):
            self._kill(name)

    def start(self) -> None:
        """Start the monitor and every OSD again."""
        self.start_mon()
        for i in range(self.osds):
            self._spawn(f"osd.{i}", "ceph-osd", "-c", str(self.admin_conf), "-i", str(i), "-f")
        self._wait_osds(lambda up: len(up) >= self.osds)
        if (self.root / "mgr" / "ceph-x" / "keyring").exists():
            self._spawn("mgr.x", "ceph-mgr", "-c", str(self.admin_conf), "-i", "x", "-f")

    def conf_without_cluster(self, path: Path) -> Path:
        """A copy of :attr:`conf` whose monitor address answers nothing (a cluster out of
        reach), written at ``path``."""
        lines = [
            "mon_host = v2:127.0.0.1:9" if line.startswith("mon_host") else line
            for line in self.conf.read_text().splitlines()
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def remove(self) -> None:
        """Stop and delete everything."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _write_conf(root: Path, fsid: str, mon: int, ms: int, store: str, keyring: Path) -> str:
    return f"""[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon}
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_msgr1 = false
ms_bind_port_min = {ms}
ms_bind_port_max = {ms + 39}
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
keyring = {keyring}
run_dir = {root}/run
admin_socket = {root}/run/$cluster-$name.asok
log_file = {root}/log/$cluster-$name.log
mon_cluster_log_file = {root}/log/cluster.log
crash_dir = {root}/crash
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
mon_allow_pool_delete = true
osd_objectstore = {store}
osd_heartbeat_grace = 4
osd_heartbeat_interval = 1
mon_osd_down_out_interval = 0

[mon]
mgr_initial_modules = iostat
mon_data = {root}/mon/$cluster-$id
keyring = {root}/mon/$cluster-$id/keyring
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[mgr]
mgr_data = {root}/mgr/$cluster-$id
keyring = {root}/mgr/$cluster-$id/keyring
mgr_stats_period = 1

[osd]
osd_data = {root}/osd/$cluster-$id
keyring = {root}/osd/$cluster-$id/keyring
osd_memory_target = 536870912
memstore_device_bytes = 2147483648
bluestore_block_path = {root}/osd/$cluster-$id/block.img
bluestore_block_create = true
bluestore_block_size = 10737418240
bluestore_fsck_on_mkfs = false
"""


def start_ceph(
    root: Path,
    *,
    osds: int = 1,
    pools: dict[str, int] | None = None,
    store: str = "memstore",
    mgr: bool = False,
) -> CephCluster:
    """Bootstrap and start a cluster in ``root`` (which must not hold one already).

    ``pools``: name → replica count (default ``{"andromede": 1}``). ``mgr``: run a manager
    too (~280 MiB more): only with one do clients get the cluster's usage statistics."""
    why = available()
    if why:
        raise CephUnavailable(why)
    pools = pools or {"andromede": 1}
    root = root.resolve()
    for sub in ("log", "run", "mon/ceph-a", "crash", "admin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    mon, ms = _free_port(), _free_range()
    admin_keyring = root / "admin.keyring"
    cluster_conf = root / "admin" / "ceph.conf"
    cluster_conf.write_text(_write_conf(root, fsid, mon, ms, store, admin_keyring))
    cluster = CephCluster(root, osds, dict(pools))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    mon_keyring = root / "mon.keyring"
    run("ceph-authtool", "--create-keyring", str(mon_keyring), "--gen-key", "-n", "mon.",
        "--cap", "mon", "allow *")  # fmt: skip
    run("ceph-authtool", "--create-keyring", str(admin_keyring), "--gen-key", "-n",
        "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *",
        "--cap", "mgr", "allow *")  # fmt: skip
    run("ceph-authtool", str(mon_keyring), "--import-keyring", str(admin_keyring))
    run("monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{mon}]",
        str(root / "monmap"))  # fmt: skip
    run("ceph-mon", "-c", str(cluster_conf), "--mkfs", "-i", "a", "--monmap",
        str(root / "monmap"), "--keyring", str(mon_keyring))  # fmt: skip
    cluster.start_mon()
    for i in range(osds):
        d = root / "osd" / f"ceph-{i}"
        d.mkdir(parents=True)
        key = run("ceph-authtool", "--gen-print-key").stdout.decode().strip()
        secret = d / "new.json"
        secret.write_text(json.dumps({"cephx_secret": key}))
        osd_uuid = str(uuid.uuid4())
        cluster.ceph("osd", "new", osd_uuid, str(i), "-i", str(secret))
        secret.unlink()
        run("ceph-osd", "-c", str(cluster_conf), "-i", str(i), "--mkfs", "--key", key,
            "--osd-uuid", osd_uuid)  # fmt: skip
        (d / "keyring").write_text(f"[osd.{i}]\n\tkey = {key}\n")
        cluster._spawn(f"osd.{i}", "ceph-osd", "-c", str(cluster_conf), "-i", str(i), "-f")
    cluster._wait_osds(lambda up: len(up) >= osds)
    if mgr:
        (root / "mgr" / "ceph-x").mkdir(parents=True)
        cluster.ceph("auth", "get-or-create", "mgr.x", "mon", "allow profile mgr", "osd",
                     "allow *", "-o", str(root / "mgr" / "ceph-x" / "keyring"))  # fmt: skip
        cluster._spawn("mgr.x", "ceph-mgr", "-c", str(cluster_conf), "-i", "x", "-f")
    for name, size in pools.items():
        make_pool(cluster, name, size)
    caps = ", ".join(f"allow rw pool={name}" for name in pools) or "allow rw"
    keyring = root / "client.keyring"
    cluster.ceph("auth", "get-or-create", f"client.{cluster.user}", "mon", "allow r",
                 "osd", caps, "-o", str(keyring))  # fmt: skip
    conf = _write_conf(root, fsid, mon, ms, store, keyring)
    (root / "ceph.conf").write_text(conf)
    return cluster


def make_pool(cluster: CephCluster, name: str, size: int) -> None:
    """Create pool ``name`` with ``size`` replicas (``min_size`` 1: writes go on with one
    replica left, as a test of a stopped OSD wants)."""
    cluster.ceph("osd", "pool", "create", name, "8", "8")
    cluster.ceph("osd", "pool", "set", name, "size", str(size), "--yes-i-really-mean-it")
    cluster.ceph("osd", "pool", "set", name, "min_size", "1")
    cluster.ceph("osd", "pool", "application", "enable", name, "andromede")
    cluster.pools[name] = size


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--osds", type=int, default=1)
    parser.add_argument("--pool", action="append", default=[], help="NAME or NAME=SIZE")
    parser.add_argument("--store", default="memstore", choices=("memstore", "bluestore"))
    parser.add_argument("--stop", action="store_true", help="stop the cluster in ROOT")
    args = parser.parse_args(argv)
    if args.stop:
        for pidfile in (args.root / "run").glob("*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError, OSError):
                pid = int(pidfile.read_text())
                # Only a daemon of this cluster: after a reboot the number may be anyone's.
                if str(args.root.resolve()) in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
            pidfile.unlink()
        return 0
    pools = {}
    for spec in args.pool or ["andromede"]:
        name, _, size = spec.partition("=")
        pools[name] = int(size or 1)
    cluster = start_ceph(args.root, osds=args.osds, pools=pools, store=args.store)
    print(cluster.conf)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
