"""Multipart upload use cases. Parts are blobs; completing writes a manifest, never copies."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from andromede.core import errors
from andromede.core.checksums import (
    ChecksumAlgorithm,
    ChecksumType,
    combine_crc,
    composite_checksum,
    decode_b64_checksum,
)
from andromede.core.conditions import Preconditions, check_copy_source, parse_copy_range
from andromede.core.ids import ObjectKey, new_version_id
from andromede.core.keys import CustomerKey, EncryptionMode, SseRequest
from andromede.core.limits import MAX_PART_NUMBER, MAX_PART_SIZE, MIN_PART_SIZE
from andromede.core.models import (
    Checksum,
    Manifest,
    MultipartUpload,
    ObjectVersion,
    Part,
    Principal,
    Segment,
    WriteCondition,
)
from andromede.core.object_lock import LockRequest, lock_for_write
from andromede.ports import Clock, MetadataStore
from andromede.services.body import IncomingBody, body_from_stream
from andromede.services.datapath import DataReader, DataWriter, NewBlob
from andromede.services.encryption import Encryption
from andromede.services.objects import (
    DEFAULT_CHECKSUM,
    Integrity,
    ObjectAttributes,
    Objects,
    check_integrity,
    etag_of,
    is_null_write,
)

_CRCS = (ChecksumAlgorithm.CRC32, ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.CRC64NVME)
_MIN_UPLOAD_BATCH = 100


@dataclass(frozen=True)
class CompletedPart:
    """A part as listed in CompleteMultipartUpload."""

    part_number: int
    etag: str
    checksums: dict[ChecksumAlgorithm, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredPart:
    """A part just stored, and the upload it belongs to (whose encryption the answer reports)."""

    upload: MultipartUpload
    part: Part


@dataclass(frozen=True)
class PartsPage:
    """ListParts result."""

    upload: MultipartUpload
    parts: list[Part]
    is_truncated: bool
    next_marker: int


def resolve_checksum_type(
    algorithm: ChecksumAlgorithm | None, requested: ChecksumType | None
) -> ChecksumType | None:
    """S3's rules: CRC64NVME is full-object only; SHA* composite only; CRC32/C either."""
    if algorithm is None:
        if requested is not None:
            raise errors.InvalidRequest(
                "The x-amz-checksum-type header can only be used with the "
                "x-amz-checksum-algorithm header."
            )
        return None
    if algorithm is ChecksumAlgorithm.CRC64NVME:
        if requested is ChecksumType.COMPOSITE:
            raise errors.InvalidRequest(
                "The COMPOSITE checksum type is not supported for CRC64NVME."
            )
        return ChecksumType.FULL_OBJECT
    if algorithm in (ChecksumAlgorithm.SHA1, ChecksumAlgorithm.SHA256):
        if requested is ChecksumType.FULL_OBJECT:
            raise errors.InvalidRequest(
                f"The FULL_OBJECT checksum type is not supported for {algorithm.value}."
            )
        return ChecksumType.COMPOSITE
    return requested or ChecksumType.COMPOSITE


def _check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise errors.InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=str(part_number),
        )


