"""The streaming data path, both ways: :class:`DataWriter` takes a body to a sealed blob on
the sites placement chooses (with its digests); :class:`DataReader` gives back the plaintext
of a manifest's segments, or of a range of them.

Memory stays bounded: at most ``IN_FLIGHT`` blocks of ``BLOCK`` bytes are in flight per request.
Large blocks are hashed and written from worker threads (hashlib and os.write release the GIL)
in three lanes (MD5; the other checksums; the disk write), each running its blocks in order.
A lane never waits for the others, so the slowest one (MD5, ~700 MB/s a core) runs without
gaps while the event loop receives the next blocks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from andromede.core import audit, errors
from andromede.core.checksums import ChecksumAlgorithm, Hasher, new_hasher
from andromede.core.conditions import ByteRange
from andromede.core.ids import new_id
from andromede.core.keys import CustomerKey, ObjectEncryption, Sealing
from andromede.core.models import BlobRef, Bucket, ObjectVersion
from andromede.core.placement import Layout
from andromede.ports import BlobWriter, PendingBlock, SiteBackend
from andromede.services.body import IncomingBody
from andromede.services.encryption import Encryption, Seal
from andromede.services.placement import Placement

log = logging.getLogger("andromede.datapath")

BLOCK = 1 << 20
# Blocks handed to the lanes and not yet done, per upload (memory bound: IN_FLIGHT * BLOCK).
IN_FLIGHT = 4
# Under this block size, thread hops cost more than they save.
THREADED = 128 << 10
# Bodies up to this size are gathered and written in one trip to a worker thread.
SMALL = 256 << 10


@dataclass(frozen=True)
class NewBlob:
    """A blob about to be written: placement follows ``bucket``'s region; its seal binds the
    bucket's tenant, the bucket, ``key`` and ``context`` (a version id, or an upload id and
    part number), under ``encryption``."""

    bucket: Bucket
    key: str
    context: str
    encryption: ObjectEncryption
    customer_key: CustomerKey | None = None


@dataclass(frozen=True)
class StoredBlob:
    """What writing a stream produced."""

    blob: BlobRef
    size: int
    md5: bytes
    checksums: dict[ChecksumAlgorithm, bytes]
    sealing: Sealing | None  # None only for the benchmark baseline (plaintext)


class _Digests:
    """MD5 on one thread, checksums + observers on another."""

    def __init__(
        self, algorithms: Sequence[ChecksumAlgorithm], observers: Sequence[Callable[[bytes], None]]
    ) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.hashers: dict[ChecksumAlgorithm, Hasher] = {a: new_hasher(a) for a in algorithms}
        self.observers = list(observers)

    def update_inline(self, block: bytes) -> None:
        """Every digest, on the calling thread (small blocks)."""
        self.md5.update(block)
        self.update_others(block)

    def update_others(self, block: bytes) -> None:
        """Checksums and observers (one lane)."""
        for h in self.hashers.values():
            h.update(block)
        for observe in self.observers:
            observe(block)


class _Lane:
    """Runs steps one after another, in order, without making the caller wait for them."""

    def __init__(self) -> None:
        self._last: asyncio.Future[None] | None = None

    def submit(self, step: Callable[[], Awaitable[None]]) -> asyncio.Future[None]:
        previous = self._last

        async def run() -> None:
            if previous is not None:
                await previous  # a failed step fails every later one
            await step()

        self._last = asyncio.ensure_future(run())
        return self._last

    async def settle(self) -> None:
        """Wait until nothing runs any more (after a failure too), ignoring errors."""
        if self._last is not None:
            await asyncio.gather(self._last, return_exceptions=True)


class _Pipeline:
    """The three lanes of one upload."""

    def __init__(self, digests: _Digests, writer: BlobWriter) -> None:
        self._digests = digests
        self._writer = writer
        self._lanes = (_Lane(), _Lane(), _Lane())
        self._blocks: collections.deque[list[asyncio.Future[None]]] = collections.deque()

    async def feed(self, block: bytes) -> None:
        """Hand over a block; waits only when ``IN_FLIGHT`` blocks are already pending."""
        if len(block) < THREADED:
            await self.drain()
            self._digests.update_inline(block)
            await self._writer.write(block)
            return
        md5, others, disk = self._lanes
        digests = self._digests
        self._blocks.append(
            [
                md5.submit(lambda: asyncio.to_thread(digests.md5.update, block)),
                others.submit(lambda: asyncio.to_thread(digests.update_others, block)),
                disk.submit(lambda: self._writer.write(block)),
            ]
        )
        if len(self._blocks) > IN_FLIGHT:
            await asyncio.gather(*self._blocks.popleft())

    async def drain(self) -> None:
        """Wait for every pending block; raises the first failure."""
        while self._blocks:
            await asyncio.gather(*self._blocks.popleft())

    async def settle(self) -> None:
        """After a failure: let running steps finish before the blob is closed."""
        for lane in self._lanes:
            await lane.settle()


async def _blocks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Regroup a stream of arbitrary pieces into blocks of about ``BLOCK`` bytes."""
    pending: list[bytes] = []
    size = 0
    async for piece in chunks:
        if not piece:
            continue
        pending.append(piece)
        size += len(piece)
        if size >= BLOCK:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


