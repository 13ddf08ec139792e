"""The data plane: sites that hold blobs, and the writers that fill them."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Protocol

from andromede.core.models import (
    BlobRef,
)
from andromede.core.placement import Layout


class PendingBlock(Protocol):
    """A block whose bytes are made where they are written: the sealing writer's chunks are
    sealed on the site writer's worker thread, so sealing and writing a block is one trip to
    a thread (measured faster than a trip each)."""

    @property
    def size(self) -> int:
        """How many bytes :meth:`make` returns in all."""
        ...

    def make(self) -> Sequence[bytes | memoryview]:
        """The block's bytes, in order (called once, possibly on a worker thread)."""
        ...


class BlobWriter(Protocol):
    """A blob being written. Invisible until :meth:`commit` returns."""

    async def write(self, data: bytes | memoryview) -> None:
        """Append bytes."""
        ...

    async def write_from(self, block: PendingBlock) -> None:
        """Append ``block``, made where the writing happens (on the writing worker thread
        for a large block)."""
        ...

    async def commit(self) -> None:
        """Make the blob durable (fsync) and visible under its id (atomic rename)."""
        ...

    async def abort(self) -> None:
        """Discard everything written; safe to call after a failure or twice."""
        ...


class SiteBackend(Protocol):
    """A place blobs live: a local directory now; a Ceph pool or remote S3 later; or a layout
    (``dataplane/sharded.py``) that spreads each blob over several of those."""

    name: str

    async def create(self, blob_id: str) -> BlobWriter:
        """Start writing a new blob."""
        ...

    async def put(self, blob_id: str, data: bytes) -> None:
        """Write a whole (small) blob durably; it is visible under its id once this returns."""
        ...

    def read(
        self,
        blob_id: str,
        offset: int,
        length: int,
        *,
        piece: int | None = None,
        transform: Callable[[bytes], Sequence[bytes]] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Stream ``length`` bytes of the blob from ``offset``. Raises BlobNotFound.

        ``piece``: read in pieces of exactly this many bytes (the last one what is left).
        ``transform``: applied to each piece, in order, where it is read (on the reading
        worker thread); the pieces it returns are yielded instead (e.g. the plaintext of
        sealed chunks, so that one trip to a worker thread reads and decrypts)."""
        ...

    async def size(self, blob_id: str) -> int:
        """How many bytes the blob holds. Raises BlobNotFound."""
        ...

    async def usage(self) -> tuple[int, int | None]:
        """(bytes used, bytes free) where the site stores (free None: not known, as for a
        Ceph cluster without a manager); OSError when it cannot be reached."""
        ...

    async def delete(self, blob_id: str) -> None:
        """Remove a blob; missing is fine."""
        ...

    def list_blobs(self, older_than: dt.datetime) -> AsyncIterator[str]:
        """Ids of committed blobs last modified before ``older_than`` (for the sweeper)."""
        ...

    async def sweep_temporary(self, older_than: dt.datetime) -> int:
        """Delete uncommitted leftovers older than ``older_than``; returns how many."""
        ...


class ShardSet(SiteBackend, Protocol):
    """A layout's backend seen shard by shard, for scrub, repair and drain."""

    layout: Layout

    async def shard_sizes(self, blob_id: str) -> list[int | None]:
        """Each shard's stored size (None: missing or unreadable)."""
        ...

    async def verify_shard(self, blob_id: str, index: int, size: int) -> bool:
        """True when shard ``index`` has ``size`` bytes, a valid header and every frame's
        checksum right."""
        ...

    async def rebuild(
        self, blob_id: str, size: int, indices: Sequence[int], target: ShardSet
    ) -> int:
        """Write shards ``indices`` of ``target`` (the same blob, a layout differing at most
        at those indices) from this layout's readable shards; returns the bytes written."""
        ...


# Builds the backend of a layout over several sites (``dataplane/sharded.py``): the layout,
# how to find a site's backend, which sites are believed down, whom to tell about a degraded
# read (the blob) and about a site that failed a write.
ShardedFactory = Callable[
    [
        Layout,
        Callable[[str], SiteBackend],
        Callable[[], frozenset[str]],
        Callable[[BlobRef], None],
        Callable[[str], None],
    ],
    ShardSet,
]
