"""Metadata: what the store keeps (tenants, buckets, objects, uploads, garbage; sites, regions,
repair state), and the clock it reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Protocol

from andromede.core.keys import BucketEncryption, KmsKey, Sealing
from andromede.core.leases import Lease
from andromede.core.lifecycle import LifecycleConfig
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
    Versioning,
    VersionSummary,
    WriteCondition,
)
from andromede.core.object_lock import ObjectLockConfig, Retention
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
    async def list_versions(
        self, bucket: str, after_key: str, limit: int
    ) -> tuple[list[ObjectVersion], str | None]:
        """Every version (current or not, delete markers left out) of up to ``limit`` keys
        after ``after_key``, in key order, each key's newest first; and the key to resume
        after (None: none left)."""
        ...

    async def replace_manifest(
        self, bucket: str, key: str, version_id: str, manifest: Manifest
    ) -> bool:
        """Swap the manifest of version ``version_id`` (internal id, current or not; same
        blobs, new wrapped keys); False when the version was deleted meanwhile."""
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
        self, version: ObjectVersion, condition: WriteCondition | DeleteCondition | None = None
    ) -> None:
        """Make ``version`` (an object or a delete marker) the current one, atomically. The
        replaced version is kept as noncurrent, unless it and ``version`` are both the null
        version (its blobs then become garbage); a null ``version`` also replaces a
        noncurrent null version.

        ``condition`` is checked in the same transaction against the current object (a
        delete marker is none): PreconditionFailed when it fails. NoSuchBucket when the
        bucket vanished.
        """
        ...

    async def get_object(self, bucket: str, key: str) -> ObjectVersion | None:
        """The current version (possibly a delete marker), or None."""
        ...

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
        """A version or delete marker named as clients name it ("null" too), current or not."""
        ...

    async def version_seq(self, bucket: str, key: str, version_id: str) -> int | None:
        """A version's place among its key's versions (higher is newer), or None."""
        ...

    async def delete_object(
        self, bucket: str, key: str, condition: DeleteCondition | None = None
    ) -> bool:
        """Remove the current version for good (the newest noncurrent one, if any, becomes
        current); its blobs become garbage. True when the key existed.

        ``condition`` is checked in the same transaction: PreconditionFailed when the object
        differs from it; a missing key is no error.
        """
        ...

    async def delete_version(
        self,
        bucket: str,
        key: str,
        version_id: str,
        condition: DeleteCondition | None = None,
        guard: Callable[[ObjectVersion], None] | None = None,
    ) -> ObjectVersion | None:
        """Delete one version or delete marker for good (named as clients name it); the
        deleted one, or None when there is none. Deleting the current version makes the
        newest noncurrent one current. ``guard`` sees the version in the transaction and
        raises to refuse."""
        ...

    async def update_version_lock(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        change: Callable[[ObjectVersion], tuple[Retention | None, bool]],
    ) -> ObjectVersion | None:
        """Set a version's (the current one's, without ``version_id``) retention and legal
        hold to what ``change`` returns, in the transaction that reads it; None when there
        is no such object version."""
        ...

    async def locked_under_key(
        self, tenant: str, key_id: str, now: dt.datetime
    ) -> tuple[str, str, dt.datetime | None] | None:
        """A version of the tenant under COMPLIANCE retention or legal hold now whose bytes
        ``key_id`` seals: (bucket, key, until or None for a legal hold), or None."""
        ...

    async def set_bucket_lifecycle(self, name: str, config: LifecycleConfig | None) -> None:
        """Set or remove a bucket's lifecycle configuration. NoSuchBucket."""
        ...

    async def buckets_with_lifecycle(self) -> list[Bucket]:
        """Every bucket with a lifecycle configuration."""
        ...

    async def lifecycle_page(
        self, bucket: str, after_key: str, limit: int
    ) -> tuple[list[tuple[ObjectVersion, list[ObjectVersion]]], str | None]:
        """Up to ``limit`` keys after ``after_key``: each one's current version (delete
        markers too) and noncurrent versions, newest first; and where to resume (or None)."""
        ...

    async def uploads_started_before(
        self, bucket: str, before: dt.datetime, limit: int
    ) -> list[MultipartUpload]:
        """The bucket's uploads in progress begun before ``before``, oldest first."""
        ...

    async def save_job_progress(self, job: str, text: str) -> None:
        """Keep what a background job's pass has done so far (JSON)."""
        ...

    async def job_progress(self, job: str) -> str | None:
        """What the job saved last, or None."""
        ...

    async def set_bucket_object_lock(self, name: str, config: ObjectLockConfig) -> None:
        """Enable object lock or change its default retention. NoSuchBucket;
        InvalidBucketState unless versioning is enabled."""
        ...

    async def update_object_tags(
        self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None
    ) -> ObjectVersion | None:
        """Replace the tag set of the current version or of ``version_id``; None when there
        is no such object (delete markers have no tags)."""
        ...

    async def list_object_versions(
        self,
        bucket: str,
        prefix: str,
        start: str,
        inclusive: bool,
        before_seq: int | None,
        limit: int,
    ) -> list[VersionSummary]:
        """Up to ``limit`` versions and delete markers of keys with ``prefix``, by key then
        newest first, from ``start`` on (``inclusive``) or after it; with ``before_seq``, the
        versions of ``start`` older than that first."""
        ...

    async def set_bucket_versioning(self, name: str, state: Versioning) -> None:
        """Enable or suspend a bucket's versioning. NoSuchBucket; InvalidBucketState when
        suspending a bucket with object lock."""
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

    async def due_garbage(
        self, now: dt.datetime, limit: int, skip_sites: Collection[str] = ()
    ) -> list[BlobRef]:
        """Queued blobs whose grace period has passed, oldest first, but those with a shard on
        one of ``skip_sites`` (sites this process cannot reach now)."""
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
        framed_only: bool = False,
    ) -> list[BlobRef]:
        """Live blobs in a stable order (by blob id, then layout) after ``after`` and with
        ids after ``after_id``; optionally only those whose layout names ``site``, or only
        redundant (framed) layouts, the ones a scrub verifies. A blob id
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


class LeaseStore(Protocol):
    """Job leases (``core/leases.py``): which process runs each background job."""

    async def take_lease(
        self,
        job: str,
        holder: str,
        now: dt.datetime,
        term: dt.timedelta,
        take_from: str | None = None,
    ) -> Lease | None:
        """The lease until ``now + term`` when free, expired, ``holder``'s or ``take_from``'s
        (a holder known dead); else None."""
        ...

    async def renew_lease(self, lease: Lease, now: dt.datetime, term: dt.timedelta) -> Lease | None:
        """Extended to ``now + term``; None when another holder took it over."""
        ...

    async def release_lease(self, lease: Lease, now: dt.datetime) -> None:
        """Expire it now (a no-op when no longer its holder's)."""
        ...

    async def list_leases(self) -> list[Lease]:
        """Every job's lease, by job name."""
        ...


class FullStore(MetadataStore, PlacementStore, LeaseStore, Protocol):
    """Both halves of the metadata store, and the job leases (what the background jobs
    need)."""
