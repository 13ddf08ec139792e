"""Ports: the protocols through which services reach the outside world.

Adapters implement them (``metadata/``, ``dataplane/``); services depend only on these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from andromede.core.audit import AuditQuery, AuditRecord
from andromede.core.models import (
    AccessKey,
    BlobRef,
    Bucket,
    MultipartUpload,
    ObjectSummary,
    ObjectVersion,
    Part,
    Tenant,
    WriteCondition,
)


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

    async def list_buckets(self, tenant: str) -> list[Bucket]:
        """The tenant's buckets by name."""
        ...

    async def delete_bucket(self, name: str) -> None:
        """Raises BucketNotEmpty if it holds objects; aborts its uploads; NoSuchBucket."""
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

    async def delete_object(self, bucket: str, key: str) -> bool:
        """Remove the key; its blobs become garbage. True when it existed."""
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

    async def referenced_blobs(self, blobs: Sequence[BlobRef]) -> set[BlobRef]:
        """Those of ``blobs`` that a current version, a part or the garbage queue names
        (one query per few hundred blobs: the sweeper checks whole directories)."""
        ...


class BlobWriter(Protocol):
    """A blob being written. Invisible until :meth:`commit` returns."""

    async def write(self, data: bytes | memoryview) -> None:
        """Append bytes."""
        ...

    async def commit(self) -> None:
        """Make the blob durable (fsync) and visible under its id (atomic rename)."""
        ...

    async def abort(self) -> None:
        """Discard everything written; safe to call after a failure or twice."""
        ...


class SiteBackend(Protocol):
    """A place blobs live: a local directory now; a Ceph pool or remote S3 later."""

    name: str

    async def create(self, blob_id: str) -> BlobWriter:
        """Start writing a new blob."""
        ...

    async def put(self, blob_id: str, data: bytes) -> None:
        """Write a whole (small) blob durably; it is visible under its id once this returns."""
        ...

    def read(self, blob_id: str, offset: int, length: int) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes of the blob from ``offset``. Raises BlobNotFound."""
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
