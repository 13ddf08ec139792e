"""Domain models. Plain frozen dataclasses; persistence and wire formats live elsewhere."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from andromede.core.checksums import ChecksumAlgorithm, ChecksumType
from andromede.core.keys import BucketEncryption, ObjectEncryption, Sealing
from andromede.core.lifecycle import LifecycleConfig
from andromede.core.object_lock import ObjectLockConfig, Retention
from andromede.core.placement import Layout

# 1: plaintext segments (before encryption at rest; still read). 2: sealed segments.
MANIFEST_FORMAT = 2
READABLE_MANIFEST_FORMATS = (1, 2)
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Tenant:
    """An organisation: owns access keys and buckets."""

    name: str
    created: dt.datetime


@dataclass(frozen=True)
class AccessKey:
    """Credentials. ``is_operator`` keys administer the platform (the admin API)."""

    access_key_id: str
    secret_key: str
    tenant: str
    created: dt.datetime
    is_operator: bool = False
    description: str = ""


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, once its signature checked out."""

    access_key_id: str
    tenant: str
    is_operator: bool


@dataclass(frozen=True)
class Bucket:
    """A bucket: globally unique name, owned by one tenant."""

    name: str
    tenant: str
    created: dt.datetime
    location: str = ""
    encryption: BucketEncryption | None = None  # the default for writes without a header
    tags: dict[str, str] = field(default_factory=dict)  # empty: no tag set (NoSuchTagSet)
    versioning: Versioning | None = None  # None: never enabled
    object_lock: ObjectLockConfig | None = None  # None: never enabled
    lifecycle: LifecycleConfig | None = None


class Versioning(enum.StrEnum):
    """A bucket's versioning state once set (it can never go back to "never enabled")."""

    ENABLED = "Enabled"
    SUSPENDED = "Suspended"


# The S3 version id of a version written while versioning was never enabled or suspended.
NULL_VERSION = "null"


@dataclass(frozen=True)
class Checksum:
    """A stored checksum: algorithm, base64 value and whether it covers the object or parts."""

    algorithm: ChecksumAlgorithm
    value: str
    type: ChecksumType = ChecksumType.FULL_OBJECT


@dataclass(frozen=True)
class BlobRef:
    """One stored blob: where its shards are, and its id there. Blob ids are random: never
    derived from a key name."""

    layout: Layout
    blob_id: str


@dataclass(frozen=True)
class Segment:
    """A contiguous run of an object's bytes, stored as one blob.

    A single PUT makes one segment; a multipart object keeps one segment per part, so
    CompleteMultipartUpload never copies data and ``partNumber`` reads map to a segment.
    """

    blob: BlobRef
    size: int
    part_number: int | None = None
    etag: str = ""
    checksum: Checksum | None = None
    sealing: Sealing | None = None  # None only in format-1 (plaintext) manifests


@dataclass(frozen=True)
class Manifest:
    """Where an object version's bytes are, in order. Versioned format (``format``), stored
    as ``metadata/codec.py`` writes it."""

    segments: tuple[Segment, ...]
    format: int = MANIFEST_FORMAT
    encryption: ObjectEncryption | None = None  # None only in format-1 manifests

    @property
    def size(self) -> int:
        """Total object size."""
        return sum(s.size for s in self.segments)

    def blobs(self) -> list[BlobRef]:
        """Every blob the manifest references."""
        return [s.blob for s in self.segments]


