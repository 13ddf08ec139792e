"""The audit trail of a cluster's gateways (``ANDROMEDE_AUDIT_RADOS``): each request's record
is in the Ceph pool before its response. Two gateways write; one is killed (``kill -9``) and
its whole data dir deleted, as a lost host; ``andromede audit export`` then copies both chains
out of the pool and ``andromede audit verify`` checks them in one run, every acknowledged
request's record included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from andromede.core.locations import RadosLocation
from support.ceph import CephCluster
from support.server import running_server

pytestmark = pytest.mark.ceph


def andromede(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "andromede", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_records_survive_the_loss_of_a_gateway_and_its_disk(
    ceph: CephCluster, tmp_path: Path
) -> None:
    namespace = uuid.uuid4().hex
    mirror = str(RadosLocation("andromede", str(ceph.conf), ceph.user, namespace))
    keys: dict[str, list[str]] = {}
    for name in ("gw-a", "gw-b"):
        data = tmp_path / name
        with running_server(data, workers=2, ANDROMEDE_AUDIT_RADOS=mirror) as server:
            s3 = server.client()
            bucket = f"{name}-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=bucket)
            keys[name] = [f"doc-{i}" for i in range(12)]
            for key in keys[name]:
                s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
            server.stop(kill=True)  # no shutdown checkpoint, no goodbye
        shutil.rmtree(data)  # the host and its disk are gone
    export = tmp_path / "export"
    exported = andromede(
        "audit", "export", str(export), "--ceph-conf", str(ceph.conf), "--pool", "andromede",
        "--ceph-user", ceph.user, "--namespace", namespace,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "2 chain(s)" in exported.stdout
    verified = andromede("audit", "verify", str(export), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["intact"] is True
    assert len(report["chains"]) == 2
    text = "".join(p.read_text() for p in export.rglob("*.log"))
    for name, names in keys.items():
        for key in names:
            assert f'"key":"{key}"' in text, (name, key)
    human = andromede("audit", "verify", str(export))
    assert human.returncode == 0
    assert "2 chain(s): INTACT" in human.stdout


def test_any_gateway_reads_every_gateways_records(ceph: CephCluster, tmp_path: Path) -> None:
    """Two gateways write; either one's ``admin audit query`` and ``export`` show both chains'
    records, each chain in its own order, and paging with ``--after`` loses and repeats
    nothing."""
    namespace = uuid.uuid4().hex
    mirror = str(RadosLocation("andromede", str(ceph.conf), ceph.user, namespace))
    env = {"ANDROMEDE_AUDIT_RADOS": mirror}
    with (
        running_server(tmp_path / "gw-a", **env) as a,
        running_server(tmp_path / "gw-b", **env) as b,
    ):
        buckets = {}
        for name, server in (("a", a), ("b", b)):
            buckets[name] = f"{name}-{uuid.uuid4().hex[:8]}"
            s3 = server.client()
            s3.create_bucket(Bucket=buckets[name])
            for i in range(6):
                s3.put_object(Bucket=buckets[name], Key=f"k{i}", Body=b"x")
        # Through gateway A, the records gateway B made.
        seen = json.loads(
            a.cli("admin", "audit", "query", "--bucket", buckets["b"], "--json").stdout
        )
        puts = [r for r in seen["records"] if r["operation"] == "PutObject"]
        assert [r["key"] for r in puts] == [f"k{i}" for i in range(6)]
        assert len({r["chain"] for r in seen["records"]}) == 1
        exported = [
            json.loads(line)
            for line in b.cli("admin", "audit", "export").stdout.splitlines()
            if line
        ]
        chains: dict[str, list[int]] = {}
        for record in exported:
            chains.setdefault(record["chain"], []).append(record["seq"])
        assert len(chains) == 2
        assert all(seqs == sorted(seqs) for seqs in chains.values())
        mine = {r["bucket"] for r in exported if r.get("operation") == "PutObject"}
        assert set(buckets.values()) <= mine
        # Page by page through A, five at a time: the same records, once each.
        paged: list[tuple[str, int]] = []
        after: list[str] = []
        for _ in range(200):
            page = json.loads(a.cli("admin", "audit", "query", "--limit", "5", "--json",
                                    *after).stdout)  # fmt: skip
            paged += [(r["chain"], r["seq"]) for r in page["records"]]
            if page.get("next_after") is None:
                break
            after = ["--after", page["next_after"]]
        until_export = {(r["chain"], r["seq"]) for r in exported}
        assert len(paged) == len(set(paged))
        assert until_export <= set(paged)
