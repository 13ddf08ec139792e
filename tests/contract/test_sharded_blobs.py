"""A blob spread over local sites (replicas, erasure code): what the data path and repair see,
including reads around missing, truncated and corrupt shards."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from andromede.core import errors
from andromede.core.models import BlobRef
from andromede.core.placement import Layout, Redundancy
from andromede.dataplane.local import HEADER_SIZE as LOCAL_HEADER
from andromede.dataplane.local import LocalSite
from andromede.dataplane.shard_format import FRAME, HEADER_SIZE, preferred_code
from andromede.dataplane.sharded import ShardedBlobs

BLOB = "b" * 32
LAYOUTS = {
    "r3": Layout(Redundancy.replicas(3), ("s0", "s1", "s2")),
    "ec4+2": Layout(Redundancy(True, 4, 2), ("s0", "s1", "s2", "s3", "s4", "s5")),
}
SIZES = [0, 1, 4096, FRAME - 1, FRAME, FRAME + 1, 4 * FRAME + 12345, 9 * FRAME]


class Sites:
    """Six local sites in a temp dir; records what the backend reports."""

    def __init__(self, root: Path) -> None:
        self.sites = {f"s{i}": LocalSite(f"s{i}", str(root / f"s{i}")) for i in range(7)}
        self.degraded: list[BlobRef] = []
        self.failed: list[str] = []

    def blobs(self, layout: Layout) -> ShardedBlobs:
        return ShardedBlobs(
            layout,
            self.sites.__getitem__,
            code=preferred_code(),
            on_degraded=self.degraded.append,
            on_site_error=self.failed.append,
        )

    def shard_path(self, name: str, blob_id: str = BLOB) -> Path:
        return Path(self.sites[name].blob_path(blob_id))


@pytest.fixture
def sites(tmp_path: Path) -> Sites:
    return Sites(tmp_path)


def data_of(size: int) -> bytes:
    seed = hashlib.sha256(str(size).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def read_all(
    blobs: ShardedBlobs, offset: int, length: int, piece: int | None = None
) -> bytes:
    return b"".join([p async for p in blobs.read(BLOB, offset, length, piece=piece)])


async def collect(blobs: ShardedBlobs, length: int, into: list[bytes]) -> None:
    async for piece in blobs.read(BLOB, 0, length):
        into.append(piece)


async def write(blobs: ShardedBlobs, data: bytes, step: int = 300_000) -> None:
    writer = await blobs.create(BLOB)
    for i in range(0, len(data), step):
        await writer.write(data[i : i + step])
    await writer.commit()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("size", SIZES)
async def test_round_trip_streamed_and_whole(sites: Sites, name: str, size: int) -> None:
    blobs = sites.blobs(LAYOUTS[name])
    data = data_of(size)
    await write(blobs, data)
    assert await read_all(blobs, 0, size) == data
    if size > 10:
        assert await read_all(blobs, 5, size - 10, piece=65_536) == data[5:-5]
    await blobs.delete(BLOB)
    await blobs.put(BLOB, data)
    assert await read_all(blobs, 0, size) == data
    assert sites.degraded == []


@pytest.mark.parametrize("name", sorted(LAYOUTS))
async def test_every_shard_holds_only_its_share(sites: Sites, name: str) -> None:
    layout = LAYOUTS[name]
    data = os.urandom(6 * FRAME + 7)
    await write(sites.blobs(layout), data)
    sizes = {file_size(sites.shard_path(s)) for s in layout.sites}
    assert len(sizes) == 1  # every shard the same length
    shard = sizes.pop() - LOCAL_HEADER - HEADER_SIZE
    if layout.redundancy.erasure:
        assert len(data) / 4 < shard < len(data) / 4 * 1.01
    else:
        assert shard == len(data) + 4 * 7  # a CRC per frame


def file_size(path: Path) -> int:
    return os.path.getsize(path)


def damage(sites: Sites, name: str, how: str) -> None:
    path = sites.shard_path(name)
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        os.truncate(path, os.path.getsize(path) - 1000)
    elif how == "flipped":
        with open(path, "r+b") as fh:
            fh.seek(LOCAL_HEADER + HEADER_SIZE + FRAME // 2)
            byte = fh.read(1)
            fh.seek(-1, os.SEEK_CUR)
            fh.write(bytes([byte[0] ^ 0x40]))
    elif how == "header":
        with open(path, "r+b") as fh:
            fh.seek(LOCAL_HEADER)
            fh.write(b"XXXXXXXX")


@pytest.mark.parametrize("how", ["missing", "truncated", "flipped", "header"])
@pytest.mark.parametrize("name", sorted(LAYOUTS))
async def test_reads_go_around_up_to_tolerance_bad_shards(
    sites: Sites, name: str, how: str
) -> None:
    layout = LAYOUTS[name]
    blobs = sites.blobs(layout)
    data = os.urandom(5 * FRAME * layout.redundancy.k + 999)
    await write(blobs, data)
    for victim in layout.sites[: layout.redundancy.tolerates]:
        damage(sites, victim, how)
    assert await read_all(blobs, 0, len(data)) == data
    assert await read_all(blobs, FRAME + 3, 2 * FRAME) == data[FRAME + 3 : 3 * FRAME + 3]
    assert sites.degraded
    assert all(d == BlobRef(layout, BLOB) for d in sites.degraded)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
async def test_one_loss_too_many_fails_without_wrong_bytes(sites: Sites, name: str) -> None:
    layout = LAYOUTS[name]
    blobs = sites.blobs(layout)
    data = os.urandom(3 * FRAME)
    await write(blobs, data)
    for victim in layout.sites[: layout.redundancy.tolerates + 1]:
        damage(sites, victim, "flipped")
    got: list[bytes] = []
    with pytest.raises(errors.ShardsUnavailable):
        await collect(blobs, len(data), got)
    assert data.startswith(b"".join(got))  # what came before the failure is right


@pytest.mark.parametrize("name", sorted(LAYOUTS))
async def test_verify_and_rebuild_on_another_site(sites: Sites, name: str) -> None:
    layout = LAYOUTS[name]
    blobs = sites.blobs(layout)
    data = os.urandom(7 * FRAME + 5)
    await write(blobs, data)
    size = file_size(sites.shard_path("s1")) - LOCAL_HEADER
    damage(sites, "s1", "flipped")
    damage(sites, "s0", "missing")
    shard_sizes = await blobs.shard_sizes(BLOB)
    assert shard_sizes[0] is None
    assert [await blobs.verify_shard(BLOB, i, size) for i in range(3)] == [False, False, True]
    # Two lost shards (as many as either code tolerates) rebuilt, s1's where it was and s0's
    # elsewhere, and a healthy third one moved at the same time (a drain): three shards
    # written, more than the code could rebuild from what is left without the moving one.
    target = layout.moved(0, "s6").moved(2, "s5" if "s5" not in layout.sites else "s0")
    written = await blobs.rebuild(BLOB, size, [0, 1, 2], sites.blobs(target))
    assert written > 0
    rebuilt = sites.blobs(target)
    assert [await rebuilt.verify_shard(BLOB, i, size) for i in range(len(target.sites))] == [
        True
    ] * len(target.sites)
    # every shard is right now: a read needs no detour
    sites.degraded.clear()
    assert await read_all(rebuilt, 0, len(data)) == data
    assert sites.degraded == []


@pytest.mark.parametrize("broken", ["tmp", "blobs/bb"])
async def test_a_failed_shard_write_leaves_nothing(sites: Sites, broken: str) -> None:
    """A site that cannot take its shard (at create, or at commit's rename) fails the whole
    write: the other sites keep no shard and no temporary file; the site is reported."""
    layout = LAYOUTS["r3"]
    blobs = sites.blobs(layout)
    where = Path(sites.sites["s2"].root) / broken
    where.rmdir()
    where.write_bytes(b"")  # a file where a directory should be: ENOTDIR
    with pytest.raises(errors.ShardsUnavailable):
        await write(blobs, os.urandom(3 * FRAME))
    if broken != "tmp":  # a whole small blob goes straight to blobs/, not through tmp/
        with pytest.raises(errors.ShardsUnavailable):
            await blobs.put(BLOB, b"small")
    assert set(sites.failed) == {"s2"}
    for name in ("s0", "s1"):
        assert not sites.shard_path(name).exists()
        assert list((Path(sites.sites[name].root) / "tmp").iterdir()) == []
