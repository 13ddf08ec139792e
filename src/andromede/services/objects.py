"""Object use cases: put, get, head, delete, copy, tagging, attributes."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from andromede.auth.policy import authorize_object
from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm, ChecksumType, decode_b64_checksum
from andromede.core.conditions import (
    ByteRange,
    Preconditions,
    check_copy_source,
    check_read,
    check_write,
    parse_range,
)
from andromede.core.ids import ObjectKey, new_version_id
from andromede.core.keys import CustomerKey, ObjectEncryption, SseRequest
from andromede.core.limits import MAX_SINGLE_PUT
from andromede.core.models import (
    NULL_VERSION,
    Bucket,
    Checksum,
    DeleteCondition,
    Manifest,
    ObjectVersion,
    Principal,
    Segment,
    Versioning,
    WriteCondition,
)
from andromede.core.object_lock import LockRequest, check_deletable, lock_for_write
from andromede.core.tags import validate_tags
from andromede.ports import Clock, MetadataStore
from andromede.services.body import IncomingBody, body_from_stream
from andromede.services.buckets import Buckets
from andromede.services.datapath import DataReader, DataWriter, NewBlob, StoredBlob
from andromede.services.encryption import Encryption

# Every object gets a CRC64NVME (as S3 does since 2025) unless the client chose an algorithm.
DEFAULT_CHECKSUM = ChecksumAlgorithm.CRC64NVME


@dataclass(frozen=True)
class ObjectAttributes:
    """Content-Type and the other stored headers, user metadata and tags of a new object."""

    content_type: str | None = None
    system_meta: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] | None = None


@dataclass(frozen=True)
class Integrity:
    """What the client claims about the payload: Content-MD5 and one x-amz-checksum-*."""

    content_md5: str | None = None
    algorithm: ChecksumAlgorithm | None = None
    checksum: str | None = None
    # True when the checksum value comes in the aws-chunked trailer.
    checksum_in_trailer: bool = False


@dataclass(frozen=True)
class ReadResult:
    """A readable object version, the range selected and its byte stream (None for HEAD)."""

    version: ObjectVersion
    byte_range: ByteRange | None
    body: AsyncGenerator[bytes, None] | None
    part_number: int | None = None


@dataclass(frozen=True)
class Deleted:
    """What a DELETE did: the version it made (a delete marker) or removed, as clients name
    it (None: versioning was never enabled), and whether that version is a delete marker."""

    version_id: str | None = None
    delete_marker: bool = False


def check_version_id(version_id: str) -> str:
    """A ``versionId`` as a client may send it; InvalidArgument otherwise."""
    if version_id != NULL_VERSION and (
        not version_id or len(version_id) > 1024 or not version_id.isascii()
        or not version_id.replace("-", "").replace("_", "").replace(".", "").isalnum()
    ):  # fmt: skip
        raise errors.InvalidArgument(
            "Invalid version id specified", ArgumentName="versionId", ArgumentValue=version_id
        )
    return version_id


def _has_digest(integrity: Integrity) -> bool:
    return integrity.content_md5 is not None or integrity.algorithm is not None


def _http_date(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=True)


def is_null_write(bucket: Bucket) -> bool:
    """Whether a write to ``bucket`` now makes the null version (versioning never enabled,
    or suspended)."""
    return bucket.versioning is not Versioning.ENABLED


def decode_content_md5(value: str | None) -> bytes | None:
    """Decode Content-MD5, or InvalidDigest."""
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.InvalidDigest() from exc
    if len(raw) != 16:
        raise errors.InvalidDigest()
    return raw


def check_integrity(
    integrity: Integrity, body: IncomingBody, stored: StoredBlob
) -> Checksum | None:
    """Verify MD5 and checksum claims against what was stored; returns the checksum to keep."""
    expected_md5 = decode_content_md5(integrity.content_md5)
    if expected_md5 is not None and expected_md5 != stored.md5:
        raise errors.BadDigest(
            ExpectedDigest=integrity.content_md5 or "",
            CalculatedDigest=base64.b64encode(stored.md5).decode(),
        )
    alg = integrity.algorithm or DEFAULT_CHECKSUM
    digest = stored.checksums[alg]
    claimed = integrity.checksum
    if integrity.checksum_in_trailer:
        claimed = body.trailers().get(alg.header)
        if claimed is None:
            raise errors.InvalidRequest(f"The {alg.header} trailer is missing.")
    if claimed is not None and decode_b64_checksum(alg, claimed) != digest:
        raise errors.ChecksumMismatch(
            f"The {alg.value} you specified did not match the calculated checksum."
        )
    return Checksum(alg, base64.b64encode(digest).decode(), ChecksumType.FULL_OBJECT)


def sealed_manifest(stored: StoredBlob, plan: ObjectEncryption) -> Manifest:
    """The manifest of a single-blob object."""
    if stored.sealing is None:  # the benchmark baseline
        return Manifest((Segment(stored.blob, stored.size),))
    return Manifest((Segment(stored.blob, stored.size, sealing=stored.sealing),), encryption=plan)


def etag_of(md5: bytes) -> str:
    """A single-part ETag: the quoted hex MD5."""
    return '"' + md5.hex() + '"'


class Objects:
    """Object operations over a metadata store and the data path."""

    def __init__(
        self,
        store: MetadataStore,
        buckets: Buckets,
        clock: Clock,
        encryption: Encryption,
        writer: DataWriter,
        reader: DataReader,
    ) -> None:
        self._store = store
        self._buckets = buckets
        self._clock = clock
        self._encryption = encryption
        self._writer = writer
        self._reader = reader

    @property
    def store(self) -> MetadataStore:
        """The metadata store (the S3 face's bucket listing reads it)."""
        return self._store

    async def put(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        body: IncomingBody,
        attrs: ObjectAttributes,
        integrity: Integrity,
        condition: WriteCondition | None = None,
        sse: SseRequest | None = None,
        lock: LockRequest | None = None,
    ) -> ObjectVersion:
        """PutObject: seal and stream to a blob, verify, then commit metadata (never before
        the data). A version that gets a retention or a legal hold needs a Content-MD5 or a
        checksum from the client, as on S3."""
        owner = await self._buckets.get(principal, bucket)
        retention, hold = lock_for_write(
            owner.object_lock, lock or LockRequest(), self._clock.now()
        )
        if (retention is not None or hold) and not _has_digest(integrity):
            raise errors.InvalidRequest(
                "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object "
                "requests with Object Lock parameters"
            )
        sse = sse or SseRequest()
        plan = await self._encryption.plan(owner, sse)
        object_key = ObjectKey(key)
        decode_content_md5(integrity.content_md5)  # fail fast on a malformed header
        algorithms = [integrity.algorithm or DEFAULT_CHECKSUM]
        await self._precheck(bucket, object_key, condition)
        version_id = new_version_id()
        stored = await self._writer.write(
            NewBlob(owner, object_key, version_id, plan, sse.customer_key),
            body,
            max_size=MAX_SINGLE_PUT,
            algorithms=algorithms,
        )
        try:
            checksum = check_integrity(integrity, body, stored)
            version = ObjectVersion(
                bucket=bucket,
                key=object_key,
                version_id=version_id,
                size=stored.size,
                etag=etag_of(stored.md5),
                last_modified=self._clock.now(),
                manifest=sealed_manifest(stored, plan),
                content_type=attrs.content_type or "binary/octet-stream",
                system_meta=dict(attrs.system_meta),
                user_meta=dict(attrs.user_meta),
                tags=dict(attrs.tags or {}),
                checksum=checksum,
                owner=owner.tenant,
                null_version=is_null_write(owner),
                retention=retention,
                legal_hold=hold,
            )
            await self._store.put_object(version, condition)
        except BaseException:
            await self._writer.discard(stored.blob)
            raise
        return version

    async def _precheck(
        self, bucket: str, key: ObjectKey, condition: WriteCondition | None
    ) -> None:
        """Refuse a write whose condition already fails, before its data is stored; the
        store checks it again atomically with the commit."""
        if condition is not None:
            current = await self._store.get_object(bucket, key)
            live = current is not None and not current.delete_marker
            check_write(condition, current.etag if current is not None and live else None)

    async def _current(
        self, principal: Principal, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectVersion:
        """The current version, or ``version_id``; never a delete marker: NoSuchKey for a
        current one, MethodNotAllowed for one named, both saying it is a marker."""
        # One lookup on the hot path: an object's owner is its bucket's tenant (set at every
        # write, and a bucket can neither change hands nor go while it holds objects).
        if version_id is None:
            version = await self._store.get_object(bucket, ObjectKey(key))
        else:
            check_version_id(version_id)
            version = await self._store.get_version(bucket, ObjectKey(key), version_id)
        if version is None:
            await self._buckets.get(principal, bucket)  # NoSuchBucket / AccessDenied first
            if version_id is not None:
                raise errors.NoSuchVersion(Key=key, VersionId=version_id)
            raise errors.NoSuchKey(Key=key)
        authorize_object(principal, version)
        if version.delete_marker:
            marker = (("x-amz-delete-marker", "true"), ("x-amz-version-id", version.s3_version_id))
            if version_id is None:
                raise errors.NoSuchKey(Key=key).with_headers(*marker)
            raise errors.MethodNotAllowed(Method="GET", ResourceType="DeleteMarker").with_headers(
                *marker, ("last-modified", _http_date(version.last_modified))
            )
        return version

    async def get(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        *,
        range_header: str | None = None,
        part_number: int | None = None,
        preconditions: Preconditions | None = None,
        with_body: bool = True,
        customer_key: CustomerKey | None = None,
        version_id: str | None = None,
    ) -> ReadResult:
        """GetObject / HeadObject: preconditions, then a range or a part, then the bytes."""
        if part_number is not None and range_header is not None:
            raise errors.InvalidRequest(
                "Cannot specify both Range header and partNumber query parameter"
            )
        version = await self._current(principal, bucket, key, version_id)
        # A part that does not exist is refused before the key is asked for, as S3 does.
        byte_range = self._part_range(version, part_number) if part_number is not None else None
        self._encryption.check_read_key(version.encryption, customer_key)
        if preconditions is not None:
            check_read(preconditions, version.etag, version.last_modified)
        if part_number is None:
            byte_range = parse_range(range_header, version.size)
        body = self._reader.read(version, byte_range, customer_key) if with_body else None
        return ReadResult(version, byte_range, body, part_number)

    @staticmethod
    def _part_range(version: ObjectVersion, part_number: int) -> ByteRange | None:
        if part_number < 1 or part_number > 10_000:
            raise errors.InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        segments = version.manifest.segments
        if version.parts_count is None:
            if part_number != 1:
                raise errors.InvalidPartNumber()
            return ByteRange(0, version.size - 1, version.size) if version.size else None
        if part_number > len(segments):
            raise errors.InvalidPartNumber()
        start = sum(s.size for s in segments[: part_number - 1])
        size = segments[part_number - 1].size
        if size == 0:
            return None
        return ByteRange(start, start + size - 1, version.size)

    async def delete(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        condition: DeleteCondition | None = None,
        version_id: str | None = None,
        *,
        bypass_governance: bool = False,
    ) -> Deleted:
        """DeleteObject: succeeds whether or not the key existed; an existing object must meet
        ``condition`` (PreconditionFailed), checked atomically with the delete. Without a
        version id, a versioned bucket gets a delete marker; with one, that version goes,
        unless its object lock forbids it (AccessDenied)."""
        owner = await self._buckets.get(principal, bucket)
        return await self.delete_in(owner, ObjectKey(key), condition, version_id, bypass_governance)

    async def delete_in(
        self,
        owner: Bucket,
        key: ObjectKey,
        condition: DeleteCondition | None,
        version_id: str | None,
        bypass: bool = False,
    ) -> Deleted:
        """A DELETE in a bucket already resolved and authorized (DeleteObject, DeleteObjects,
        the lifecycle job): a delete marker, a version deleted for good, or the key removed
        from a bucket whose versioning was never enabled."""
        if version_id is not None:
            check_version_id(version_id)
            now = self._clock.now()

            def guard(version: ObjectVersion) -> None:
                check_deletable(version.retention, version.legal_hold, now, bypass)

            gone = await self._store.delete_version(owner.name, key, version_id, condition, guard)
            return Deleted(version_id, gone is not None and gone.delete_marker)
        if owner.versioning is None:
            await self._store.delete_object(owner.name, key, condition)
            return Deleted()
        marker = ObjectVersion(
            bucket=owner.name,
            key=key,
            version_id=new_version_id(),
            size=0,
            etag="",
            last_modified=self._clock.now(),
            manifest=Manifest(()),
            owner=owner.tenant,
            delete_marker=True,
            null_version=is_null_write(owner),
        )
        await self._store.put_object(marker, condition)
        return Deleted(marker.s3_version_id, True)

    async def delete_many(
        self,
        principal: Principal,
        bucket: str,
        objects: list[tuple[str, DeleteCondition | None, str | None]],
        *,
        bypass_governance: bool = False,
    ) -> list[tuple[str, str | None, Deleted | errors.AndromedeError]]:
        """DeleteObjects: each entry's (key, version id asked, outcome), in request order. An
        entry's condition holds as for DeleteObject; one that fails is its
        PreconditionFailed."""
        owner = await self._buckets.get(principal, bucket)
        results: list[tuple[str, str | None, Deleted | errors.AndromedeError]] = []
        for key, condition, version_id in objects:
            try:
                done = await self.delete_in(
                    owner, ObjectKey(key), condition, version_id, bypass_governance
                )
            except errors.AndromedeError as exc:
                results.append((key, version_id, exc))
            else:
                results.append((key, version_id, done))
        return results

    async def copy(
        self,
        principal: Principal,
        source: tuple[str, str],
        target: tuple[str, str],
        *,
        replace_metadata: bool,
        attrs: ObjectAttributes,
        replace_tags: bool,
        source_conditions: Preconditions,
        algorithm: ChecksumAlgorithm | None = None,
        condition: WriteCondition | None = None,
        sse: SseRequest | None = None,
        source_key: CustomerKey | None = None,
        source_version: str | None = None,
        lock: LockRequest | None = None,
    ) -> tuple[ObjectVersion, ObjectVersion]:
        """CopyObject; returns (source version, new version). The bytes are opened and sealed
        anew, under the encryption the request (or the target bucket) asks for."""
        sse = sse or SseRequest()
        src = await self._current(principal, *source, source_version)
        self._encryption.check_read_key(src.encryption, source_key)
        check_copy_source(source_conditions, src.etag, src.last_modified)
        dst_bucket = await self._buckets.get(principal, target[0])
        changes_encryption = sse.mode is not None or sse.customer_key is not None
        if (
            source == target
            and source_version is None
            and not replace_metadata
            and algorithm is None
            and not (changes_encryption)
        ):
            raise errors.InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata, storage class, website redirect "
                "location or encryption attributes."
            )
        plan = await self._encryption.plan(dst_bucket, sse)
        retention, hold = lock_for_write(
            dst_bucket.object_lock, lock or LockRequest(), self._clock.now()
        )
        await self._precheck(dst_bucket.name, ObjectKey(target[1]), condition)
        version_id = new_version_id()
        body = body_from_stream(self._reader.read(src, None, source_key), src.size)
        alg = algorithm or (src.checksum.algorithm if src.checksum else DEFAULT_CHECKSUM)
        stored = await self._writer.write(
            NewBlob(dst_bucket, target[1], version_id, plan, sse.customer_key),
            body,
            max_size=MAX_SINGLE_PUT,
            algorithms=[alg],
        )
        try:
            digest = stored.checksums[alg]
            meta = (
                attrs
                if replace_metadata
                else ObjectAttributes(src.content_type, src.system_meta, src.user_meta)
            )
            version = ObjectVersion(
                bucket=dst_bucket.name,
                key=ObjectKey(target[1]),
                version_id=version_id,
                size=stored.size,
                etag=etag_of(stored.md5),
                last_modified=self._clock.now(),
                manifest=sealed_manifest(stored, plan),
                content_type=meta.content_type or "binary/octet-stream",
                system_meta=dict(meta.system_meta),
                user_meta=dict(meta.user_meta),
                tags=dict(attrs.tags or {}) if replace_tags else dict(src.tags),
                checksum=Checksum(alg, base64.b64encode(digest).decode()),
                owner=dst_bucket.tenant,
                null_version=is_null_write(dst_bucket),
                retention=retention,
                legal_hold=hold,
            )
            await self._store.put_object(version, condition)
        except BaseException:
            await self._writer.discard(stored.blob)
            raise
        return src, version

    async def head_bucket(self, principal: Principal, bucket: str) -> Bucket:
        """The bucket, if the principal may use it."""
        return await self._buckets.get(principal, bucket)

    async def head_for_copy(
        self, principal: Principal, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectVersion:
        """The current version (or ``version_id``) of a copy source (checks access)."""
        return await self._current(principal, bucket, key, version_id)

    async def get_tags(
        self, principal: Principal, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectVersion:
        """GetObjectTagging: the version whose tag set the face lists (in key order)."""
        return await self._current(principal, bucket, key, version_id)

    async def put_tags(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        pairs: list[tuple[str, str]],
        version_id: str | None = None,
    ) -> ObjectVersion:
        """PutObjectTagging: replaces the whole tag set of the current version or of
        ``version_id``; the version tagged."""
        tags = validate_tags(pairs)
        await self._current(principal, bucket, key, version_id)  # markers, missing versions
        done = await self._store.update_object_tags(bucket, ObjectKey(key), tags, version_id)
        if done is None:  # deleted meanwhile
            raise errors.NoSuchKey(Key=key)
        return done

    async def delete_tags(
        self, principal: Principal, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectVersion:
        """DeleteObjectTagging."""
        return await self.put_tags(principal, bucket, key, [], version_id)

    async def attributes(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        customer_key: CustomerKey | None = None,
        version_id: str | None = None,
    ) -> ObjectVersion:
        """GetObjectAttributes: the version whose attributes the face renders (an SSE-C
        object's attributes need its key, as its metadata does on S3)."""
        version = await self._current(principal, bucket, key, version_id)
        self._encryption.check_read_key(version.encryption, customer_key)
        return version