@dataclass(frozen=True)
class ObjectVersion:
    """A version of an object (the current one unless read from its key's history): its
    metadata and the manifest of its bytes; or a delete marker (no bytes).

    ``version_id`` is unique and internal; clients see :attr:`s3_version_id`, which is
    ``null`` for a version written while the bucket's versioning was never enabled or was
    suspended (at most one such version per key)."""

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    last_modified: dt.datetime
    manifest: Manifest
    content_type: str = "binary/octet-stream"
    system_meta: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    checksum: Checksum | None = None
    storage_class: str = "STANDARD"
    owner: str = ""
    delete_marker: bool = False
    null_version: bool = True
    retention: Retention | None = None
    legal_hold: bool = False
    # When it became noncurrent: set when read from the key's history (not part of its
    # identity: the same version compares equal before and after).
    noncurrent_since: dt.datetime | None = field(default=None, compare=False)

    @property
    def s3_version_id(self) -> str:
        """The version id clients see."""
        return NULL_VERSION if self.null_version else self.version_id

    @property
    def encryption(self) -> ObjectEncryption | None:
        """How the object is encrypted (None for objects stored before encryption at rest)."""
        return self.manifest.encryption

    @property
    def parts_count(self) -> int | None:
        """Number of parts for a multipart object, else None."""
        if self.manifest.segments and self.manifest.segments[0].part_number is not None:
            return len(self.manifest.segments)
        return None


@dataclass(frozen=True)
class ObjectSummary:
    """What a listing shows of an object."""

    key: str
    size: int
    etag: str
    last_modified: dt.datetime
    storage_class: str
    owner: str
    checksum_algorithm: ChecksumAlgorithm | None = None
    checksum_type: ChecksumType | None = None


@dataclass(frozen=True)
class VersionSummary:
    """What ListObjectVersions shows of a version or delete marker; ``seq`` orders a key's
    versions (higher is newer) and resumes a listing."""

    object: ObjectSummary
    version_id: str  # as clients see it ("null" for the null version)
    seq: int
    latest: bool
    delete_marker: bool


@dataclass(frozen=True)
class MultipartUpload:
    """An in-progress multipart upload and the object attributes it will produce."""

    upload_id: str
    bucket: str
    key: str
    initiated: dt.datetime
    owner: str
    content_type: str = "binary/octet-stream"
    system_meta: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    checksum_algorithm: ChecksumAlgorithm | None = None
    checksum_type: ChecksumType | None = None
    storage_class: str = "STANDARD"
    encryption: ObjectEncryption | None = None  # what every part and the object will use
    retention: Retention | None = None  # what the completed version gets
    legal_hold: bool = False


@dataclass(frozen=True)
class Part:
    """One uploaded part of a multipart upload."""

    upload_id: str
    part_number: int
    size: int
    etag: str
    last_modified: dt.datetime
    blob: BlobRef
    checksum: Checksum | None = None
    sealing: Sealing | None = None


@dataclass(frozen=True)
class WriteCondition:
    """Conditions a write must meet at commit time (checked atomically with the write).

    The raw ``If-Match`` and ``If-None-Match`` values: ETags (quoted or not, comma-separated)
    or ``*``. :func:`andromede.core.conditions.check_write` evaluates them.
    """

    if_match: str | None = None
    if_none_match: str | None = None


@dataclass(frozen=True)
class DeleteCondition:
    """What the current object must be for a delete to go ahead (checked atomically with it).

    ``If-Match`` (ETags or ``*``), ``x-amz-if-match-last-modified-time`` and
    ``x-amz-if-match-size``, or their DeleteObjects counterparts ``ETag``,
    ``LastModifiedTime`` and ``Size``. :func:`andromede.core.conditions.check_delete`
    evaluates them.
    """

    if_match: str | None = None
    last_modified: dt.datetime | None = None
    size: int | None = None


@dataclass(frozen=True)
class ListPage:
    """One page of a bucket listing: objects and common prefixes, and where to resume."""

    objects: list[ObjectSummary]
    prefixes: list[str]
    is_truncated: bool
    next_marker: str | None


@dataclass(frozen=True)
class VersionPage:
    """One page of ListObjectVersions: versions and common prefixes, and where to resume
    (the key, and the version id when the last entry was a version)."""

    versions: list[VersionSummary]
    prefixes: list[str]
    is_truncated: bool
    next_key: str | None
    next_version_id: str | None


@dataclass(frozen=True)
class BucketPage:
    """One page of a tenant's buckets by name, and the last name shown when more remain."""

    buckets: list[Bucket]
    next_after: str | None
