"""A site held in memory: the :class:`~andromede.ports.SiteBackend` of service tests.

It keeps the promises the local directory site keeps (``local.py``), checked by the same
contract suite (``tests/contract/test_site_backend.py``): a blob being written is invisible
until its commit, which makes it visible whole in one step; an aborted or swept write leaves
nothing; a missing blob is BlobNotFound; a blob whose format header is damaged, or that is
shorter than asked for, is DataCorrupted and never served; ids are never paths; committed
blobs and abandoned writes are listed by age for the janitor. Ages come from the clock it is
given, so a test moves time for the janitor's grace periods instead of sleeping.

Faults are injected through its ``lose``/``truncate``/``flip``/``damage_header`` methods
(what deleting, truncating or overwriting a blob file does to a local site), ``offline``
(a site that cannot be reached) and ``capacity`` (a full one).
"""

from __future__ import annotations

import datetime as dt
import errno
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from andromede.core import errors
from andromede.dataplane.local import READ_BLOCK, check_blob_id
from andromede.ports import Clock, PendingBlock

# A stored blob starts with this marker, as a local blob file starts with its header block:
# damaging it is how a test makes a blob the site itself refuses to serve.
MAGIC = b"ANDRMEM1"
# What ``usage`` reports free when no capacity was set.
UNLIMITED = 1 << 50


class _SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class _Stored:
    """A committed blob: its bytes (marker first) and when it was committed. Replaced, never
    changed in place, so that a read in progress keeps the bytes it started with (as an open
    file descriptor does)."""

    raw: bytes
    modified: dt.datetime


class MemoryBlobWriter:
    """One blob being written; :meth:`commit` makes it visible under its id."""

    def __init__(self, site: MemorySite, blob_id: str) -> None:
        self._site = site
        self._blob_id = blob_id
        self._buffer: bytearray | None = bytearray()
        self.touched = site.clock.now()

    @property
    def written(self) -> int:
        """Bytes written so far (0 once closed)."""
        return len(self._buffer) if self._buffer is not None else 0

    def _open_buffer(self) -> bytearray:
        if self._buffer is None:
            raise RuntimeError("blob writer is closed")
        return self._buffer

    async def write(self, data: bytes | memoryview) -> None:
        """Append ``data``; StorageFull past the site's capacity."""
        buffer = self._open_buffer()
        self._site.check_reachable()
        self._site.reserve(len(data))
        buffer += data
        self.touched = self._site.clock.now()

    async def write_from(self, block: PendingBlock) -> None:
        """Append what ``block`` makes."""
        for piece in block.make():
            await self.write(piece)

    async def commit(self) -> None:
        """Make the blob visible whole (replacing one of the same id, as a rename does);
        FileNotFoundError when the sweeper removed this write meanwhile."""
        buffer = self._open_buffer()
        try:
            self._site.check_reachable()
            if self._site.pending.get(self._blob_id) is not self:
                raise FileNotFoundError(errno.ENOENT, "the temporary blob is gone")
            self._site.install(self._blob_id, bytes(buffer))
        except BaseException:
            await self.abort()
            raise
        del self._site.pending[self._blob_id]
        self._buffer = None

    async def abort(self) -> None:
        """Discard what was written (safe after a failure, or twice)."""
        self._buffer = None
        if self._site.pending.get(self._blob_id) is self:
            del self._site.pending[self._blob_id]


