"""Ports: the protocols through which services reach the outside world.

Adapters implement them (``metadata/``, ``dataplane/``); services depend only on these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from typing import Protocol

from andromede.core.audit import AuditQuery, AuditRecord
from andromede.core.keys import BucketEncryption, KmsKey, Sealing
from andromede.core.models import (
    AccessKey,
    BlobRef,
    Bucket,
    DeleteCondition,
    Manifest,
    MultipartUpload,
    ObjectSummary,
    ObjectVersion,
    Part,
    Tenant,
    WriteCondition,
)
from andromede.core.placement import Layout, Region, Site, SiteState
from andromede.core.repair import DrainProgress, RepairTotals, ScrubState


class Clock(Protocol):
    """Time source; tests may pin it."""

    def now(self) -> dt.datetime:
        """Current UTC time, timezone-aware."""
        ...


class MetadataStore(Protocol):
    """Tenants, keys, buckets, object versions, uploads and blob garbage.

    Every mutating method is one transaction. Methods that replace or drop data return nothing
    about blobs: blobs no longer referenced are queued for collection in the same transaction
    (see :meth:`due_garbage`), so a crash never leaks nor loses data.
    Keys compare in UTF-8 byte order on every backend.
    """

    async def close(self) -> None:
        """Release connections."""
        ...

    # tenants and keys
    async def create_tenant(self, tenant: Tenant) -> None:
        """Raises TenantAlreadyExists."""
        ...

    async def get_tenant(self, name: str) -> Tenant | None:
        """The tenant, or None."""
        ...

    async def list_tenants(self) -> list[Tenant]:
        """All tenants by name."""
        ...

    async def create_access_key(self, key: AccessKey) -> None:
        """Raises NoSuchTenant when the tenant does not exist."""
        ...

    async def get_access_key(self, access_key_id: str) -> AccessKey | None:
        """The key with its secret, or None."""
        ...

    async def list_access_keys(self, tenant: str | None = None) -> list[AccessKey]:
        """Keys, optionally of one tenant."""
        ...

    async def delete_access_key(self, access_key_id: str) -> bool:
        """True when a key was deleted."""
        ...

    # buckets
    async def create_bucket(self, bucket: Bucket) -> None:
        """Raises BucketAlreadyExists when the name is taken (by anyone)."""
        ...

    async def get_bucket(self, name: str) -> Bucket | None:
        """The bucket, or None."""
        ...

    async def list_buckets(
        self, tenant: str, *, prefix: str = "", after: str = "", limit: int | None = None
    ) -> list[Bucket]:
        """The tenant's buckets by name: those starting with ``prefix`` whose names sort after
        ``after``, at most ``limit`` of them (all when None)."""
        ...

    async def delete_bucket(self, name: str) -> None:
        """Raises BucketNotEmpty if it holds objects; aborts its uploads; NoSuchBucket."""
        ...

    async def set_bucket_encryption(self, name: str, config: BucketEncryption | None) -> None:
        """Set (or with None remove) a bucket's default encryption. Raises NoSuchBucket."""
        ...

    async def set_bucket_tags(self, name: str, tags: dict[str, str]) -> None:
        """Replace a bucket's tag set (an empty one removes it). Raises NoSuchBucket."""
        ...

    # key-encryption keys (metadata only: the material stays in the key manager)
    async def create_kms_key(self, key: KmsKey) -> None:
        """Register a key. Raises KmsAliasExists when the tenant has a key with its alias,
        NoSuchTenant when the tenant does not exist."""
        ...

    async def get_kms_key(self, key_id: str) -> KmsKey | None:
        """The key, or None."""
        ...

    async def get_kms_key_by_alias(self, tenant: str, alias: str) -> KmsKey | None:
        """The tenant's key with this alias, or None."""
        ...

    async def list_kms_keys(self, tenant: str | None = None) -> list[KmsKey]:
        """Keys by (tenant, created, key id), optionally of one tenant."""
        ...

    async def update_kms_key(self, key: KmsKey, expected: KmsKey | None = None) -> bool:
        """Replace the stored key (same ``key_id``); with ``expected``, a compare-and-swap:
        only if the stored key still equals ``expected`` (False otherwise). KmsNotFound."""
        ...

    # re-wrapping DEKs (key rotation): only the manifest's wrapped keys change, never data
    async def list_versions(self, bucket: str, after_key: str, limit: int) -> list[ObjectVersion]:
        """Current versions of a bucket with keys after ``after_key``, in key order."""
        ...

    async def replace_manifest(
        self, bucket: str, key: str, version_id: str, manifest: Manifest
    ) -> bool:
        """Swap the manifest of ``version_id`` if it is still the current version of the key
        (same blobs, new wrapped keys); False when the object changed meanwhile."""
        ...

    async def list_parts_after(self, after: tuple[str, int], limit: int) -> list[Part]:
        """Parts of every in-progress upload after (upload id, part number), in that order."""
        ...

    async def replace_part_sealing(
        self, upload_id: str, part_number: int, blob_id: str, sealing: Sealing
    ) -> bool:
        """Swap a part's sealing if the part still holds blob ``blob_id``; False otherwise."""
        ...

    # objects
    async def put_object(
        self, version: ObjectVersion, condition: WriteCondition | None = None
    ) -> None:
        """Make ``version`` the current one, atomically; the replaced one's blobs become garbage.

        ``condition`` is checked in the same transaction: PreconditionFailed when it fails.
        Raises NoSuchBucket when the bucket vanished.
        """
        ...

    async def get_object(self, bucket: str, key: str) -> ObjectVersion | None:
        """The current version, or None."""
        ...

    async def delete_object(
        self, bucket: str, key: str, condition: DeleteCondition | None = None
    ) -> bool:
        """Remove the key; its blobs become garbage. True when it existed.

        ``condition`` is checked in the same transaction: PreconditionFailed when the object
        differs from it; a missing key is no error.
        """
        ...

    async def update_object_tags(
        self, bucket: str, key: str, tags: dict[str, str]
    ) -> ObjectVersion | None:
        """Replace the tag set of the current version; None when the key does not exist."""
        ...

    async def list_objects(
        self, bucket: str, prefix: str, start: str, inclusive: bool, limit: int
    ) -> Sequence[ObjectSummary]:
        """Up to ``limit`` objects with ``prefix``, keys from ``start`` on (or after), sorted."""
        ...

    async def bucket_is_empty(self, bucket: str) -> bool:
        """True when the bucket holds no object."""
        ...

    # multipart
    async def create_upload(self, upload: MultipartUpload) -> None:
        """Register a new upload. Raises NoSuchBucket."""
        ...

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> MultipartUpload | None:
        """The upload if it exists for this bucket and key."""
        ...

    async def put_part(self, part: Part) -> None:
        """Add or replace a part (the replaced part's blob becomes garbage). NoSuchUpload."""
        ...

    async def list_parts(
        self, upload_id: str, after_part: int = 0, limit: int = 10000
    ) -> list[Part]:
        """Parts by number, those after ``after_part``."""
        ...

    async def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> list[MultipartUpload]:
        """In-progress uploads sorted by (key, initiated, upload id), after the markers."""
        ...

    async def complete_upload(
        self,
        upload_id: str,
        version: ObjectVersion,
        used_parts: Sequence[int],
        condition: WriteCondition | None = None,
    ) -> None:
        """Atomically: install ``version``, drop the upload; unused parts become garbage.

        Raises NoSuchUpload if the upload is gone (completed or aborted concurrently).
        """
        ...

    async def abort_upload(self, upload_id: str) -> bool:
        """Drop the upload; its parts become garbage. True when it existed."""
        ...

    # blob garbage
    async def add_garbage(self, blobs: Sequence[BlobRef], due: dt.datetime) -> None:
        """Queue blobs for deletion at ``due`` (used when a write fails after storing data)."""
        ...

    async def due_garbage(self, now: dt.datetime, limit: int) -> list[BlobRef]:
        """Queued blobs whose grace period has passed."""
        ...

    async def forget_garbage(self, blobs: Sequence[BlobRef]) -> None:
        """Remove blobs from the queue once deleted."""
        ...


