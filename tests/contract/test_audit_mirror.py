"""The trail mirrored to a real Ceph pool (a cluster's gateways): every published group is in
the pool, byte for byte, before it counts; the pool alone verifies once the gateway's disk is
gone; a mirror that lags behind the disk (a death between the two writes) is caught up at the
next start; a mirror that cannot be written publishes nothing."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.audit.chain import ChainWriter, TrailConfig
from andromede.audit.mirror import RadosMirror, export
from andromede.cli.audit_chains import verify_chains
from andromede.core.audit import AuditRecord
from andromede.core.locations import RadosLocation
from support.ceph import CephCluster

pytestmark = pytest.mark.ceph


@pytest.fixture
def mirror(ceph: CephCluster) -> RadosMirror:
    return RadosMirror(RadosLocation("andromede", str(ceph.conf), ceph.user, uuid.uuid4().hex))


def writer(directory: Path, key: Ed25519PrivateKey, mirror: RadosMirror | None) -> ChainWriter:
    chain = ChainWriter(TrailConfig(directory, segment_bytes=16 * 1024, mirror=mirror), key)
    chain.open()
    return chain


def bodies(first: int, count: int) -> list[str]:
    return [
        fmt.dumps(
            AuditRecord(
                "request", dt.datetime.now(dt.UTC), "s3", "PutObject", request_id=f"req-{n}",
                tenant="acme", bucket="ledger", key=f"k/{n:05d}-" + "x" * 200, status=200,
            ).as_dict()
        )
        for n in range(first, first + count)
    ]  # fmt: skip


def test_every_group_is_in_the_pool_and_verifies_without_the_disk(
    mirror: RadosMirror, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    chain = writer(tmp_path / "gw-a", key, mirror)
    for n in range(0, 200, 10):  # several segments of 16 KiB
        chain.append(bodies(n, 10))
    chain.checkpoint("shutdown")
    chain.close()
    other = writer(tmp_path / "gw-b", Ed25519PrivateKey.generate(), mirror)
    other.append(bodies(1000, 3))
    other.close()
    local = {p.name: p.read_bytes() for _, p in seg.list_segments(tmp_path / "gw-a")}
    assert len(local) > 3
    shutil.rmtree(tmp_path / "gw-a")  # the gateway's host is lost
    shutil.rmtree(tmp_path / "gw-b")
    counts = export(mirror, tmp_path / "export")
    assert sorted(counts.values()) == [1, len(local)]
    exported = next(d for d in (tmp_path / "export").iterdir() if len(list(d.glob("*.log"))) > 1)
    for name, data in local.items():  # the live segment's preallocated zeros aside
        assert (exported / name).read_bytes() == data[: (exported / name).stat().st_size]
        assert not data[(exported / name).stat().st_size :].strip(b"\0")
    results = verify_chains(tmp_path / "export", [])
    assert [(r is not None and r.intact, why) for _, r, why in results] == [(True, None)] * 2
    records = sum(r.facts.records for _, r, _ in results if r is not None)
    assert records == 203
    # An auditor who holds only gateway A's key refuses the chain signed by another key.
    only_a = verify_chains(tmp_path / "export", [key.public_key()])
    assert sorted(why is None for _, _, why in only_a) == [False, True]


def test_a_lagging_mirror_is_caught_up_at_start(mirror: RadosMirror, tmp_path: Path) -> None:
    key, directory = Ed25519PrivateKey.generate(), tmp_path / "gw"
    chain = writer(directory, key, mirror)
    chain.append(bodies(0, 5))
    chain.close()
    # Written and synced on the disk, never reached the pool (a death between the two).
    unmirrored = writer(directory, key, None)
    unmirrored.append(bodies(5, 60))
    unmirrored.close()
    writer(directory, key, mirror).close()  # the next start
    export(mirror, tmp_path / "export")
    ((_, report, why),) = verify_chains(tmp_path / "export", [key.public_key()])
    assert why is None
    assert report is not None
    assert report.intact, report.as_dict()
    assert report.facts.records == 65


def test_a_mirror_that_cannot_be_written_publishes_nothing(
    ceph: CephCluster, tmp_path: Path
) -> None:
    conf = ceph.conf_without_cluster(tmp_path / "gone.conf")
    key = Ed25519PrivateKey.generate()
    with pytest.raises(OSError, match=r"cannot reach the Ceph cluster"):
        writer(tmp_path / "gw", key, RadosMirror(RadosLocation("andromede", str(conf))))
