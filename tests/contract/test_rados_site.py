"""What only a Ceph site does, on a real RADOS cluster: blobs striped over bounded objects,
ranges that touch only their stripes, interrupted writes swept, and a cluster that cannot be
reached, refuses the key or lacks the pool reported as such (the SiteBackend contract itself
runs on RADOS in ``test_site_backend.py``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from andromede.core import errors
from andromede.core.locations import RadosLocation
from andromede.dataplane.rados import HEADER, SEGMENT, STRIPE, RadosSite
from andromede.librados import OSD_OP_TIMEOUT_S
from support.ceph import CephCluster
from support.required import ceph_cluster

pytestmark = pytest.mark.ceph


@pytest.fixture
def site(ceph: CephCluster) -> RadosSite:
    location = RadosLocation("andromede", str(ceph.conf), ceph.user, uuid.uuid4().hex)
    return RadosSite("ceph-a", location)


def _io(site: RadosSite) -> Any:
    return site._cluster.ioctx(site.location.pool, site.location.namespace)


def _objects(site: RadosSite) -> list[str]:
    return sorted(o.key for o in _io(site).list_objects())


def _data(size: int) -> bytes:
    seed = hashlib.sha256(str(size).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def _read(site: RadosSite, blob_id: str, offset: int, length: int) -> bytes:
    return b"".join([chunk async for chunk in site.read(blob_id, offset, length)])


@pytest.mark.parametrize("size", [STRIPE - 1, STRIPE, STRIPE + 1, 2 * STRIPE + SEGMENT + 5])
async def test_large_blobs_are_striped_over_bounded_objects(site: RadosSite, size: int) -> None:
    data, blob = _data(size), "a" * 32
    writer = await site.create(blob)
    for i in range(0, size, 700_001):
        await writer.write(data[i : i + 700_001])
    assert blob not in _objects(site)  # stripes and the write's marker, no head yet
    assert _objects(site)
    await writer.commit()
    stripes = -(-size // STRIPE)
    assert _objects(site) == sorted([blob] + [f"{blob}.{n:x}" for n in range(1, stripes)])
    for oid in _objects(site):
        assert _io(site).stat(oid)[0] <= HEADER.size + STRIPE
    assert await site.size(blob) == size
    assert await _read(site, blob, 0, size) == data
    assert await _read(site, blob, STRIPE - 3, min(7, size - STRIPE + 3)) == data[STRIPE - 3 :][:7]


async def test_a_range_reads_only_its_stripes(site: RadosSite) -> None:
    size, blob = 3 * STRIPE, "b" * 32
    await site.put(blob, _data(size))
    _io(site).remove_object(f"{blob}.2")  # the third stripe is lost
    assert await _read(site, blob, STRIPE + 10, 1000) == _data(size)[STRIPE + 10 : STRIPE + 1010]
    assert await _read(site, blob, 0, 100) == _data(size)[:100]
    with pytest.raises(errors.DataCorrupted):
        await _read(site, blob, 2 * STRIPE + 10, 100)


async def test_pieces_and_transform_across_stripes(site: RadosSite) -> None:
    size, blob = 2 * STRIPE + 12345, "c" * 32
    data = _data(size)
    await site.put(blob, data)
    piece = 1_000_003
    got = [p async for p in site.read(blob, 17, size - 17, piece=piece, transform=lambda b: [b])]
    assert all(len(p) == piece for p in got[:-1])
    assert b"".join(got) == data[17:]


async def test_an_interrupted_write_is_invisible_and_swept(site: RadosSite) -> None:
    blob = "d" * 32
    writer = await site.create(blob)
    await writer.write(_data(3 * STRIPE))  # two stripes written, the head held back
    with pytest.raises(errors.BlobNotFound):
        await site.size(blob)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert [b async for b in site.list_blobs(later)] == []
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert await site.sweep_temporary(earlier) == 0  # recent: a write in progress
    assert await site.sweep_temporary(later) == 1
    assert _objects(site) == []
    with pytest.raises(FileNotFoundError):  # a swept write never becomes visible
        await writer.commit()
    assert _objects(site) == []


async def test_abort_removes_what_was_written(site: RadosSite) -> None:
    writer = await site.create("e" * 32)
    await writer.write(_data(2 * STRIPE + 1))
    await writer.abort()
    assert _objects(site) == []


async def test_delete_removes_every_stripe(site: RadosSite) -> None:
    await site.put("f" * 32, _data(2 * STRIPE + 1))
    await site.delete("f" * 32)
    assert _objects(site) == []


async def test_an_unreachable_cluster_is_down_within_the_probe_bound(
    ceph: CephCluster, tmp_path: Path
) -> None:
    nowhere = ceph.conf_without_cluster(tmp_path / "nowhere.conf")
    site = RadosSite("ceph-z", RadosLocation("andromede", str(nowhere), ceph.user))
    start = time.monotonic()
    with pytest.raises(OSError, match="ceph-z"):
        await site.usage()
    assert time.monotonic() - start < 10
    with pytest.raises(OSError, match=r"ceph-z|cannot reach"):
        await site.put("1" * 32, b"x")


async def test_bad_configurations_are_named(ceph: CephCluster, tmp_path: Path) -> None:
    missing = RadosSite("ceph-m", RadosLocation("no-such-pool", str(ceph.conf), ceph.user))
    with pytest.raises(OSError, match="no-such-pool"):
        await missing.check()
    wrong_key = tmp_path / "wrong.keyring"
    wrong_key.write_text(
        f"[client.{ceph.user}]\n\tkey = AQBVFxZpAAAAABAAnYm0tL6xV0uBuV7CmAHXjw==\n"
    )
    conf = tmp_path / "wrong.conf"
    conf.write_text(ceph.conf.read_text().replace(str(ceph.root / "client.keyring"),
                                                  str(wrong_key)))  # fmt: skip
    refused = RadosSite("ceph-k", RadosLocation("andromede", str(conf), ceph.user))
    with pytest.raises(OSError, match=r"refused|key"):
        await refused.check()
    bad_conf = RadosSite("ceph-c", RadosLocation("andromede", str(tmp_path / "none.conf")))
    with pytest.raises(OSError, match=r"none\.conf"):
        await bad_conf.check()


def _full(cluster: CephCluster) -> bool:
    """Whether the OSD map marks an OSD or a pool full."""
    osdmap = json.loads(cluster.ceph("osd", "dump", "--format", "json"))
    states = [state for osd in osdmap["osds"] for state in osd["state"]]
    flags = [pool.get("flags_names", "") for pool in osdmap["pools"]]
    return "full" in states or any("full" in f.split(",") for f in flags)


async def test_a_full_pool_refuses_writes_at_once_and_still_frees_space(
    tmp_path: Path,
) -> None:
    """A full cluster (its full ratio set below what it holds) answers a write with
    StorageFull (a 503 to the client) at once, not after the operation timeout, and removes
    still go through, so that the sweeper can free space. Its own cluster: the ratio is
    cluster-wide."""
    with ceph_cluster(tmp_path / "full") as cluster:
        location = RadosLocation("andromede", str(cluster.conf), cluster.user)
        site = RadosSite("ceph-full", location)
        await site.put("a" * 32, _data(2 * STRIPE + 1))
        for ratio, value in [("nearfull", "0.0001"), ("backfillfull", "0.0002"),
                             ("full", "0.0003")]:  # fmt: skip
            cluster.ceph("osd", f"set-{ratio}-ratio", value)
        deadline = time.monotonic() + 60
        while not _full(cluster):
            assert time.monotonic() < deadline, "the OSD never reported itself full"
            await asyncio.sleep(0.2)
        for blob, data in [("b" * 32, b"small"), ("c" * 32, _data(STRIPE + 1))]:
            start = time.monotonic()
            with pytest.raises(errors.StorageFull):
                await site.put(blob, data)
            assert time.monotonic() - start < OSD_OP_TIMEOUT_S / 3
        assert not any(o.startswith(("b", "c")) for o in _objects(site))
        await site.delete("a" * 32)
        assert _objects(site) == []