class PlacementStore(Protocol):
    """The metadata store's placement methods (sites, regions, shard moves, repairs)."""

    async def create_site(self, site: Site, created: dt.datetime) -> None:
        """Register a site. SiteAlreadyExists when its name or path is taken."""
        ...

    async def list_sites(self) -> list[Site]:
        """Every site, by name."""
        ...

    async def site_progress(self) -> dict[str, DrainProgress]:
        """Drain progress by site name."""
        ...

    async def set_site_state(
        self, name: str, state: SiteState, progress: DrainProgress | None = None
    ) -> None:
        """Change a site's state (and its drain progress). NoSuchSite."""
        ...

    async def set_site_progress(self, name: str, progress: DrainProgress) -> None:
        """Record drain progress."""
        ...

    async def delete_site(self, name: str) -> None:
        """Forget a site. NoSuchSite; SiteNotDrained while a live blob names it."""
        ...

    async def create_region(self, region: Region, created: dt.datetime) -> None:
        """Register a region. RegionAlreadyExists."""
        ...

    async def list_regions(self) -> list[Region]:
        """Every region, by name."""
        ...

    async def blobs_after(
        self,
        after: BlobRef | None,
        limit: int,
        site: str | None = None,
        *,
        after_id: str = "",
    ) -> list[BlobRef]:
        """Live blobs in a stable order (by blob id, then layout) after ``after`` and with
        ids after ``after_id``; optionally only those whose layout names ``site``. A blob id
        alone is a resume point: every live reference to a blob names the same layout (a
        move changes them all at once)."""
        ...

    async def blob_buckets(self, blob: BlobRef) -> set[str]:
        """The buckets whose objects or uploads name ``blob``."""
        ...

    async def blob_layouts(self, blob_ids: Sequence[str]) -> dict[str, set[Layout]]:
        """For each named blob id: the layouts naming it."""
        ...

    async def layout_counts(self) -> dict[Layout, int]:
        """Live blobs per layout."""
        ...

    async def relocate_blob(self, old: BlobRef, new: BlobRef) -> bool:
        """Point every live reference to ``old`` at ``new`` (same blob id); False when
        nothing live names ``old``."""
        ...

    async def queue_repairs(self, blobs: Iterable[BlobRef], now: dt.datetime) -> None:
        """Queue degraded blobs for repair."""
        ...

    async def queued_repairs(self, limit: int) -> list[BlobRef]:
        """The oldest queued repairs."""
        ...

    async def count_repairs(self) -> int:
        """How many blobs wait for repair."""
        ...

    async def forget_repairs(self, blobs: Iterable[BlobRef]) -> None:
        """Drop blobs from the repair queue."""
        ...

    async def set_scrub_state(self, state: ScrubState) -> None:
        """Store where the scrubber stands."""
        ...

    async def scrub_state(self) -> ScrubState | None:
        """Where the scrubber stands; None before its first run."""
        ...

    async def add_repair_totals(self, done: RepairTotals) -> None:
        """Add one process's repairs to the totals, atomically (several processes report)."""
        ...

    async def repair_totals(self) -> RepairTotals | None:
        """What every process's repairs have done; None before any reported."""
        ...