class Multipart:
    """CreateMultipartUpload … CompleteMultipartUpload."""

    def __init__(
        self,
        store: MetadataStore,
        objects: Objects,
        encryption: Encryption,
        writer: DataWriter,
        reader: DataReader,
        clock: Clock,
    ) -> None:
        self._store = store
        self._objects = objects  # buckets and copy sources, as object operations see them
        self._encryption = encryption
        self._writer = writer
        self._reader = reader
        self._clock = clock

    async def create(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        attrs: ObjectAttributes,
        algorithm: ChecksumAlgorithm | None,
        checksum_type: ChecksumType | None,
        sse: SseRequest | None = None,
        lock: LockRequest | None = None,
    ) -> MultipartUpload:
        """Start an upload; attributes, encryption and the object lock asked for are kept
        for the parts and the object."""
        owner = await self._objects.head_bucket(principal, bucket)
        lock = lock or LockRequest()
        lock_for_write(owner.object_lock, lock, self._clock.now())  # refused now, not at the end
        encryption = await self._encryption.plan(owner, sse or SseRequest())
        upload = MultipartUpload(
            upload_id=new_version_id(),
            bucket=bucket,
            key=ObjectKey(key),
            initiated=self._clock.now(),
            owner=owner.tenant,
            content_type=attrs.content_type or "binary/octet-stream",
            system_meta=dict(attrs.system_meta),
            user_meta=dict(attrs.user_meta),
            tags=dict(attrs.tags or {}),
            checksum_algorithm=algorithm,
            checksum_type=resolve_checksum_type(algorithm, checksum_type),
            encryption=encryption,
            retention=lock.retention,
            legal_hold=bool(lock.legal_hold),
        )
        await self._store.create_upload(upload)
        return upload

    async def get_upload(
        self, principal: Principal, bucket: str, key: str, upload_id: str
    ) -> MultipartUpload:
        """The upload, or NoSuchUpload."""
        await self._objects.head_bucket(principal, bucket)
        upload = await self._store.get_upload(bucket, key, upload_id)
        if upload is None:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return upload

    def _part_algorithms(
        self, upload: MultipartUpload, integrity: Integrity
    ) -> list[ChecksumAlgorithm]:
        kept = upload.checksum_algorithm or DEFAULT_CHECKSUM
        claimed = integrity.algorithm
        if claimed is not None and upload.checksum_algorithm and claimed is not kept:
            raise errors.InvalidRequest(
                f"Checksum Type mismatch occurred, expected checksum Type: "
                f"{kept.value.lower()}, actual checksum Type: {claimed.value.lower()}"
            )
        return [kept] if claimed in (None, kept) else [kept, claimed]

    async def _store_part(
        self,
        upload: MultipartUpload,
        part_number: int,
        body: IncomingBody,
        integrity: Integrity,
        customer_key: CustomerKey | None,
    ) -> Part:
        algorithms = self._part_algorithms(upload, integrity)
        plan = upload.encryption
        bucket = await self._store.get_bucket(upload.bucket)
        if bucket is None:
            raise errors.NoSuchBucket(BucketName=upload.bucket)
        if plan is None:  # an upload started before encryption at rest
            plan = await self._encryption.plan(bucket, SseRequest())
        try:
            self._encryption.customer_key_for(plan, customer_key)
        except errors.SseCustomerKeyMismatch:
            raise errors.SseCustomerKeyNotTheUploads() from None
        context = f"{upload.upload_id}/{part_number}"
        stored = await self._writer.write(
            NewBlob(bucket, upload.key, context, plan, customer_key),
            body,
            max_size=MAX_PART_SIZE,
            algorithms=algorithms,
        )
        try:
            if integrity.algorithm is not algorithms[0]:
                # A part sent with no checksum (or another one too) is kept under the upload's.
                if integrity.algorithm is not None:
                    check_integrity(integrity, body, stored)
                integrity = Integrity(content_md5=integrity.content_md5, algorithm=algorithms[0])
            checksum = check_integrity(integrity, body, stored)
            part = Part(
                upload.upload_id,
                part_number,
                stored.size,
                etag_of(stored.md5),
                self._clock.now(),
                stored.blob,
                checksum,
                stored.sealing,
            )
            await self._store.put_part(part)
        except BaseException:
            await self._writer.discard(stored.blob)
            raise
        return part

    async def upload_part(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: IncomingBody,
        integrity: Integrity,
        customer_key: CustomerKey | None = None,
    ) -> StoredPart:
        """UploadPart: a re-upload of a part number replaces it."""
        _check_part_number(part_number)
        upload = await self.get_upload(principal, bucket, key, upload_id)
        part = await self._store_part(upload, part_number, body, integrity, customer_key)
        return StoredPart(upload, part)

    async def upload_part_copy(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        source: tuple[str, str, str | None],
        range_header: str | None,
        conditions: Preconditions,
        customer_key: CustomerKey | None = None,
        source_key: CustomerKey | None = None,
    ) -> tuple[ObjectVersion, StoredPart]:
        """UploadPartCopy: a part made of (a range of) another object (``source``: bucket,
        key and version id or None)."""
        _check_part_number(part_number)
        upload = await self.get_upload(principal, bucket, key, upload_id)
        src = await self._objects.head_for_copy(principal, *source)
        self._encryption.check_read_key(src.encryption, source_key)
        check_copy_source(conditions, src.etag, src.last_modified)
        byte_range = parse_copy_range(range_header, src.size) if range_header else None
        length = byte_range.length if byte_range else src.size
        body = body_from_stream(self._reader.read(src, byte_range, source_key), length)
        part = await self._store_part(upload, part_number, body, Integrity(), customer_key)
        return src, StoredPart(upload, part)

    async def list_parts(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        upload_id: str,
        marker: int,
        max_parts: int,
    ) -> PartsPage:
        """ListParts after ``marker``."""
        upload = await self.get_upload(principal, bucket, key, upload_id)
        parts = await self._store.list_parts(upload_id, marker, max_parts + 1)
        truncated = len(parts) > max_parts
        parts = parts[:max_parts]
        return PartsPage(upload, parts, truncated, parts[-1].part_number if parts else 0)

    async def abort(self, principal: Principal, bucket: str, key: str, upload_id: str) -> None:
        """AbortMultipartUpload: the parts become garbage."""
        await self.get_upload(principal, bucket, key, upload_id)
        if not await self._store.abort_upload(upload_id):
            raise errors.NoSuchUpload(UploadId=upload_id)

    async def list_uploads(
        self,
        principal: Principal,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        key_marker: str,
        upload_id_marker: str,
        max_uploads: int,
    ) -> tuple[list[MultipartUpload], list[str], bool]:
        """ListMultipartUploads: (uploads, common prefixes, truncated).

        Uploads and common prefixes count alike against ``max_uploads``. Many uploads may roll
        up into one prefix, so the store is read in batches until the page is full; a prefix
        at or before ``key_marker`` was returned on an earlier page and is skipped.
        """
        await self._objects.head_bucket(principal, bucket)
        uploads: list[MultipartUpload] = []
        prefixes: list[str] = []
        batch_size = max(max_uploads + 1, _MIN_UPLOAD_BATCH)
        cursor = (key_marker, upload_id_marker)
        while True:
            found = await self._store.list_uploads(bucket, prefix, *cursor, batch_size)
            for upload in found:
                idx = upload.key.find(delimiter, len(prefix)) if delimiter else -1
                common = upload.key[: idx + len(delimiter)] if idx >= 0 else None
                if common is not None and (
                    common <= key_marker or (prefixes and prefixes[-1] == common)
                ):
                    continue
                if len(uploads) + len(prefixes) >= max_uploads:
                    return uploads, prefixes, True
                if common is not None:
                    prefixes.append(common)
                else:
                    uploads.append(upload)
            if len(found) < batch_size:
                return uploads, prefixes, False
            cursor = (found[-1].key, found[-1].upload_id)

    async def complete(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        upload_id: str,
        requested: list[CompletedPart],
        full_checksum: tuple[ChecksumAlgorithm, str] | None,
        checksum_type: ChecksumType | None,
        condition: WriteCondition | None = None,
        customer_key: CustomerKey | None = None,
    ) -> ObjectVersion:
        """CompleteMultipartUpload: validate the part list, then one atomic metadata commit.

        An SSE-C upload's key, when given, must be the upload's; it is required, as S3
        documents, when the upload keeps a checksum algorithm (its checksums are sealed too).

        The object takes the upload's id as its version id, so a completion retried after its
        response was lost finds the object it made and answers it again, as S3 does, while
        that object is still the key's current version.
        """
        if not requested:
            raise errors.MalformedXML()
        owner = await self._objects.head_bucket(principal, bucket)
        upload = await self._store.get_upload(bucket, key, upload_id)
        if upload is None:
            done = await self._store.get_object(bucket, key)
            if done is None or done.version_id != upload_id or not _same_parts(done, requested):
                raise errors.NoSuchUpload(UploadId=upload_id)
            return done
        self._check_completion_key(upload, customer_key)
        stored = {
            p.part_number: p for p in await self._store.list_parts(upload_id, 0, MAX_PART_NUMBER)
        }
        chosen = self._validate(upload, requested, stored)
        segments = tuple(
            Segment(p.blob, p.size, p.part_number, p.etag, p.checksum, p.sealing) for p in chosen
        )
        md5s = b"".join(bytes.fromhex(p.etag.strip('"')) for p in chosen)
        etag = f'"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}"'
        checksum = self._object_checksum(upload, chosen, full_checksum, checksum_type)
        retention = upload.retention
        if retention is None and owner.object_lock and owner.object_lock.default:
            retention = owner.object_lock.default.retention(self._clock.now())
        version = ObjectVersion(
            bucket=bucket,
            key=upload.key,
            version_id=upload_id,
            size=sum(p.size for p in chosen),
            etag=etag,
            last_modified=self._clock.now(),
            manifest=Manifest(
                segments,
                encryption=upload.encryption if all(s.sealing for s in segments) else None,
            ),
            content_type=upload.content_type,
            system_meta=dict(upload.system_meta),
            user_meta=dict(upload.user_meta),
            tags=dict(upload.tags),
            checksum=checksum,
            owner=upload.owner,
            null_version=is_null_write(owner),
            retention=retention,
            legal_hold=upload.legal_hold,
        )
        await self._store.complete_upload(
            upload_id, version, [p.part_number for p in chosen], condition
        )
        return version

    def _check_completion_key(
        self, upload: MultipartUpload, customer_key: CustomerKey | None
    ) -> None:
        plan = upload.encryption
        sse_c = plan is not None and plan.mode is EncryptionMode.SSE_C
        if customer_key is None and not (sse_c and upload.checksum_algorithm is not None):
            return
        try:
            self._encryption.check_read_key(plan, customer_key)
        except errors.SseCustomerKeyMismatch:
            raise errors.SseCustomerKeyNotTheUploads() from None

    @staticmethod
    def _validate(
        upload: MultipartUpload, requested: list[CompletedPart], stored: dict[int, Part]
    ) -> list[Part]:
        # Ascending; a part number listed again (a re-sent part whose first attempt finished
        # last) counts once, by its last entry.
        last: dict[int, CompletedPart] = {}
        for item in requested:
            if last and item.part_number < next(reversed(last)):
                raise errors.InvalidPartOrder()
            last[item.part_number] = item
        chosen: list[Part] = []
        for item in last.values():
            part = stored.get(item.part_number)
            if part is None or item.etag.strip().strip('"') != part.etag.strip('"'):
                raise errors.InvalidPart(PartNumber=str(item.part_number))
            for alg, value in item.checksums.items():
                matches = (
                    part.checksum is not None
                    and part.checksum.algorithm is alg
                    and part.checksum.value == value
                )
                if not matches and upload.checksum_algorithm is not None:
                    raise errors.InvalidPart(PartNumber=str(item.part_number))
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < MIN_PART_SIZE:
                raise errors.EntityTooSmall(
                    ProposedSize=str(part.size),
                    MinSizeAllowed=str(MIN_PART_SIZE),
                    PartNumber=str(part.part_number),
                )
        return chosen

    @staticmethod
    def _object_checksum(
        upload: MultipartUpload,
        parts: list[Part],
        full_checksum: tuple[ChecksumAlgorithm, str] | None,
        checksum_type: ChecksumType | None,
    ) -> Checksum | None:
        alg = upload.checksum_algorithm or DEFAULT_CHECKSUM
        kind = upload.checksum_type or ChecksumType.FULL_OBJECT
        if (
            checksum_type is not None
            and upload.checksum_type is not None
            and checksum_type is not kind
        ):
            raise errors.InvalidRequest(
                f"The upload was created using the {kind.value} checksum mode. "
                f"The complete request must use the same checksum mode."
            )
        digests: list[bytes] = []
        for part in parts:
            if part.checksum is None or part.checksum.algorithm is not alg:
                return None
            digests.append(base64.b64decode(part.checksum.value))
        if kind is ChecksumType.COMPOSITE:
            value = composite_checksum(alg, digests)
        else:
            if alg not in _CRCS:
                return None
            combined = combine_crc(alg, [(d, p.size) for d, p in zip(digests, parts, strict=True)])
            value = base64.b64encode(combined).decode()
        checksum = Checksum(alg, value, kind)
        if full_checksum is not None:
            _check_claimed(checksum, *full_checksum)
        return checksum


def _same_parts(version: ObjectVersion, requested: list[CompletedPart]) -> bool:
    """The part list of a completion is the one the object was made of (a part number listed
    twice counting by its last entry, as when it was completed)."""
    last = {item.part_number: item.etag.strip().strip('"') for item in requested}
    segments = version.manifest.segments
    return len(segments) == len(last) and all(
        last.get(seg.part_number or 0) == seg.etag.strip('"') for seg in segments
    )


def _check_claimed(checksum: Checksum, claimed_alg: ChecksumAlgorithm, claimed: str) -> None:
    """The object checksum a CompleteMultipartUpload claims must be the one computed."""
    if claimed_alg is not checksum.algorithm:
        raise errors.InvalidRequest("The checksum algorithm does not match the upload's.")
    if checksum.type is ChecksumType.FULL_OBJECT:
        if decode_b64_checksum(claimed_alg, claimed) != base64.b64decode(checksum.value):
            raise errors.ChecksumMismatch()
    elif claimed.split("-", maxsplit=1)[0] != checksum.value.split("-")[0]:
        raise errors.ChecksumMismatch()