class DataWriter:
    """Writes request bodies to new blobs: sealed, placed under the bucket's residency
    policy, hashed on the way."""

    def __init__(self, placement: Placement, encryption: Encryption) -> None:
        self._placement = placement
        self._encryption = encryption

    async def write(
        self,
        new: NewBlob,
        body: IncomingBody,
        *,
        max_size: int,
        algorithms: Sequence[ChecksumAlgorithm] = (),
    ) -> StoredBlob:
        """Write ``body`` to a new blob. The blob is durable when this returns.

        Digests are taken of the plaintext; only sealed bytes reach a site. On any failure
        the partial blob is removed and nothing is visible. The caller must record the blob
        in metadata after this returns, or :meth:`discard` it.
        """
        bucket = new.bucket
        seal = await self._encryption.seal(
            new.encryption, bucket.tenant, bucket.name, new.key, new.context, new.customer_key
        )
        layout = await self._placement.target(bucket)
        site = self._placement.backend(layout)
        if body.length is not None and body.length > max_size:
            raise errors.EntityTooLarge(MaxSizeAllowed=str(max_size), ProposedSize=str(body.length))
        with _site_errors(layout, "store the object", self._placement.site_failed):
            if body.length is not None and body.length <= SMALL:
                return await _store_small(layout, site, body, algorithms, seal)
            return await _store(layout, site, body, max_size, algorithms, seal)

    async def discard(self, blob: BlobRef) -> None:
        """Delete a blob that was written but will not be recorded."""
        await self._placement.backend(blob.layout).delete(blob.blob_id)


async def _store(
    layout: Layout,
    site: SiteBackend,
    body: IncomingBody,
    max_size: int,
    algorithms: Sequence[ChecksumAlgorithm],
    seal: Seal | None,
) -> StoredBlob:
    """A body of any size, streamed block by block through the lanes."""
    blob_id = new_id()
    _note_sites(layout)
    writer = await site.create(blob_id)
    if seal is not None:
        writer = seal.writer(writer)
    digests = _Digests(algorithms, body.observers)
    pipeline = _Pipeline(digests, writer)
    size = 0
    try:
        async for block in _blocks(body.chunks):
            size += len(block)
            if size > max_size:
                raise errors.EntityTooLarge(MaxSizeAllowed=str(max_size))
            await pipeline.feed(block)
        await pipeline.drain()
        if body.length is not None and size != body.length:
            raise errors.IncompleteBody()
        body.finish()
        await writer.commit()
    except BaseException:
        # Worker threads cannot be cancelled: wait for them before the file is closed.
        await pipeline.settle()
        await writer.abort()
        raise
    return _stored(BlobRef(layout, blob_id), size, digests, seal)


def _stored(blob: BlobRef, size: int, digests: _Digests, seal: Seal | None) -> StoredBlob:
    return StoredBlob(
        blob,
        size,
        digests.md5.digest(),
        {alg: h.digest() for alg, h in digests.hashers.items()},
        seal.sealing if seal is not None else None,
    )


