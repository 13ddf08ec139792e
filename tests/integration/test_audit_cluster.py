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
