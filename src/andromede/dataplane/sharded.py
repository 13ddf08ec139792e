"""A blob spread over several sites: N replicas or an erasure code, every frame checksummed.

:class:`ShardedBlobs` is a :class:`~andromede.ports.SiteBackend` for one layout
(``core/placement.py``): the data path writes and reads through it exactly as through one
site, and it fans the bytes out to (or gathers them from) the physical sites, one shard per
site in the format of ``shard_format.py``. Reads verify every frame's CRC and read around a
missing, short or corrupt shard (another replica, or any ``k`` fragments), then report the
blob for repair.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence

from andromede.core import errors
from andromede.core.models import BlobRef
from andromede.core.placement import Layout
from andromede.dataplane.shard_format import (
    FRAME,
    THREADED,
    Codec,
    FrameReader,
    ShardFailed,
    ShardHeader,
    crc32c,
    decode,
    frame_count,
    preferred_code,
    reconstruct,
)
from andromede.ports import BlobWriter, PendingBlock, ShardSet, SiteBackend

log = logging.getLogger("andromede.placement")
SiteLookup = Callable[[str], SiteBackend]
Reporter = Callable[[BlobRef], None]


class ShardedBlobs:
    """A :class:`~andromede.ports.SiteBackend` whose blobs are spread as ``layout`` says."""

    def __init__(
        self,
        layout: Layout,
        sites: SiteLookup,
        *,
        code: int | None = None,
        unavailable: Callable[[], frozenset[str]] = frozenset,
        on_degraded: Reporter | None = None,
        on_site_error: Callable[[str], None] | None = None,
    ) -> None:
        self.layout = layout
        # For logs only: a layout is found by its Layout, never by this name.
        self.name = f"{layout.kind}:{','.join(layout.sites)}"
        self._sites = sites
        self._codec_code = code
        self._unavailable = unavailable
        self._on_degraded = on_degraded
        self._on_site_error = on_site_error
        self._codec: Codec | None = None

    @property
    def codec(self) -> Codec:
        """How frames are made for this layout (built once, on first write)."""
        if self._codec is None:
            # The erasure backend is probed on first use (~0.1 s): not at every start.
            code = self._codec_code if self._codec_code is not None else preferred_code()
            self._codec = Codec(self.layout, code if self.layout.redundancy.erasure else 0)
        return self._codec

    def _site_failed(self, name: str, exc: BaseException) -> None:
        log.warning("site %s failed: %s", name, exc)
        if self._on_site_error is not None and isinstance(exc, OSError | errors.StorageFull):
            self._on_site_error(name)

    def _write_error(self, name: str, exc: BaseException) -> errors.AndromedeError:
        self._site_failed(name, exc)
        if isinstance(exc, errors.StorageFull):
            return errors.StorageFull(f"Site {name} is full; the write was not stored.")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return errors.ShardsUnavailable(f"Site {name} could not store a shard ({reason}).")

    @contextlib.contextmanager
    def _writing_to(self, name: str) -> Iterator[None]:
        """A site's write failure becomes the client's error (and the site is noted failed)."""
        try:
            yield
        except (OSError, errors.StorageFull) as exc:
            raise self._write_error(name, exc) from exc

    # --- writing ------------------------------------------------------------------------------
    async def create(self, blob_id: str) -> BlobWriter:
        """Start a blob: one shard writer per site, each with its header written."""
        codec = self.codec
        writers: list[BlobWriter] = []
        try:
            for index, name in enumerate(self.layout.sites):
                with self._writing_to(name):
                    writer = await self._sites(name).create(blob_id)
                    writers.append(writer)
                    await writer.write(codec.header(index))
        except BaseException:
            for writer in writers:
                await writer.abort()
            raise
        return _ShardedWriter(self, blob_id, writers)

    async def put(self, blob_id: str, data: bytes) -> None:
        """A whole small blob: every shard written at once; all or none."""
        codec = self.codec
        frames: list[list[bytes]] = []
        for start in range(0, len(data), codec.data_per_frame):
            frames.append(codec.encode(data[start : start + codec.data_per_frame]))
        shards = [
            codec.header(i) + b"".join(frame[i] for frame in frames) for i in range(codec.shards)
        ]
        results = await asyncio.gather(
            *(
                self._sites(n).put(blob_id, s)
                for n, s in zip(self.layout.sites, shards, strict=True)
            ),
            return_exceptions=True,
        )
        failed = [(n, r) for n, r in zip(self.layout.sites, results, strict=True) if r is not None]
        if failed:
            await self.delete(blob_id)
            name, exc = failed[0]
            if isinstance(exc, OSError | errors.StorageFull):
                raise self._write_error(name, exc) from exc
            assert isinstance(exc, BaseException)
            raise exc

    # --- reading ------------------------------------------------------------------------------
    async def size(self, blob_id: str) -> int:
        """The size of a shard (all of a blob's shards have the same)."""
        for found in await self.shard_sizes(blob_id):
            if found is not None:
                return found
        raise errors.BlobNotFound()

    async def usage(self) -> tuple[int, int]:
        """A layout has no capacity of its own (its sites do)."""
        raise OSError("a layout is not a site")

    def _order(self, candidates: Sequence[int]) -> list[int]:
        """Shards of sites believed available first, then the rest, each in index order."""
        down = self._unavailable()
        up = [i for i in candidates if self.layout.sites[i] not in down]
        return up + [i for i in candidates if self.layout.sites[i] in down]

    def _degraded(self, blob_id: str, why: str) -> None:
        log.warning("degraded read of %s/%s: %s", self.name, blob_id, why)
        if self._on_degraded is not None:
            self._on_degraded(BlobRef(self.layout, blob_id))

    async def _open(self, blob_id: str, index: int, first: int, last: int) -> FrameReader:
        name = self.layout.sites[index]
        try:
            site = self._sites(name)
        except KeyError as exc:
            raise ShardFailed(f"site {name} is not configured") from exc
        reader = FrameReader(site, blob_id, index, self.layout)
        try:
            await reader.open(first, last)
        except ShardFailed:
            await reader.close()
            raise
        return reader

    async def _frames(
        self, blob_id: str, first: int, last: int, *, report: bool = True
    ) -> AsyncGenerator[bytes | memoryview, None]:
        """Blob bytes of frames ``first..last`` (a frame is ``data_per_frame`` bytes of the
        blob), each verified, read around failed shards."""
        down = self._unavailable() & set(self.layout.sites)
        if down and report:  # read around without trying: the blob still wants repair
            self._degraded(blob_id, f"shards on unavailable sites {sorted(down)}")
        if self.layout.redundancy.erasure:
            frames = self._ec_frames(blob_id, first, last, report)
        else:
            frames = self._replica_frames(blob_id, first, last, report)
        async with contextlib.aclosing(frames):
            async for data in frames:
                yield data

    async def _replica_frames(
        self, blob_id: str, first: int, last: int, report: bool
    ) -> AsyncGenerator[bytes | memoryview, None]:
        frame = first
        failures: list[str] = []
        try:
            for index in self._order(range(self.layout.redundancy.shards)):
                try:
                    reader = await self._open(blob_id, index, frame, last)
                except ShardFailed as exc:
                    failures.append(str(exc))
                    continue
                try:
                    while frame <= last:
                        payload = await reader.next()
                        frame += 1
                        yield payload
                except ShardFailed as exc:
                    failures.append(str(exc))
                    continue
                finally:
                    await reader.close()
                break
        finally:
            # Also when the consumer stops early: a detour taken is reported all the same.
            if failures and report:
                self._degraded(blob_id, "; ".join(failures))
        if frame <= last:
            raise errors.ShardsUnavailable()

    async def _ec_stripes(
        self, blob_id: str, first: int, last: int, report: bool
    ) -> AsyncGenerator[tuple[ShardHeader, dict[int, memoryview]], None]:
        """For each stripe ``first..last``: ``k`` verified fragments by shard index (data
        shards first, parity ones brought in for any that fails)."""
        k = self.layout.redundancy.k
        spare = self._order(range(self.layout.redundancy.shards))
        readers: list[FrameReader] = []
        failures: list[str] = []
        try:
            for frame in range(first, last + 1):
                fragments: dict[int, memoryview] = {}
                for reader in list(readers):
                    try:
                        fragments[reader.index] = await reader.next()
                    except ShardFailed as exc:
                        failures.append(str(exc))
                        readers.remove(reader)
                        await reader.close()
                while len(fragments) < k and spare:
                    index = spare.pop(0)
                    try:
                        reader = await self._open(blob_id, index, frame, last)
                    except ShardFailed as exc:
                        failures.append(str(exc))
                        continue
                    readers.append(reader)
                    try:
                        fragments[index] = await reader.next()
                    except ShardFailed as exc:
                        failures.append(str(exc))
                        readers.remove(reader)
                        await reader.close()
                if len(fragments) < k:
                    raise errors.ShardsUnavailable()
                header = readers[0].header
                assert header is not None
                yield header, dict(sorted(fragments.items()))
        finally:
            for reader in readers:
                await reader.close()
            if failures and report:
                self._degraded(blob_id, "; ".join(failures))

    async def _ec_frames(
        self, blob_id: str, first: int, last: int, report: bool
    ) -> AsyncGenerator[bytes | memoryview, None]:
        stripes = self._ec_stripes(blob_id, first, last, report)
        async with contextlib.aclosing(stripes):
            async for header, fragments in stripes:
                ordered = list(fragments.values())
                if sum(map(len, ordered)) >= THREADED:
                    yield await asyncio.to_thread(decode, header, ordered)
                else:
                    yield decode(header, ordered)

    async def read(
        self,
        blob_id: str,
        offset: int,
        length: int,
        *,
        piece: int | None = None,
        transform: Callable[[bytes], Sequence[bytes]] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Stream ``length`` bytes from ``offset``, in pieces of ``piece`` bytes, transformed
        where large pieces are (on a worker thread)."""
        if length <= 0:
            return
        per_frame = FRAME * self.layout.redundancy.k
        first, last = offset // per_frame, (offset + length - 1) // per_frame
        skip = offset - first * per_frame
        step = piece or FRAME
        pending: collections.deque[memoryview] = collections.deque()
        held = 0
        remaining = length
        frames = self._frames(blob_id, first, last)
        async with contextlib.aclosing(frames):
            async for data in frames:
                view = memoryview(data)[skip:]
                skip = 0
                if len(view) > remaining:
                    view = view[:remaining]
                remaining -= len(view)
                pending.append(view)
                held += len(view)
                while held >= step or (remaining == 0 and held):
                    out = _take(pending, min(step, held))
                    held -= len(out)
                    for chunk in await _transformed(out, transform):
                        yield chunk
                if remaining == 0:
                    break
        if remaining:
            raise errors.DataCorrupted("Stored data is shorter than its manifest.")

    # --- scrub and repair ---------------------------------------------------------------------
    async def shard_sizes(self, blob_id: str) -> list[int | None]:
        """Each shard's stored size (None: missing or unreadable)."""
        out: list[int | None] = []
        for name in self.layout.sites:
            try:
                out.append(await self._sites(name).size(blob_id))
            except (errors.AndromedeError, OSError, KeyError):
                out.append(None)
        return out

    async def verify_shard(self, blob_id: str, index: int, size: int) -> bool:
        """Header, length and every frame's CRC of one shard."""
        try:
            reader = await self._open(blob_id, index, 0, 1 << 40)
        except ShardFailed:
            return False
        try:
            header = reader.header
            assert header is not None
            if await reader.site.size(blob_id) != size:
                return False
            for _ in range(frame_count(size, header)):
                await reader.next()
        except (ShardFailed, errors.AndromedeError, OSError):
            return False
        finally:
            await reader.close()
        return True

    async def _header(self, blob_id: str) -> ShardHeader:
        for index in self._order(range(self.layout.redundancy.shards)):
            try:
                reader = await self._open(blob_id, index, 0, 0)
            except ShardFailed:
                continue
            await reader.close()
            assert reader.header is not None
            return reader.header
        raise errors.ShardsUnavailable()

    async def rebuild(
        self, blob_id: str, size: int, indices: Sequence[int], target: ShardSet
    ) -> int:
        """Re-make shards ``indices`` of ``target`` from this layout's other shards (read
        around any that fail), frame by frame, and write them to their (new) sites."""
        header = await self._header(blob_id)
        codec = Codec(self.layout, header.code)
        count = frame_count(size, header)
        writers: list[tuple[int, str, BlobWriter]] = []
        written = 0
        try:
            for index in indices:
                name = target.layout.sites[index]
                with self._writing_to(name):
                    writer = await self._sites(name).create(blob_id)
                    writers.append((index, name, writer))
                    await writer.write(codec.header(index))
            if count:
                async for frames in self._rebuilt_frames(blob_id, count, indices, codec, header):
                    for index, name, writer in writers:
                        with self._writing_to(name):
                            await writer.write(frames[index])
                        written += len(frames[index])
            for _, name, writer in writers:
                with self._writing_to(name):
                    await writer.commit()
        except BaseException:
            for _, _, writer in writers:
                await writer.abort()
            raise
        return written

    async def _rebuilt_frames(
        self,
        blob_id: str,
        count: int,
        indices: Sequence[int],
        codec: Codec,
        header: ShardHeader,
    ) -> AsyncGenerator[dict[int, bytes], None]:
        """Each frame of shards ``indices`` (payload and CRC): a replica's frame copied from a
        good replica; an erasure-coded one rebuilt from ``k`` fragments of the other shards."""
        if not self.layout.redundancy.erasure:
            async for data in self._frames(blob_id, 0, count - 1, report=False):
                framed = codec.encode(data)[0]
                yield dict.fromkeys(indices, framed)
            return
        # Any k good fragments do: a wanted shard's own fragment when it read fine (a shard
        # that moves, or a bad shard's intact frames), the others rebuilt from those k.
        stripes = self._ec_stripes(blob_id, 0, count - 1, False)
        async with contextlib.aclosing(stripes):
            async for _, fragments in stripes:
                missing = [i for i in indices if i not in fragments]
                rebuilt: dict[int, bytes | memoryview] = {
                    i: fragments[i] for i in indices if i in fragments
                }
                if missing:
                    rebuilt.update(await asyncio.to_thread(reconstruct, header, fragments, missing))
                yield {i: b"".join((f, crc32c(f))) for i, f in rebuilt.items()}

    # --- housekeeping -------------------------------------------------------------------------
    async def delete(self, blob_id: str) -> None:
        """Remove every shard; a site that fails keeps an orphan for the sweeper."""
        for name in self.layout.sites:
            try:
                await self._sites(name).delete(blob_id)
            except (OSError, KeyError) as exc:
                log.warning("could not delete shard of %s on %s: %s", blob_id, name, exc)

    async def list_blobs(self, older_than: dt.datetime) -> AsyncIterator[str]:
        """A layout lists nothing: the sweeper scans the physical sites."""
        for _ in ():
            yield ""

    async def sweep_temporary(self, older_than: dt.datetime) -> int:
        """Nothing of its own: the physical sites are swept."""
        return 0


def _take(pending: collections.deque[memoryview], size: int) -> bytes:
    """The first ``size`` bytes of the views in ``pending`` (removed from it), one copy."""
    parts: list[memoryview] = []
    want = size
    while want:
        view = pending[0]
        if len(view) <= want:
            parts.append(pending.popleft())
            want -= len(view)
        else:
            parts.append(view[:want])
            pending[0] = view[want:]
            want = 0
    if len(parts) == 1:
        whole = parts[0]
        if isinstance(whole.obj, bytes) and len(whole) == len(whole.obj):
            return whole.obj  # a whole bytes object: no copy
        return whole.tobytes()
    return b"".join(parts)


async def _transformed(
    data: bytes, transform: Callable[[bytes], Sequence[bytes]] | None
) -> Sequence[bytes]:
    if transform is None:
        return (data,)
    if len(data) >= THREADED:
        return await asyncio.to_thread(transform, data)
    return transform(data)


class _ShardedWriter:
    """Cuts the blob into frames and writes each shard's frame to its site, all in step.

    One frame's writes may be in flight while the next frame is encoded (on a worker thread):
    encoding and the sites' writes overlap, and at most two frames are held."""

    def __init__(self, blobs: ShardedBlobs, blob_id: str, writers: list[BlobWriter]) -> None:
        self._blobs = blobs
        self._blob_id = blob_id
        self._writers = writers
        self._codec = blobs.codec
        self._pending: collections.deque[memoryview] = collections.deque()
        self._held = 0
        self._inflight: asyncio.Future[list[object]] | None = None
        self._done = False

    async def _emit(self, data: bytes) -> None:
        codec = self._codec
        if len(data) >= THREADED:
            shards = await asyncio.to_thread(codec.encode, data)
        else:
            shards = codec.encode(data)
        await self._settle()
        self._inflight = asyncio.gather(
            *(w.write(s) for w, s in zip(self._writers, shards, strict=True)),
            return_exceptions=True,
        )

    async def _settle(self) -> None:
        """Wait for the frame in flight; raise its first failure."""
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            self._raise_first(await inflight)

    def _raise_first(self, results: Sequence[object]) -> None:
        for name, result in zip(self._blobs.layout.sites, results, strict=True):
            if isinstance(result, OSError | errors.StorageFull):
                raise self._blobs._write_error(name, result) from result
            if isinstance(result, BaseException):
                raise result

    async def write(self, data: bytes | memoryview) -> None:
        """Append; whole frames go out as they fill."""
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer
        if not data:
            return
        self._pending.append(memoryview(data))
        self._held += len(data)
        per_frame = self._codec.data_per_frame
        while self._held >= per_frame:
            self._held -= per_frame
            await self._emit(_take(self._pending, per_frame))

    async def write_from(self, block: PendingBlock) -> None:
        """Make the pieces (on a worker thread when large), then append them."""
        pieces = await asyncio.to_thread(block.make) if block.size >= THREADED else block.make()
        for piece in pieces:
            await self.write(piece)

    async def commit(self) -> None:
        """The last frame, then every shard durable; any failure removes them all."""
        if self._held:
            frame, self._held = _take(self._pending, self._held), 0
            await self._emit(frame)
        await self._settle()
        results = await asyncio.gather(*(w.commit() for w in self._writers), return_exceptions=True)
        self._done = True
        if any(r is not None for r in results):
            await self._blobs.delete(self._blob_id)
            self._raise_first(results)

    async def abort(self) -> None:
        """Discard every shard, committed or not (once writes in flight have ended)."""
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            await asyncio.gather(inflight, return_exceptions=True)
        for writer in self._writers:
            await writer.abort()
        if self._done:
            await self._blobs.delete(self._blob_id)