class FullStore(MetadataStore, PlacementStore, Protocol):
    """Both halves of the metadata store (what the background jobs need)."""


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

    async def usage(self) -> tuple[int, int]:
        """(bytes used, bytes free) where the site stores; OSError when it cannot be
        reached."""
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


class AuditSink(Protocol):
    """Where audit records go; :meth:`record` returns only once the record is durable."""

    def healthy(self) -> bool:
        """False while writes are known to fail (requests are then refused up front)."""
        ...

    async def record(self, record: AuditRecord) -> None:
        """Make ``record`` durable; raises AuditUnavailable when it cannot."""
        ...

    async def close(self) -> None:
        """Flush, sign the head, release files."""
        ...


class AuditReader(Protocol):
    """Reads the trail back (records only, oldest first)."""

    async def query(self, query: AuditQuery) -> list[dict[str, object]]:
        """Records matching ``query`` with ``seq > query.after_seq``, at most ``query.limit``."""
        ...


class KeyManager(Protocol):
    """Holds key-encryption keys: DEKs are wrapped and unwrapped inside it, the KEK material
    never leaves it (built-in keystore, PKCS#11 token, KMIP server).

    Errors: KmsNotFound when a handle names no key (destroyed); DecryptionFailed when a
    wrapped DEK or its associated data does not authenticate; KeyManagerUnavailable when the
    manager cannot be reached or fails.
    """

    name: str

    async def create_key(self, label: str) -> str:
        """Generate a new 256-bit KEK inside the manager; returns its handle (opaque text of
        at most 200 characters, kept in the metadata store)."""
        ...

    async def wrap(self, handle: str, dek: bytes, aad: bytes) -> bytes:
        """Authenticated encryption of ``dek`` under the KEK, bound to ``aad``."""
        ...

    async def unwrap(self, handle: str, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`."""
        ...

    async def destroy_key(self, handle: str) -> None:
        """Destroy the KEK material irreversibly; a handle already gone is fine."""
        ...

    async def close(self) -> None:
        """Release sessions and connections."""
        ...


class PieceOpener(Protocol):
    """Opens a range's sealed bytes piece by piece (see :meth:`Envelope.piece_opener`)."""

    piece: int

    def __call__(self, sealed: bytes) -> Sequence[bytes]:
        """The kept plaintext of the next piece; DecryptionFailed, DataCorrupted."""
        ...

    def finish(self) -> None:
        """Raise DataCorrupted unless every chunk of the range was given."""
        ...


class Envelope(Protocol):
    """Authenticated encryption of blobs (envelope format: ``core/envelope.py``).

    Large buffers are sealed and opened on worker threads (the cipher releases the GIL).
    """

    def new_dek(self) -> bytes:
        """A fresh random 256-bit data key."""
        ...

    def sealing_writer(
        self, inner: BlobWriter, dek: bytes, digest: bytes, chunk_size: int
    ) -> BlobWriter:
        """A writer that seals what it is given into ``inner``: header first, then each full
        chunk as it fills, the last (possibly empty) chunk at :meth:`BlobWriter.commit`."""
        ...

    def open_stream(
        self,
        sealed: AsyncIterator[bytes],
        dek: bytes,
        digest: bytes,
        chunk_size: int,
        size: int,
        start: int,
        end: int,
    ) -> AsyncIterator[bytes]:
        """Plaintext bytes ``[start, end)`` of a ``size``-byte object. ``sealed`` yields the
        blob's bytes from ``span.offset`` for ``span.length`` bytes, where ``span`` is
        :func:`andromede.core.envelope.span` of the same arguments. Raises DecryptionFailed
        at the first chunk that does not authenticate (never yielding any of its bytes) and
        DataCorrupted when ``sealed`` is short or long."""
        ...

    def piece_opener(
        self, dek: bytes, digest: bytes, chunk_size: int, size: int, start: int, end: int
    ) -> PieceOpener:
        """Opens plaintext ``[start, end)`` of a ``size``-byte object from the sealed bytes
        of its span (:func:`andromede.core.envelope.span`), read in pieces of exactly
        ``opener.piece`` bytes and given to the opener in order (a site read's transform)."""
        ...

    def wrap(self, key: bytes, dek: bytes, aad: bytes) -> bytes:
        """Wrap a DEK under a key held here (an SSE-C customer key; the built-in keystore)."""
        ...

    def unwrap(self, key: bytes, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`; DecryptionFailed when the key or ``aad`` is wrong."""
        ...