class _Collect:
    """A BlobWriter that keeps what it is given (a small blob, sealed in memory)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    async def write(self, data: bytes | memoryview) -> None:
        self.pieces.append(bytes(data))

    async def write_from(self, block: PendingBlock) -> None:
        self.pieces.extend(bytes(piece) for piece in block.make())

    async def commit(self) -> None:
        return None

    async def abort(self) -> None:
        self.pieces.clear()


async def _sealed_bytes(seal: Seal, data: bytes) -> bytes:
    collect = _Collect()
    writer = seal.writer(collect)
    await writer.write(data)
    await writer.commit()
    return b"".join(collect.pieces)


async def _store_small(
    layout: Layout,
    site: SiteBackend,
    body: IncomingBody,
    algorithms: Sequence[ChecksumAlgorithm],
    seal: Seal | None,
) -> StoredBlob:
    """A body of known small size: gather it (bounded by SMALL), check it, write it at once."""
    assert body.length is not None
    pieces: list[bytes] = []
    size = 0
    async for piece in body.chunks:
        size += len(piece)
        if size > body.length:
            raise errors.IncompleteBody()
        pieces.append(piece)
    if size != body.length:
        raise errors.IncompleteBody()
    data = b"".join(pieces)
    digests = _Digests(algorithms, body.observers)
    digests.update_inline(data)
    body.finish()
    blob_id = new_id()
    _note_sites(layout)
    await site.put(blob_id, await _sealed_bytes(seal, data) if seal is not None else data)
    return _stored(BlobRef(layout, blob_id), size, digests, seal)


@contextlib.contextmanager
def _site_errors(
    layout: Layout, doing: str, failed: Callable[[str], None] | None = None
) -> Iterator[None]:
    """A site's failure (an OSError: a vanished directory, a disk error, a Ceph cluster that
    does not answer) becomes a 503 naming the site, never a 500. A layout over several sites
    names its failures itself; this catches what reaches here from a one-site layout.
    ``failed`` is told the site, so that new placements leave it out for a while."""
    try:
        yield
    except OSError as exc:
        where = ", ".join(layout.sites)
        log.warning("site %s could not %s: %s", where, doing, exc)
        if failed is not None and len(layout.sites) == 1:
            failed(layout.sites[0])
        reason = exc.strerror or type(exc).__name__
        raise errors.ShardsUnavailable(f"Site {where} could not {doing} ({reason}).") from exc


def _note_sites(layout: Layout) -> None:
    """Name every site a blob's layout touches in the request's audit record."""
    for name in layout.sites:
        audit.note_site(name)


class DataReader:
    """Reads object versions back: the segments a range needs, opened (authenticated and
    decrypted) chunk by chunk."""

    def __init__(self, placement: Placement, encryption: Encryption) -> None:
        self._placement = placement
        self._encryption = encryption

    def read(
        self,
        version: ObjectVersion,
        byte_range: ByteRange | None,
        customer_key: CustomerKey | None,
    ) -> AsyncGenerator[bytes, None]:
        """Stream the plaintext of ``version`` (or of a range of it), segment by segment.

        The caller has checked ``customer_key`` (:meth:`Encryption.check_read_key`) before
        anything else it answers, as S3 orders its errors. The sites to be read are noted for
        the audit record now, before the stream starts (the record is durable before the
        response, hence before the stream is consumed).
        """
        manifest = version.manifest
        start = byte_range.start if byte_range else 0
        end = byte_range.end + 1 if byte_range else manifest.size
        offset = 0
        for segment in manifest.segments:
            if offset < end and offset + segment.size > start and segment.size:
                _note_sites(segment.blob.layout)
            offset += segment.size
        return self._read(version, start, end, customer_key)

    async def _read(
        self, version: ObjectVersion, start: int, end: int, customer_key: CustomerKey | None
    ) -> AsyncGenerator[bytes, None]:
        offset = 0
        for segment in version.manifest.segments:
            seg_start, seg_end = offset, offset + segment.size
            offset = seg_end
            if seg_end <= start or segment.size == 0:
                continue
            if seg_start >= end:
                break
            pieces = self._encryption.open_segment(
                self._placement.backend(segment.blob.layout),
                segment,
                max(start, seg_start) - seg_start,
                min(end, seg_end) - seg_start,
                tenant=version.owner,
                bucket=version.bucket,
                key=version.key,
                encryption=version.encryption,
                customer_key=customer_key,
            )
            with _site_errors(segment.blob.layout, "be read"):
                async with contextlib.aclosing(pieces):
                    async for chunk in pieces:
                        yield chunk
