"""The SiteBackend contract, on every implementation (today: a local directory, on a disk
filesystem where large blobs go through O_DIRECT, and on tmpfs where they cannot)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from andromede.core import errors
from andromede.dataplane.local import ALIGN, STAGE, LocalSite
from andromede.ports import SiteBackend

SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, STAGE - 1, STAGE, STAGE + 1, 3 * STAGE + 4321]


def _roots(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    yield "disk", tmp_path / "disk"
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        yield "tmpfs", shm


@pytest.fixture(params=["disk", "tmpfs"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalSite]:
    roots = dict(_roots(tmp_path))
    if request.param not in roots:
        pytest.skip(f"no {request.param} filesystem here")
    base = roots[request.param]
    root = base / f"andromede-site-{os.getpid()}-{tmp_path.name}"
    yield LocalSite("s1", str(root))
    if request.param == "tmpfs":
        shutil.rmtree(root, ignore_errors=True)


def _data(size: int) -> bytes:
    seed = hashlib.sha256(str(size).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def _read_all(site: SiteBackend, blob_id: str, offset: int, length: int) -> bytes:
    return b"".join([chunk async for chunk in site.read(blob_id, offset, length)])


@pytest.mark.parametrize("size", SIZES)
async def test_streamed_blob_round_trip(site: LocalSite, size: int) -> None:
    data = _data(size)
    writer = await site.create("a" * 32)
    for i in range(0, size, 300_000):  # uneven pieces across the staging boundary
        await writer.write(data[i : i + 300_000])
    await writer.commit()
    assert await _read_all(site, "a" * 32, 0, size) == data
    if size > 10:
        assert await _read_all(site, "a" * 32, 5, size - 10) == data[5:-5]
    assert os.listdir(os.path.join(site.root, "tmp")) == []


@pytest.mark.parametrize("size", [0, 1, ALIGN + 1, 200_000])
async def test_put_small_blob(site: LocalSite, size: int) -> None:
    data = _data(size)
    await site.put("b" * 32, data)
    assert await _read_all(site, "b" * 32, 0, size) == data


async def test_uncommitted_blob_is_invisible_and_abort_cleans_up(site: LocalSite) -> None:
    writer = await site.create("c" * 32)
    await writer.write(_data(STAGE + 10))
    with pytest.raises(errors.BlobNotFound):
        await _read_all(site, "c" * 32, 0, 1)
    await writer.abort()
    await writer.abort()  # twice is fine
    assert os.listdir(os.path.join(site.root, "tmp")) == []


async def test_damaged_blobs_are_never_served(site: LocalSite) -> None:
    await site.put("d" * 32, b"hello world")
    await asyncio.to_thread(Path(site.blob_path("d" * 32)).write_bytes, b"X")  # no magic
    with pytest.raises(errors.DataCorrupted):
        await _read_all(site, "d" * 32, 0, 11)
    await site.put("e" * 32, b"hello world")
    os.truncate(site.blob_path("e" * 32), ALIGN + 3)
    with pytest.raises(errors.DataCorrupted):
        await _read_all(site, "e" * 32, 0, 11)


async def test_delete_list_and_sweep(site: LocalSite) -> None:
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
    await writer.abort()


async def test_blob_ids_are_never_paths(site: LocalSite) -> None:
    for bad in ("../../etc/passwd", "A" * 32, "a" * 31, ""):
        with pytest.raises(ValueError, match="invalid blob id"):
            await site.create(bad)


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
    made = LocalSite("s1", str(root))  # registration makes it
    used, free = await made.usage()
    assert used > 0
    assert free > 0
    assert (await LocalSite("s1", str(root), create=False).usage())[1] > 0
