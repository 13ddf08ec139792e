"""A local cluster started by ``scripts/cluster``: three gateways (two workers each) behind
HAProxy, on one PostgreSQL database and one Ceph pool.

One gateway is killed with SIGKILL (its ``serve`` process, its workers and its audit writer: the
whole process group) while client threads PUT and GET through HAProxy. Clients see no failure
(boto3's standard retries, HAProxy's own); every acknowledged PUT reads back; HAProxy's check
marks the gateway down; its job leases move to another gateway within a term and a beat; and
its audit trail verifies, on its disk and in the Ceph pool every gateway mirrors its chain to,
where every request a client got an answer to has its record.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from andromede.cli.client import AdminClient
from support import ceph
from support.postgres import PostgresUnavailable, find_binaries
from support.required import unavailable

pytestmark = [pytest.mark.ceph, pytest.mark.postgres]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cluster"
sys.path.insert(0, str(SCRIPT.parent))
from cluster_parts import haproxy_servers  # noqa: E402 - scripts/ is on the path now

TERM_S = 2.0  # ANDROMEDE_JOB_LEASE_SECONDS for the gateways
JOBS = {"key jobs", "lifecycle", "repair", "sweep"}
SLACK_S = 10.0  # process scheduling on a loaded machine; each bound is asserted below
CLIENTS = 4
BEFORE_KILL_S = 2.0
AFTER_KILL_S = 4.0
MiB = 1 << 20
BIG = 5 * MiB


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
        timeout=300,
    )


def require_parts() -> None:
    why = ceph.available()
    if why:
        unavailable("Ceph", why)
    try:
        find_binaries()
    except PostgresUnavailable as exc:
        unavailable("PostgreSQL", exc)
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        unavailable("HAProxy", "not installed (Debian's haproxy package)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``scripts/cluster start`` in a temporary DIR; its state file. Stopped and deleted
    (``stop --reset``) at the end."""
    require_parts()
    directory = tmp_path_factory.mktemp("cluster")
    started = run_script(
        "start", "--dir", str(directory), "--ceph-store", "memstore", "--workers", "2",
        ANDROMEDE_JOB_LEASE_SECONDS=str(TERM_S),
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads((directory / "cluster.json").read_text())
        state["start_output"] = started.stdout
        yield state
    finally:
        stopped = run_script("stop", "--dir", str(directory), "--reset")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def endpoint(state: dict[str, Any]) -> str:
    return f"http://127.0.0.1:{state['haproxy']['port']}"


def s3_client(state: dict[str, Any]) -> Any:
    """boto3 through HAProxy, with boto3's ordinary retries."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint(state),
        aws_access_key_id=state["operator"]["access_key"],
        aws_secret_access_key=state["operator"]["secret_key"],
        region_name="us-east-1",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def operator(state: dict[str, Any]) -> AdminClient:
    return AdminClient(
        endpoint(state), state["operator"]["access_key"], state["operator"]["secret_key"]
    )


def haproxy_view(state: dict[str, Any]) -> dict[str, str]:
    """HAProxy's check status of each gateway, from its stats socket."""
    return haproxy_servers(state["haproxy"]["socket"])


def holder_gateway(state: dict[str, Any], holder: str) -> str | None:
    """The gateway whose process group holds ``holder`` (``host:pid:random``)."""
    pid = int(holder.split(":")[1])
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return None
    return next((gw["name"] for gw in state["gateways"] if gw["pid"] == pgid), None)


def jobs(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job"]: job for job in operator(state).request("GET", "/v1/jobs")}


def body_for(key: str, size: int) -> bytes:
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class Load:
    """What the client threads did and saw."""

    bucket: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, str] = field(default_factory=dict)  # key: SHA-256 of the body
    failures: list[str] = field(default_factory=list)
    request_ids: set[str] = field(default_factory=set)  # every answer from a gateway
    ops: int = 0
    ops_after_kill: int = 0
    killed: bool = False

    def note_response(self, response_dict: dict[str, Any] | None = None, **_: Any) -> None:
        if response_dict is not None:
            request_id = response_dict["headers"].get("x-amz-request-id")
            if request_id:
                with self.lock:
                    self.request_ids.add(request_id)

    def count(self) -> None:
        with self.lock:
            self.ops += 1
            self.ops_after_kill += self.killed

    def run(self, state: dict[str, Any], n: int) -> None:
        """PUT small and 5 MiB objects and read back earlier ones, until told to stop."""
        client = s3_client(state)
        client.meta.events.register("response-received.s3", self.note_response)
        rng = random.Random(n)
        mine: list[str] = []
        i = 0
        while not self.stop.is_set():
            i += 1
            key = f"c{n}/{i}"
            data = body_for(key, BIG if i % 3 == 0 else rng.randint(1, 64 << 10))
            try:
                client.put_object(Bucket=self.bucket, Key=key, Body=data)
            except Exception as exc:  # every failure is what the test counts
                with self.lock:
                    self.failures.append(f"PUT {key}: {exc!r}")
                continue
            with self.lock:
                self.acked[key] = hashlib.sha256(data).hexdigest()
            mine.append(key)
            self.count()
            back = rng.choice(mine)
            buffer = io.BytesIO()
            try:
                # download_fileobj: boto3's transfer manager retries a body cut off mid-way.
                client.download_fileobj(self.bucket, back, buffer)
            except Exception as exc:
                with self.lock:
                    self.failures.append(f"GET {back}: {exc!r}")
                continue
            if hashlib.sha256(buffer.getvalue()).hexdigest() != self.acked[back]:
                with self.lock:
                    self.failures.append(f"GET {back}: wrong bytes")
            self.count()


@dataclass
class Kill:
    """What happened around the kill."""

    victim: dict[str, Any]
    load: Load
    orphaned: dict[str, int]  # job: epoch when killed
    down_after: float | None = None
    jobs_after: float | None = None
    jobs_then: dict[str, dict[str, Any]] = field(default_factory=dict)
    view_then: dict[str, str] = field(default_factory=dict)


def wait_for_leases(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + TERM_S + SLACK_S
    while True:
        held = jobs(state)
        if set(held) == JOBS and all(j["running"] for j in held.values()):
            return held
        assert time.monotonic() < deadline, held
        time.sleep(0.2)


@pytest.fixture(scope="module")
def killed(cluster: dict[str, Any]) -> Kill:
    """Client threads at work; the gateway holding the ``repair`` lease killed (SIGKILL to
    its process group) two seconds in; the load goes on a few seconds more."""
    held = wait_for_leases(cluster)
    victim_name = holder_gateway(cluster, held["repair"]["holder"])
    assert victim_name is not None, held  # a worker of one of the cluster's gateways
    victim = next(gw for gw in cluster["gateways"] if gw["name"] == victim_name)
    orphaned = {
        job: info["epoch"]
        for job, info in held.items()
        if holder_gateway(cluster, info["holder"]) == victim_name
    }
    load = Load("kill-" + secrets.token_hex(4))
    s3_client(cluster).create_bucket(Bucket=load.bucket)
    threads = [threading.Thread(target=load.run, args=(cluster, n)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    outcome = Kill(victim, load, orphaned)
    try:
        time.sleep(BEFORE_KILL_S)
        os.killpg(victim["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        load.killed = True
        watch_takeover(cluster, outcome, killed_at)
        time.sleep(max(0.0, killed_at + AFTER_KILL_S - time.monotonic()))
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=120)
    print(
        f"{load.ops} operations ({load.ops_after_kill} after the kill), "
        f"{len(load.acked)} objects; {victim_name} down in HAProxy after "
        f"{outcome.down_after} s, its jobs {sorted(orphaned)} taken over after "
        f"{outcome.jobs_after} s"
    )
    return outcome


def watch_takeover(cluster: dict[str, Any], outcome: Kill, killed_at: float) -> None:
    """Until HAProxy counts the victim down and its jobs run elsewhere (or the bounds pass)."""
    name = outcome.victim["name"]
    deadline = killed_at + TERM_S + TERM_S / 3 + SLACK_S
    while time.monotonic() < deadline:
        now = time.monotonic() - killed_at
        if outcome.down_after is None:
            outcome.view_then = haproxy_view(cluster)
            if outcome.view_then[name].startswith("DOWN"):
                outcome.down_after = round(now, 2)
        if outcome.jobs_after is None:
            current = jobs(cluster)
            moved = all(
                current[job]["running"]
                and holder_gateway(cluster, current[job]["holder"]) not in (None, name)
                for job in outcome.orphaned
            )
            if moved:
                outcome.jobs_after, outcome.jobs_then = round(now, 2), current
        if outcome.down_after is not None and outcome.jobs_after is not None:
            return
        time.sleep(0.1)


# --- the cluster as started ------------------------------------------------------------------
def test_start_prints_the_endpoint_and_status_sees_every_part(cluster: dict[str, Any]) -> None:
    out = cluster["start_output"]
    assert endpoint(cluster) in out
    assert cluster["operator"]["access_key"] in out
    assert cluster["operator"]["secret_key"] in out
    for gw in cluster["gateways"]:
        assert f"http://127.0.0.1:{gw['port']}  pid {gw['pid']}" in out
        assert gw["log"] in out
    status = run_script("status", "--dir", cluster["dir"], "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    seen = json.loads(status.stdout)
    assert sorted(seen["running"]) == sorted(
        ["haproxy", "ceph", "postgresql", *(gw["name"] for gw in cluster["gateways"])]
    )
    assert {gw["name"]: gw["haproxy_check"] for gw in seen["gateways"]} == dict.fromkeys(
        ("gw1", "gw2", "gw3"), "UP"
    )
    sites = {s["name"]: s for s in operator(cluster).request("GET", "/v1/sites")}
    assert sites["ceph-1"]["backend"] == "rados"
    assert sites["ceph-1"]["available"] is True


def test_every_gateway_serves_the_same_residency_key(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    """A residency report signed by one gateway verifies under the key any other serves."""
    env = {
        **os.environ,
        "ANDROMEDE_ACCESS_KEY": cluster["operator"]["access_key"],
        "ANDROMEDE_SECRET_KEY": cluster["operator"]["secret_key"],
    }

    def fetch(gw: dict[str, Any]) -> subprocess.Popen[bytes]:
        out = str(tmp_path / f"{gw['name']}.pub")
        gateway = f"http://127.0.0.1:{gw['port']}"
        argv = ["admin", "residency", "public-key", "--out", out, "--endpoint", gateway]
        return subprocess.Popen(
            [sys.executable, "-m", "andromede", *argv], env=env, stdout=subprocess.DEVNULL
        )

    fetches = [fetch(gw) for gw in cluster["gateways"]]
    assert [fetch.wait(timeout=60) for fetch in fetches] == [0, 0, 0]
    keys = {(tmp_path / f"{gw['name']}.pub").read_bytes() for gw in cluster["gateways"]}
    assert len(keys) == 1


# --- one gateway killed under load -----------------------------------------------------------
def test_no_client_operation_failed(killed: Kill) -> None:
    assert killed.load.failures == []
    assert killed.load.ops_after_kill > 0, "no client operation ran after the kill"


def test_every_acknowledged_put_reads_back(cluster: dict[str, Any], killed: Kill) -> None:
    client = s3_client(cluster)
    for key, digest in sorted(killed.load.acked.items()):
        data = client.get_object(Bucket=killed.load.bucket, Key=key)["Body"].read()
        assert hashlib.sha256(data).hexdigest() == digest, key


def test_haproxy_marks_the_dead_gateway_down(killed: Kill) -> None:
    # Checked every second, down after two failures: about 2 s.
    assert killed.down_after is not None, killed.view_then
    assert killed.down_after < 2 + 1 + SLACK_S
    others = {k: v for k, v in killed.view_then.items() if k != killed.victim["name"]}
    assert all(status.startswith("UP") for status in others.values()), killed.view_then


def test_the_dead_gateways_jobs_move_within_the_bound(
    cluster: dict[str, Any], killed: Kill
) -> None:
    assert killed.orphaned, "the victim held no lease"
    assert killed.jobs_after is not None, "its jobs were not taken over"
    # The bound (docs/architecture.md): its term and one beat of the others.
    assert killed.jobs_after < TERM_S + TERM_S / 3 + SLACK_S
    for job, epoch in killed.orphaned.items():
        now = killed.jobs_then[job]
        assert now["epoch"] == epoch + 1, now  # taken over, fenced
        assert holder_gateway(cluster, now["holder"]) not in (None, killed.victim["name"])


def trail_request_ids(trail: Path) -> set[str]:
    """The request ids recorded in a trail directory (a live one may end in half a line)."""
    ids = set()
    for segment in sorted(trail.glob("*.log")):
        data = segment.read_bytes()
        end = data.find(b"\0")
        for line in (data if end < 0 else data[:end]).splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if entry.get("type") == "request":
                    ids.add(entry["request_id"])
    return ids


def andromede(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "andromede", *args],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_the_dead_gateways_trail_verifies_on_its_disk(killed: Kill) -> None:
    verified = andromede("audit", "verify", "--data-dir", killed.victim["data_dir"], "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_every_answered_request_is_in_the_pool(
    cluster: dict[str, Any], killed: Kill, tmp_path: Path
) -> None:
    """Every gateway's chain is mirrored to the ``audit`` pool before a request is answered:
    the dead gateway's included, every request a client got an answer to is there."""
    ceph_conf = cluster["ceph"]
    exported = andromede(
        "audit", "export", str(tmp_path), "--ceph-conf", ceph_conf["conf"],
        "--pool", ceph_conf["audit_pool"], "--ceph-user", ceph_conf["user"],
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    # Each chain under the key its gateway holds (a private key PEM serves as well).
    keys = [f"--public-key={gw['data_dir']}/audit-signing.key" for gw in cluster["gateways"]]
    verified = andromede("audit", "verify", str(tmp_path), *keys, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    victim_trail = Path(killed.victim["data_dir"]) / "audit"
    chain = (victim_trail / "chain-id").read_text().strip()
    answered = killed.load.request_ids
    in_pool = {d.name: trail_request_ids(d) for d in tmp_path.iterdir() if d.is_dir()}
    assert len(in_pool) == len(cluster["gateways"])
    victims = answered & trail_request_ids(victim_trail)
    assert victims, "the victim answered no client request"
    assert victims <= in_pool[chain]
    missing = answered - set().union(*in_pool.values())
    assert not missing, sorted(missing)[:10]


def test_start_again_brings_the_dead_gateway_back(cluster: dict[str, Any], killed: Kill) -> None:
    again = run_script("start", "--dir", cluster["dir"], ANDROMEDE_JOB_LEASE_SECONDS=str(TERM_S))
    assert again.returncode == 0, again.stdout + again.stderr
    assert haproxy_view(cluster) == dict.fromkeys(("gw1", "gw2", "gw3"), "UP")
    client = s3_client(cluster)
    key = next(iter(killed.load.acked))
    assert client.get_object(Bucket=killed.load.bucket, Key=key)["Body"].read()
