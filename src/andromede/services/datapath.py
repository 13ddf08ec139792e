"""Streaming data path: bytes in → hashes + blob on a site; manifest → bytes out.

Memory stays bounded: at most two blocks of ``BLOCK`` bytes are in flight per request. Large
blocks are hashed and written from worker threads (hashlib and os.write release the GIL), so
MD5, the optional checksums and the disk write run on separate cores while the event loop
receives the next block.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm, Hasher, new_hasher
from andromede.core.conditions import ByteRange
from andromede.core.ids import new_id
from andromede.core.models import BlobRef, Manifest
from andromede.ports import BlobWriter, SiteBackend
from andromede.services.body import IncomingBody

BLOCK = 1 << 20
# Under this block size, thread hops cost more than they save.
THREADED = 128 << 10
# Bodies up to this size are gathered and written in one trip to a worker thread.
SMALL = 256 << 10


@dataclass(frozen=True)
class StoredBlob:
    """What writing a stream produced."""

    blob: BlobRef
    size: int
    md5: bytes
    checksums: dict[ChecksumAlgorithm, bytes]


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
        self._update_others(block)

    def _update_others(self, block: bytes) -> None:
        for h in self.hashers.values():
            h.update(block)
        for observe in self.observers:
            observe(block)

    async def feed(self, block: bytes, writer: BlobWriter) -> None:
        if len(block) < THREADED:
            self.update_inline(block)
            await writer.write(block)
            return
        await asyncio.gather(
            asyncio.to_thread(self.md5.update, block),
            asyncio.to_thread(self._update_others, block),
            writer.write(block),
        )


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


async def store(
    site: SiteBackend,
    body: IncomingBody,
    *,
    max_size: int,
    algorithms: Sequence[ChecksumAlgorithm] = (),
) -> StoredBlob:
    """Write ``body`` to a new blob. The blob is durable when this returns.

    On any failure the partial blob is removed and nothing is visible. The caller must
    record the blob in metadata (or queue it as garbage) after this returns.
    """
    if body.length is not None and body.length > max_size:
        raise errors.EntityTooLarge(MaxSizeAllowed=str(max_size), ProposedSize=str(body.length))
    if body.length is not None and body.length <= SMALL:
        return await _store_small(site, body, algorithms)
    blob_id = new_id()
    writer = await site.create(blob_id)
    digests = _Digests(algorithms, body.observers)
    size = 0
    in_flight: asyncio.Future[None] | None = None
    try:
        async for block in _blocks(body.chunks):
            size += len(block)
            if size > max_size:
                raise errors.EntityTooLarge(MaxSizeAllowed=str(max_size))
            if in_flight is not None:
                await in_flight
            in_flight = asyncio.ensure_future(digests.feed(block, writer))
        if in_flight is not None:
            await in_flight
            in_flight = None
        if body.length is not None and size != body.length:
            raise errors.IncompleteBody()
        body.finish()
        await writer.commit()
    except BaseException:
        if in_flight is not None:
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)
        await writer.abort()
        raise
    return StoredBlob(
        BlobRef(site.name, blob_id),
        size,
        digests.md5.digest(),
        {alg: h.digest() for alg, h in digests.hashers.items()},
    )


async def _store_small(
    site: SiteBackend, body: IncomingBody, algorithms: Sequence[ChecksumAlgorithm]
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
    await site.put(blob_id, data)
    return StoredBlob(
        BlobRef(site.name, blob_id),
        size,
        digests.md5.digest(),
        {alg: h.digest() for alg, h in digests.hashers.items()},
    )


async def read(
    sites: Callable[[str], SiteBackend], manifest: Manifest, byte_range: ByteRange | None
) -> AsyncIterator[bytes]:
    """Stream an object's bytes (or a range of them) segment by segment."""
    start = byte_range.start if byte_range else 0
    end = byte_range.end + 1 if byte_range else manifest.size
    offset = 0
    for segment in manifest.segments:
        seg_start, seg_end = offset, offset + segment.size
        offset = seg_end
        if seg_end <= start or segment.size == 0:
            continue
        if seg_start >= end:
            break
        lo = max(start, seg_start) - seg_start
        hi = min(end, seg_end) - seg_start
        site = sites(segment.blob.site)
        async for chunk in site.read(segment.blob.blob_id, lo, hi - lo):
            yield chunk
