"""The SiteBackend contract, on every implementation: a local directory (on a disk
filesystem, where large blobs go through O_DIRECT, and on tmpfs, where they cannot), a Ceph
pool (a real RADOS cluster; each test in its own namespace), and the in-memory site that
service tests run on, so that what those tests show holds on real sites.

Each backend comes with the same damage a test can do to it (a lost, truncated or bit-rotted
blob, a damaged format header): files changed on disk for a local site, the fault methods of
the memory site.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from andromede.core import errors
from andromede.core.locations import RadosLocation
from andromede.dataplane.local import ALIGN, HEADER_SIZE, STAGE, LocalSite
from andromede.dataplane.memory import MemorySite
from andromede.dataplane.rados import HEADER as RADOS_HEADER
from andromede.dataplane.rados import RadosSite
from andromede.ports import SiteBackend
from support.ceph import CephCluster

try:
    from rados import WriteOpCtx
except ImportError:  # Ceph's tests skip (or fail under CI) in the fixture
    WriteOpCtx = None

SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, STAGE - 1, STAGE, STAGE + 1, 3 * STAGE + 4321]


def _roots(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    yield "disk", tmp_path / "disk"
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        yield "tmpfs", shm


class Damage:
    """What a test can do to a site behind its back, and what it can see of it."""

    site: SiteBackend

    def leftovers(self) -> list[str]:
        """Uncommitted writes the site still holds."""
        raise NotImplementedError

    def lose(self, blob_id: str) -> None:
        raise NotImplementedError

    def truncate(self, blob_id: str, size: int) -> None:
        """Keep ``size`` data bytes."""
        raise NotImplementedError

    def flip(self, blob_id: str, offset: int) -> None:
        """Flip a bit of data byte ``offset``."""
        raise NotImplementedError

    def damage_header(self, blob_id: str) -> None:
        raise NotImplementedError

    def backdate_pending(self, blob_id: str, when: dt.datetime) -> None:
        """Make a write in progress look last written at ``when``."""
        raise NotImplementedError


@dataclass
class LocalDamage(Damage):
    site: LocalSite

    def leftovers(self) -> list[str]:
        return os.listdir(os.path.join(self.site.root, "tmp"))

    def lose(self, blob_id: str) -> None:
        os.unlink(self.site.blob_path(blob_id))

    def truncate(self, blob_id: str, size: int) -> None:
        os.truncate(self.site.blob_path(blob_id), HEADER_SIZE + size)

    def flip(self, blob_id: str, offset: int) -> None:
        with open(self.site.blob_path(blob_id), "r+b") as fh:
            fh.seek(HEADER_SIZE + offset)
            byte = fh.read(1)
            fh.seek(-1, os.SEEK_CUR)
            fh.write(bytes([byte[0] ^ 0x40]))

    def damage_header(self, blob_id: str) -> None:
        with open(self.site.blob_path(blob_id), "r+b") as fh:
            fh.write(b"XXXXXXXX")

    def backdate_pending(self, blob_id: str, when: dt.datetime) -> None:
        stamp = when.timestamp()
        os.utime(os.path.join(self.site.root, "tmp", blob_id + ".part"), (stamp, stamp))


@dataclass
class MemoryDamage(Damage):
    site: MemorySite

    def leftovers(self) -> list[str]:
        return list(self.site.pending)

    def lose(self, blob_id: str) -> None:
        self.site.lose(blob_id)

    def truncate(self, blob_id: str, size: int) -> None:
        self.site.truncate(blob_id, size)

    def flip(self, blob_id: str, offset: int) -> None:
        self.site.flip(blob_id, offset)

    def damage_header(self, blob_id: str) -> None:
        self.site.damage_header(blob_id)

    def backdate_pending(self, blob_id: str, when: dt.datetime) -> None:
        self.site.pending[blob_id].touched = when


@dataclass
class RadosDamage(Damage):
    """Damage done with librados directly (the site's own connection and namespace)."""

    site: RadosSite

    @property
    def io(self) -> Any:
        return self.site._cluster.ioctx(self.site.location.pool, self.site.location.namespace)

    def leftovers(self) -> list[str]:
        return sorted(o.key for o in self.io.list_objects() if "." in o.key)

    def lose(self, blob_id: str) -> None:
        self.io.remove_object(blob_id)

    def truncate(self, blob_id: str, size: int) -> None:
        self.io.trunc(blob_id, RADOS_HEADER.size + size)

    def flip(self, blob_id: str, offset: int) -> None:
        pos = RADOS_HEADER.size + offset
        byte = self.io.read(blob_id, 1, pos)
        self.io.write(blob_id, bytes([byte[0] ^ 0x40]), pos)

    def damage_header(self, blob_id: str) -> None:
        self.io.write(blob_id, b"XXXXXXXX", 0)

    def backdate_pending(self, blob_id: str, when: dt.datetime) -> None:
        io = self.io
        for oid in [o.key for o in io.list_objects() if o.key.startswith(blob_id + ".")]:
            data = io.read(oid, 64 << 20)
            with WriteOpCtx() as op:
                op.write_full(data)
                io.operate_write_op(op, oid, mtime=int(when.timestamp()))


@pytest.fixture(params=["disk", "tmpfs", "memory", pytest.param("rados", marks=pytest.mark.ceph)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Damage]:
    if request.param == "memory":
        yield MemoryDamage(MemorySite("s1"))
        return
    if request.param == "rados":
        cluster: CephCluster = request.getfixturevalue("ceph")
        namespace = uuid.uuid4().hex
        yield RadosDamage(RadosSite("s1", RadosLocation("andromede", str(cluster.conf),
                                                        cluster.user, namespace)))  # fmt: skip
        return
    roots = dict(_roots(tmp_path))
    if request.param not in roots:
        pytest.skip(f"no {request.param} filesystem here")
    base = roots[request.param]
    root = base / f"andromede-site-{os.getpid()}-{tmp_path.name}"
    yield LocalDamage(LocalSite("s1", str(root)))
    if request.param == "tmpfs":
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def site(backend: Damage) -> SiteBackend:
    return backend.site


def _data(size: int) -> bytes:
    seed = hashlib.sha256(str(size).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def _read_all(site: SiteBackend, blob_id: str, offset: int, length: int) -> bytes:
    return b"".join([chunk async for chunk in site.read(blob_id, offset, length)])


@pytest.mark.parametrize("size", SIZES)
async def test_streamed_blob_round_trip(backend: Damage, size: int) -> None:
    site = backend.site
    data = _data(size)
    writer = await site.create("a" * 32)
    for i in range(0, size, 300_000):  # uneven pieces across the staging boundary
        await writer.write(data[i : i + 300_000])
    await writer.commit()
    assert await _read_all(site, "a" * 32, 0, size) == data
    assert await site.size("a" * 32) == size
    if size > 10:
        assert await _read_all(site, "a" * 32, 5, size - 10) == data[5:-5]
    assert backend.leftovers() == []


@pytest.mark.parametrize("size", [0, 1, ALIGN + 1, 200_000])
async def test_put_small_blob(site: SiteBackend, size: int) -> None:
    data = _data(size)
    await site.put("b" * 32, data)
    assert await _read_all(site, "b" * 32, 0, size) == data
    assert await site.size("b" * 32) == size


async def test_read_in_pieces_through_a_transform(site: SiteBackend) -> None:
    data = _data(10_000)
    await site.put("1" * 32, data)

    def upper_half(piece: bytes) -> list[bytes]:
        return [piece[: len(piece) // 2], piece[len(piece) // 2 :]]

    pieces = [p async for p in site.read("1" * 32, 100, 2500, piece=1000, transform=upper_half)]
    assert [len(p) for p in pieces] == [500, 500, 500, 500, 250, 250]
    assert b"".join(pieces) == data[100:2600]


async def test_uncommitted_blob_is_invisible_and_abort_cleans_up(backend: Damage) -> None:
    site = backend.site
    writer = await site.create("c" * 32)
    await writer.write(_data(STAGE + 10))
    with pytest.raises(errors.BlobNotFound):
        await _read_all(site, "c" * 32, 0, 1)
    with pytest.raises(errors.BlobNotFound):
        await site.size("c" * 32)
    await writer.abort()
    await writer.abort()  # twice is fine
    assert backend.leftovers() == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert [b async for b in site.list_blobs(later)] == []


async def test_a_commit_replaces_the_blob_whole(site: SiteBackend) -> None:
    await site.put("2" * 32, b"old bytes, longer than the new")
    writer = await site.create("2" * 32)
    await writer.write(b"new")
    assert await _read_all(site, "2" * 32, 0, 3) == b"old"  # not visible before the commit
    await writer.commit()
    assert await site.size("2" * 32) == 3
    assert await _read_all(site, "2" * 32, 0, 3) == b"new"


async def test_a_taken_id_is_refused_to_put(site: SiteBackend) -> None:
    await site.put("3" * 32, b"first")
    with pytest.raises(FileExistsError):
        await site.put("3" * 32, b"second")
    assert await _read_all(site, "3" * 32, 0, 5) == b"first"


async def test_missing_blobs_are_not_found(backend: Damage) -> None:
    site = backend.site
    with pytest.raises(errors.BlobNotFound):
        await _read_all(site, "4" * 32, 0, 1)
    with pytest.raises(errors.BlobNotFound):
        await site.size("4" * 32)
    await site.put("4" * 32, b"here")
    backend.lose("4" * 32)
    with pytest.raises(errors.BlobNotFound):
        await _read_all(site, "4" * 32, 0, 4)


async def test_damaged_blobs_are_never_served(backend: Damage) -> None:
    site = backend.site
    await site.put("d" * 32, b"hello world")
    backend.damage_header("d" * 32)
    with pytest.raises(errors.DataCorrupted):
        await _read_all(site, "d" * 32, 0, 11)
    await site.put("e" * 32, b"hello world")
    backend.truncate("e" * 32, 3)
    with pytest.raises(errors.DataCorrupted):
        await _read_all(site, "e" * 32, 0, 11)
    assert await _read_all(site, "e" * 32, 0, 3) == b"hel"


async def test_rotten_bytes_are_served_as_stored(backend: Damage) -> None:
    """A site checks its own format, not the data: bit rot is for the layers above (frame
    checksums, the envelope's tags) to catch."""
    site = backend.site
    await site.put("5" * 32, b"hello world")
    backend.flip("5" * 32, 0)
    assert await _read_all(site, "5" * 32, 0, 11) == b"(ello world"


async def test_delete_list_and_sweep(backend: Damage) -> None:
    site = backend.site
    await site.put("f" * 32, b"x")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert [b async for b in site.list_blobs(later)] == ["f" * 32]
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert [b async for b in site.list_blobs(earlier)] == []
    await site.delete("f" * 32)
    await site.delete("f" * 32)  # missing is fine
    assert [b async for b in site.list_blobs(later)] == []
    writer = await site.create("0" * 32)
    await writer.write(b"partial")
    assert await site.sweep_temporary(earlier) == 0
    assert await site.sweep_temporary(later) == 1
    assert backend.leftovers() == []
    with pytest.raises(FileNotFoundError):  # a swept write never appears
        await writer.commit()
    await writer.abort()
    assert [b async for b in site.list_blobs(later)] == []


async def test_a_blob_is_aged_from_its_commit(backend: Damage) -> None:
    """The sweeper takes an unnamed blob older than its grace for an orphan: a body whose
    last byte came long before its commit must count as new once committed."""
    site = backend.site
    writer = await site.create("6" * 32)
    await writer.write(b"written long ago")
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    backend.backdate_pending("6" * 32, an_hour_ago)
    assert await site.sweep_temporary(an_hour_ago + dt.timedelta(minutes=1)) == 1
    writer = await site.create("7" * 32)
    # Exactly one staging buffer with the local header: nothing is left to write at commit.
    await writer.write(_data(STAGE - HEADER_SIZE))
    backend.backdate_pending("7" * 32, an_hour_ago)
    await writer.commit()
    assert [b async for b in site.list_blobs(an_hour_ago + dt.timedelta(minutes=1))] == []


async def test_blob_ids_are_never_paths(site: SiteBackend) -> None:
    for bad in ("../../etc/passwd", "A" * 32, "a" * 31, ""):
        with pytest.raises(ValueError, match="invalid blob id"):
            await site.create(bad)
        with pytest.raises(ValueError, match="invalid blob id"):
            await site.put(bad, b"x")


# --- the memory site's own faults: what an unreachable or full site does ------------------------
async def test_an_offline_memory_site_fails_like_an_unreachable_one() -> None:
    site = MemorySite("s1")
    await site.put("6" * 32, b"kept")
    writer = await site.create("7" * 32)
    site.offline = True
    calls = (site.usage(), site.size("6" * 32), site.put("8" * 32, b"x"), writer.commit())
    for call in (*calls, site.delete("6" * 32)):
        with pytest.raises(OSError, match="cannot be reached"):
            await call
    with pytest.raises(OSError, match="cannot be reached"):
        await _read_all(site, "6" * 32, 0, 4)
    site.offline = False
    assert await _read_all(site, "6" * 32, 0, 4) == b"kept"
    assert list(site.pending) == []  # the failed commit left nothing


async def test_a_full_memory_site_refuses_writes() -> None:
    site = MemorySite("s1", capacity=10)
    await site.put("9" * 32, b"123456")
    assert await site.usage() == (6, 4)
    with pytest.raises(errors.StorageFull):
        await site.put("a" * 32, b"12345")
    writer = await site.create("b" * 32)
    await writer.write(b"1234")
    with pytest.raises(errors.StorageFull):
        await writer.write(b"5")
    await writer.abort()
    assert await site.usage() == (6, 4)


async def test_memory_blob_ages_come_from_its_clock() -> None:
    class Clock:
        now_value = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

        def now(self) -> dt.datetime:
            return self.now_value

    clock = Clock()
    site = MemorySite("s1", clock=clock)
    await site.put("c" * 32, b"x")
    writer = await site.create("d" * 32)
    await writer.write(b"y")
    clock.now_value += dt.timedelta(hours=1)
    cut = dt.datetime(2024, 1, 1, 0, 30, tzinfo=dt.UTC)
    assert [b async for b in site.list_blobs(cut)] == ["c" * 32]
    assert await site.sweep_temporary(cut) == 1


def test_many_processes_can_prepare_a_new_site_at_once(tmp_path: Path) -> None:
    import multiprocessing

    root = str(tmp_path / "fresh")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=LocalSite, args=("s", root)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * 8
    assert Path(root, "FORMAT").read_text() == "andromede-local-site 1\n"
    assert [n for n in os.listdir(root) if n.endswith(".tmp")] == []


async def test_a_registered_site_that_vanished_is_not_made_again(tmp_path: Path) -> None:
    root = tmp_path / "mnt" / "disk1"
    gone = LocalSite("s1", str(root), create=False)
    assert not root.exists()
    with pytest.raises(OSError, match="FORMAT"):
        await gone.usage()
    with pytest.raises(errors.BlobNotFound):
        await gone.size("a" * 32)
    # Deleting from a site that is not there is not done: its garbage entry must stay queued.
    with pytest.raises(OSError, match="is not at"):
        await gone.delete("a" * 32)
    made = LocalSite("s1", str(root))  # registration makes it
    await made.delete("a" * 32)  # a blob missing from a site that is there: done
    used, free = await made.usage()
    assert used > 0
    assert free > 0
    assert (await LocalSite("s1", str(root), create=False).usage())[1] > 0
