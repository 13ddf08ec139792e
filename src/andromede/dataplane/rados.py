"""A site that is a Ceph pool, through librados (Debian's ``python3-rados``).

Objects of one blob (blob ids are random hex, never derived from a key name):

    <blob_id>         the head: a 32-byte header, then the blob's first STRIPE bytes
    <blob_id>.<n:x>   stripe n >= 1: the blob's bytes [n*STRIPE, (n+1)*STRIPE)

Header (big endian): ``ANDRRADS``, the format (u32), the stripe size (u32), the data size
(u64), eight reserved bytes. The bytes are what the layers above made: sealed chunks, or
framed shards with their per-frame checksums; nothing leaves this process in clear.

Commit: every stripe acknowledged by RADOS (which acknowledges a write once every replica of
its placement group holds it), then the head written. A blob is visible once its head
exists, and it is complete then; stripes without a head are an interrupted write, removed by
:meth:`RadosSite.sweep_temporary` once old. A read of a range touches only the objects that
hold it. Memory per request is bounded: a writer holds its head and at most ``WRITE_AHEAD``
stripes, a reader at most ``READ_AHEAD`` segments of ``SEGMENT`` bytes.

Connections, errors and completions: ``andromede/librados.py``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import errno
import logging
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

from andromede.core import errors
from andromede.core.locations import RadosLocation
from andromede.dataplane.local import check_blob_id
from andromede.librados import (
    OPERATION_FULL_TRY,
    Bridge,
    Cluster,
    load_rados,
    os_error,
    raise_for,
)
from andromede.ports import PendingBlock

log = logging.getLogger("andromede.rados")

MAGIC = b"ANDRRADS"
BLOB_FORMAT = 1
HEADER = struct.Struct(">8sIIQQ")
STRIPE = 4 << 20
SEGMENT = 2 << 20
WRITE_AHEAD = 3
READ_AHEAD = 4
# A read starting this close to a head's header reads the header with it (one operation).
HEAD_SLACK = HEADER.size + (64 << 10)
INLINE_IO = 256 << 10
# The health probe: how often, and how long a stat of one object may take before the site is
# taken for down.
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 3.0
PROBE_OBJECT = "andromede-site-probe"


class RadosSite:
    """A :class:`~andromede.ports.SiteBackend` over a Ceph pool.

    Opening one does not connect: the connection is made on first use, on a worker thread,
    so that a gateway starts (and serves from its other sites) while a cluster is away."""

    def __init__(self, name: str, location: RadosLocation) -> None:
        self.name = name
        self.location = location
        self._cluster = Cluster.of(location.conf, location.user)
        self._io: Any = None
        self._probed: tuple[int, int | None] | OSError | None = None
        self._probed_at = -1e9
        self._probe_task: asyncio.Task[None] | None = None
        self._replicas = 1

    # --- plumbing -----------------------------------------------------------------------------
    async def _ioctx(self) -> Any:
        if self._io is None:
            self._io = await asyncio.to_thread(
                self._cluster.ioctx, self.location.pool, self.location.namespace
            )
        return self._io

    async def _op(
        self, what: str, start: Callable[[Any, Callable[..., None]], Any]
    ) -> tuple[int, Any]:
        io = await self._ioctx()
        fut, done = Bridge(asyncio.get_running_loop()).future()
        try:
            start(io, done)
        except Exception as exc:
            raise os_error(exc, f"site {self.name}: {what}") from None
        return await fut

    async def _write_full(
        self, oid: str, data: bytes, *, exclusive: bool = False, mtime: int = 0
    ) -> None:
        """Write a whole object, acknowledged once every replica holds it. ``exclusive``:
        FileExistsError when it exists; ``mtime``: its time (tests age objects so)."""
        rados = load_rados()

        def start(io: Any, cb: Callable[..., None]) -> None:
            op = io.create_write_op()
            try:
                if exclusive:
                    op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
                op.write_full(data)
                # The binding passes 0 on as a time (1970), not as "now".
                io.operate_aio_write_op(
                    op,
                    oid,
                    oncomplete=cb,
                    mtime=mtime or int(time.time()),
                    flags=OPERATION_FULL_TRY,
                )
            finally:
                io.release_write_op(op)

        code, _ = await self._op("write", start)
        if code == -errno.EEXIST:
            raise FileExistsError(errno.EEXIST, f"blob {oid} exists on site {self.name}")
        raise_for(code, f"site {self.name}: write {oid}")

    async def _exists(self, oid: str) -> bool:
        code, _ = await self._op("stat", lambda io, cb: io.aio_stat(oid, cb))
        if code == -errno.ENOENT:
            return False
        raise_for(code, f"site {self.name}: stat {oid}")
        return True

    async def _read(self, oid: str, length: int, offset: int) -> bytes | None:
        """``length`` bytes at ``offset`` (fewer at the end); None when the object is missing."""
        code, data = await self._op(
            "read", lambda io, cb: io.aio_read(oid, length, offset, oncomplete=cb)
        )
        if code == -errno.ENOENT:
            return None
        raise_for(code, f"site {self.name}: read {oid}")
        return bytes(data[:code]) if data is not None else b""

    async def _remove(self, oid: str) -> None:
        """Remove an object; missing is fine. Goes through on a full pool (space is freed so)."""

        def start(io: Any, cb: Callable[..., None]) -> None:
            op = io.create_write_op()
            try:
                op.remove()
                io.operate_aio_write_op(op, oid, oncomplete=cb, flags=OPERATION_FULL_TRY)
            finally:
                io.release_write_op(op)

        code, _ = await self._op("remove", start)
        if code != -errno.ENOENT:
            raise_for(code, f"site {self.name}: remove {oid}")

    async def _header(self, blob_id: str) -> int:
        """The blob's data size, from its head (BlobNotFound, DataCorrupted)."""
        raw = await self._read(blob_id, HEADER.size, 0)
        if raw is None:
            raise errors.BlobNotFound()
        return _parse_header(raw)

    # --- SiteBackend ----------------------------------------------------------------------------
    async def create(self, blob_id: str) -> RadosBlobWriter:
        """Start a new blob."""
        check_blob_id(blob_id)
        await self._write_full(_marker(blob_id), b"pending")
        return RadosBlobWriter(self, blob_id)

    async def put(self, blob_id: str, data: bytes) -> None:
        """A whole blob; one RADOS write when it fits its head."""
        check_blob_id(blob_id)
        if len(data) <= STRIPE:
            await self._write_full(blob_id, _header(len(data)) + data, exclusive=True)
            return
        if await self._exists(blob_id):
            raise FileExistsError(errno.EEXIST, f"blob {blob_id} exists on site {self.name}")
        writer = await self.create(blob_id)
        try:
            await writer.write(data)
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise

    async def read(
        self,
        blob_id: str,
        offset: int,
        length: int,
        *,
        piece: int | None = None,
        transform: Callable[[bytes], Sequence[bytes]] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Stream part of a blob: ``READ_AHEAD`` pieces in flight, each read straight into
        one buffer (from one object, or joined from two where it crosses a stripe) and
        transformed on a worker thread when large."""
        check_blob_id(blob_id)
        units = _units(blob_id, offset, length, piece or SEGMENT)
        # The header comes with the first read when that starts close to it.
        combined = bool(units) and units[0][0][0] == blob_id and units[0][0][1] < HEAD_SLACK
        header = None if combined else asyncio.ensure_future(self._read(blob_id, HEADER.size, 0))
        reads = _ReadAhead(self, units, combined)
        try:
            if header is not None:
                raw = await header
                if raw is None:
                    raise errors.BlobNotFound()
                _parse_header(raw)
            async for data in reads:
                if transform is None:
                    yield data
                    continue
                out = (
                    await asyncio.to_thread(transform, data)
                    if len(data) >= INLINE_IO
                    else (transform(data))
                )
                for chunk in out:
                    yield chunk
        finally:
            reads.cancel()
            if header is not None:
                header.cancel()

    async def _read_unit(self, unit: list[tuple[str, int, int]], with_header: bool) -> bytes:
        """One piece: its segments read at once, checked whole, joined where more than one."""
        reads = [
            self._read_with_header(oid, pos, want)
            if with_header and i == 0
            else self._read(oid, want, pos)
            for i, (oid, pos, want) in enumerate(unit)
        ]
        parts = await asyncio.gather(*reads)
        whole: list[bytes] = []
        for i, (part, (_, _, want)) in enumerate(zip(parts, unit, strict=True)):
            if part is None:
                if with_header and i == 0:
                    raise errors.BlobNotFound()
                raise errors.DataCorrupted("A stripe of a stored blob is missing.")
            if len(part) != want:
                raise errors.DataCorrupted("Stored data is shorter than its manifest.")
            whole.append(part)
        return whole[0] if len(whole) == 1 else b"".join(whole)

    async def _read_with_header(self, oid: str, pos: int, want: int) -> bytes | None:
        raw = await self._read(oid, pos + want, 0)
        if raw is None:
            return None
        _parse_header(raw[: HEADER.size])
        return raw[pos:]

    async def size(self, blob_id: str) -> int:
        """The blob's data size. BlobNotFound."""
        check_blob_id(blob_id)
        return await self._header(blob_id)

    async def usage(self) -> tuple[int, int | None]:
        """(bytes used, bytes free) from the cluster's statistics, divided by the pool's
        replica count; free None where the cluster gives no statistics. OSError when the
        last probe (a stat of one object, at most every second, answered within
        ``PROBE_TIMEOUT_S``) failed. Never waits on a cluster that is away for longer than
        the probe's time limit."""
        now = time.monotonic()
        if self._probe_task is None and now - self._probed_at >= PROBE_EVERY_S:
            self._probe_task = asyncio.ensure_future(self._probe())
        if self._probed is None and self._probe_task is not None:
            await asyncio.wait({self._probe_task})
        probed = self._probed
        if isinstance(probed, OSError):
            raise probed
        return probed if probed is not None else (0, None)

    async def _probe(self) -> None:
        try:
            self._probed = await asyncio.wait_for(self._probe_once(), PROBE_TIMEOUT_S)
        except TimeoutError:
            self._probed = OSError(
                errno.ETIMEDOUT,
                f"site {self.name}: the Ceph cluster of {self.location.conf} did not answer "
                f"within {PROBE_TIMEOUT_S:g} s",
            )
        except OSError as exc:
            self._probed = exc
        except Exception as exc:
            self._probed = os_error(exc, f"site {self.name}")
        finally:
            self._probed_at = time.monotonic()
            self._probe_task = None

    async def _probe_once(self) -> tuple[int, int | None]:
        await self._exists(PROBE_OBJECT)
        used, free = await asyncio.to_thread(self._cluster.stats)
        if self._probed is None or isinstance(self._probed, OSError):
            self._replicas = await asyncio.to_thread(self._cluster.pool_size, self.location.pool)
        return used // self._replicas, None if free is None else free // self._replicas

    async def check(self) -> None:
        """Connect, and write and remove one object (``site add``: the key may write here).
        OSError naming what is wrong."""
        await self._write_full(PROBE_OBJECT, b"andromede")
        await self._remove(PROBE_OBJECT)

    async def delete(self, blob_id: str) -> None:
        """Remove the head (the blob is gone for readers), then its stripes. Missing is
        fine; OSError when the cluster cannot be reached (the garbage entry stays queued)."""
        check_blob_id(blob_id)
        try:
            size = await self._header(blob_id)
        except errors.BlobNotFound:
            return
        except errors.DataCorrupted:
            size = 0
        await self._remove(blob_id)
        await asyncio.gather(*(self._remove(oid) for oid in _stripe_ids(blob_id, size)))

    async def list_blobs(self, older_than: dt.datetime) -> AsyncIterator[str]:
        """Committed blob ids (heads) last written before ``older_than``."""
        heads, _ = await asyncio.to_thread(self._listing, older_than.timestamp())
        for blob_id in heads:
            yield blob_id

    async def sweep_temporary(self, older_than: dt.datetime) -> int:
        """Remove the objects of writes that never committed (no head) and were last
        written before ``older_than``; returns how many writes."""
        _, pending = await asyncio.to_thread(self._listing, older_than.timestamp())
        swept = 0
        for blob_id, oids in pending.items():
            if await self._exists(blob_id):
                continue  # committed since the listing
            for oid in oids:
                await self._remove(oid)
            swept += 1
        return swept

    def _listing(self, cutoff: float) -> tuple[list[str], dict[str, list[str]]]:
        """(heads written before ``cutoff``, the other objects of each blob without a head
        none of whose objects was written since ``cutoff``)."""
        io = self._cluster.ioctx(self.location.pool, self.location.namespace)
        heads: set[str] = set()
        old_heads: list[str] = []
        others: dict[str, list[str]] = collections.defaultdict(list)
        fresh: set[str] = set()
        try:
            for obj in io.list_objects():
                oid = obj.key
                blob_id, dot, _ = oid.partition(".")
                try:
                    check_blob_id(blob_id)
                    _, mtime = io.stat(oid)
                except (ValueError, load_rados().ObjectNotFound):
                    continue
                old = time.mktime(mtime) < cutoff
                if not dot:
                    heads.add(oid)
                    if old:
                        old_heads.append(oid)
                    continue
                others[blob_id].append(oid)
                if not old:
                    fresh.add(blob_id)
        except Exception as exc:
            raise os_error(exc, f"site {self.name}: list") from None
        pending = {b: oids for b, oids in others.items() if b not in heads and b not in fresh}
        return old_heads, pending


class RadosBlobWriter:
    """Writes one blob: stripes go out as they fill, ``WRITE_AHEAD`` at most in flight; the
    head (header and first stripe) goes last, at :meth:`commit`."""

    def __init__(self, site: RadosSite, blob_id: str) -> None:
        self._site = site
        self._id = blob_id
        # The stripe being filled (0: the head), as the pieces written: joined once when full
        # (one copy; immutable pieces are kept by reference, others copied on the way in).
        self._head: list[bytes | memoryview] = []
        self._stripe: list[bytes | memoryview] = []
        self._filled = 0
        self._index = 0
        self._size = 0
        self._inflight: collections.deque[asyncio.Future[None]] = collections.deque()
        self._written: list[str] = []
        self._closed = False

    async def write(self, data: bytes | memoryview) -> None:
        """Append ``data``."""
        if self._closed:
            raise RuntimeError("blob writer is closed")
        view = memoryview(data if isinstance(data, bytes) else bytes(data)).cast("B")
        while view:
            parts = self._head if self._index == 0 else self._stripe
            take = view[: STRIPE - self._filled]
            parts.append(take)
            self._filled += len(take)
            self._size += len(take)
            view = view[len(take) :]
            if self._filled == STRIPE:
                if self._index:
                    await self._flush()
                self._index += 1
                self._filled = 0

    async def write_from(self, block: PendingBlock) -> None:
        """Append ``block``, made on a worker thread when large."""
        pieces = await asyncio.to_thread(block.make) if block.size >= INLINE_IO else block.make()
        for piece in pieces:
            await self.write(piece)

    async def _flush(self) -> None:
        oid = f"{self._id}.{self._index:x}"
        data, self._stripe = b"".join(self._stripe), []
        self._written.append(oid)
        self._inflight.append(asyncio.ensure_future(self._site._write_full(oid, data)))
        while len(self._inflight) > WRITE_AHEAD:
            await self._inflight.popleft()

    async def commit(self) -> None:
        """Every stripe acknowledged, then the head: the blob is durable and visible."""
        if self._closed:
            raise RuntimeError("blob writer is closed")
        try:
            if self._stripe:
                await self._flush()
            while self._inflight:
                await self._inflight.popleft()
            if not await self._site._exists(_marker(self._id)):
                # Taken for abandoned by the sweeper (a client that stalled for longer than
                # the grace): its stripes may be gone, so it must not become visible.
                raise FileNotFoundError(errno.ENOENT, f"the write of {self._id} was swept")
            await self._site._write_full(self._id, b"".join([_header(self._size), *self._head]))
        except BaseException:
            await self.abort()
            raise
        self._closed = True
        self._head, self._stripe = [], []
        try:
            await self._site._remove(_marker(self._id))
        except OSError:
            log.warning("site %s: the write marker of %s is left for the sweeper",
                        self._site.name, self._id)  # fmt: skip

    async def abort(self) -> None:
        """Wait for what is in flight and remove the stripes written (what cannot be removed
        now is an orphan the sweeper removes later)."""
        if self._closed:
            return
        self._closed = True
        inflight, self._inflight = list(self._inflight), collections.deque()
        await asyncio.gather(*inflight, return_exceptions=True)
        self._head, self._stripe = [], []
        for oid in (*self._written, _marker(self._id)):
            try:
                await self._site._remove(oid)
            except (OSError, errors.StorageFull):
                log.warning("site %s: stripe %s of an aborted write left for the sweeper",
                            self._site.name, oid)  # fmt: skip
                break


class _ReadAhead:
    """The pieces' bytes in order, ``READ_AHEAD`` pieces in flight."""

    def __init__(
        self, site: RadosSite, units: list[list[tuple[str, int, int]]], combined: bool
    ) -> None:
        self._site = site
        self._pending = collections.deque(units)
        self._ahead: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self._with_header = combined  # the first piece reads the header too
        self._fill()

    def _fill(self) -> None:
        while self._pending and len(self._ahead) < READ_AHEAD:
            unit = self._pending.popleft()
            read = self._site._read_unit(unit, self._with_header)
            self._with_header = False
            self._ahead.append(asyncio.ensure_future(read))

    def __aiter__(self) -> _ReadAhead:
        return self

    async def __anext__(self) -> bytes:
        if not self._ahead:
            raise StopAsyncIteration
        data = await self._ahead.popleft()
        self._fill()
        return data

    def cancel(self) -> None:
        for fut in self._ahead:
            fut.cancel()
        self._ahead.clear()


def _header(size: int) -> bytes:
    return HEADER.pack(MAGIC, BLOB_FORMAT, STRIPE, size, 0)


def _parse_header(raw: bytes) -> int:
    """The data size a head's header gives (DataCorrupted when it is not ours)."""
    if len(raw) < HEADER.size:
        raise errors.DataCorrupted()
    magic, fmt, stripe, size, _ = HEADER.unpack_from(raw)
    if magic != MAGIC or fmt != BLOB_FORMAT or stripe != STRIPE:
        raise errors.DataCorrupted()
    return int(size)


def _marker(blob_id: str) -> str:
    """The object that says a write of ``blob_id`` is in progress (made at create, removed
    after the commit; the sweeper takes a write whose marker it removed for abandoned)."""
    return f"{blob_id}.w"


def _stripe_ids(blob_id: str, size: int) -> list[str]:
    return [f"{blob_id}.{n:x}" for n in range(1, -(-size // STRIPE))]


def _units(blob_id: str, offset: int, length: int, piece: int) -> list[list[tuple[str, int, int]]]:
    """The bytes [offset, offset+length) as pieces of ``piece`` bytes (the last one what is
    left), each as its segments (``_segments``)."""
    return [
        _segments(blob_id, start, min(piece, offset + length - start), limit=piece)
        for start in range(offset, offset + length, piece)
    ]


def _segments(blob_id: str, offset: int, length: int, *, limit: int) -> list[tuple[str, int, int]]:
    """(object, offset in it, length) for the bytes [offset, offset+length), split at stripe
    boundaries and into reads of at most ``limit`` bytes."""
    out: list[tuple[str, int, int]] = []
    pos, end = offset, offset + length
    while pos < end:
        index, within = divmod(pos, STRIPE)
        take = min(end - pos, STRIPE - within, limit)
        if index == 0:
            out.append((blob_id, HEADER.size + within, take))
        else:
            out.append((f"{blob_id}.{index:x}", within, take))
        pos += take
    return out