class MemorySite:
    """A :class:`~andromede.ports.SiteBackend` whose blobs are kept in a dict.

    ``clock``: where blob ages come from (default: the system's UTC time). ``capacity``: how
    many data bytes it holds before writes fail with StorageFull (None: no limit).
    """

    def __init__(
        self, name: str, *, clock: Clock | None = None, capacity: int | None = None
    ) -> None:
        self.name = name
        self.clock: Clock = clock or _SystemClock()
        self.capacity = capacity
        self.offline = False
        self.blobs: dict[str, _Stored] = {}
        self.pending: dict[str, MemoryBlobWriter] = {}

    # --- what writers and readers share ------------------------------------------------------
    def check_reachable(self) -> None:
        """OSError while the site is ``offline``."""
        if self.offline:
            raise OSError(errno.EIO, f"site {self.name} cannot be reached")

    def used(self) -> int:
        """Data bytes held, committed or being written."""
        committed = sum(len(b.raw) - len(MAGIC) for b in self.blobs.values())
        return committed + sum(w.written for w in self.pending.values())

    def reserve(self, size: int) -> None:
        """StorageFull when ``size`` more bytes would not fit."""
        if self.capacity is not None and self.used() + size > self.capacity:
            raise errors.StorageFull()

    def install(self, blob_id: str, data: bytes) -> None:
        """Make ``data`` the committed blob ``blob_id``, aged from now."""
        self.blobs[blob_id] = _Stored(MAGIC + data, self.clock.now())

    def _stored(self, blob_id: str) -> _Stored:
        check_blob_id(blob_id)
        self.check_reachable()
        found = self.blobs.get(blob_id)
        if found is None:
            raise errors.BlobNotFound()
        return found

    # --- SiteBackend ---------------------------------------------------------------------------
    async def create(self, blob_id: str) -> MemoryBlobWriter:
        """Start a new blob; FileExistsError while another write of the same id is going on
        (the local site's temporary file is created exclusively)."""
        check_blob_id(blob_id)
        self.check_reachable()
        if blob_id in self.pending:
            raise FileExistsError(errno.EEXIST, "a write of this blob is in progress")
        writer = MemoryBlobWriter(self, blob_id)
        self.pending[blob_id] = writer
        return writer

    async def put(self, blob_id: str, data: bytes) -> None:
        """Write a whole blob at once; FileExistsError when the id is taken."""
        check_blob_id(blob_id)
        self.check_reachable()
        if blob_id in self.blobs:
            raise FileExistsError(errno.EEXIST, "blob exists")
        self.reserve(len(data))
        self.install(blob_id, bytes(data))

    async def read(
        self,
        blob_id: str,
        offset: int,
        length: int,
        *,
        piece: int | None = None,
        transform: Callable[[bytes], Sequence[bytes]] | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream part of a blob in pieces of ``piece`` bytes (transformed), checking its
        marker; DataCorrupted when it is shorter than asked for."""
        raw = self._stored(blob_id).raw
        if raw[: len(MAGIC)] != MAGIC:
            raise errors.DataCorrupted()
        step = piece or READ_BLOCK
        for done in range(0, length, step):
            want = min(step, length - done)
            start = len(MAGIC) + offset + done
            data = raw[start : start + want]
            if len(data) < want:
                raise errors.DataCorrupted("Stored data is shorter than its manifest.")
            for out in transform(data) if transform is not None else (data,):
                yield out

    async def size(self, blob_id: str) -> int:
        """The blob's data length. BlobNotFound."""
        return len(self._stored(blob_id).raw) - len(MAGIC)

    async def usage(self) -> tuple[int, int]:
        """(bytes used, bytes free); OSError while offline."""
        self.check_reachable()
        used = self.used()
        free = UNLIMITED if self.capacity is None else max(self.capacity - used, 0)
        return used, free

    async def delete(self, blob_id: str) -> None:
        """Remove a committed blob (missing is fine); OSError while offline."""
        check_blob_id(blob_id)
        self.check_reachable()
        self.blobs.pop(blob_id, None)

    async def list_blobs(self, older_than: dt.datetime) -> AsyncIterator[str]:
        """Committed blob ids last written before ``older_than``."""
        self.check_reachable()
        for blob_id, stored in sorted(self.blobs.items()):
            if stored.modified < older_than:
                yield blob_id

    async def sweep_temporary(self, older_than: dt.datetime) -> int:
        """Drop writes not touched since ``older_than`` (their commit then fails)."""
        self.check_reachable()
        stale = [i for i, w in self.pending.items() if w.touched < older_than]
        for blob_id in stale:
            del self.pending[blob_id]
        return len(stale)

    # --- faults (tests) ------------------------------------------------------------------------
    def data(self, blob_id: str) -> bytes:
        """The data bytes stored under ``blob_id`` (KeyError when absent), as someone holding
        the site's disks would read them."""
        return self.blobs[blob_id].raw[len(MAGIC) :]

    def lose(self, blob_id: str) -> None:
        """The blob vanishes (a deleted file, a lost disk sector's worth)."""
        del self.blobs[blob_id]

    def truncate(self, blob_id: str, size: int) -> None:
        """Keep only the first ``size`` data bytes."""
        stored = self.blobs[blob_id]
        self.blobs[blob_id] = _Stored(stored.raw[: len(MAGIC) + size], stored.modified)

    def flip(self, blob_id: str, offset: int) -> None:
        """Flip one bit of data byte ``offset``: silent rot, served as it is (a framed layout's
        checksums catch it, the site does not)."""
        stored = self.blobs[blob_id]
        raw = bytearray(stored.raw)
        raw[len(MAGIC) + offset] ^= 0x40
        self.blobs[blob_id] = _Stored(bytes(raw), stored.modified)

    def damage_header(self, blob_id: str) -> None:
        """Overwrite the blob's marker: the site refuses to serve it (DataCorrupted)."""
        stored = self.blobs[blob_id]
        self.blobs[blob_id] = _Stored(b"X" * len(MAGIC) + stored.raw[len(MAGIC) :], stored.modified)
