"""Rows to domain models and back, for ``sql.py`` and its mixins.

Layouts are written as text, here and nowhere else (a ``site`` column, a manifest segment's
``s``): a plain site name for a single copy (``local``), ``r3:a,b,c`` for three replicas,
``ec4+2:a,b,c,d,e,f`` for an erasure code (data shards first, in order). The SQL that finds
the blobs with a shard on a site reads that text too (:func:`naming_site`).

Maps (metadata, tags) are stored as compact JSON text with sorted keys, so both backends hold
byte-identical values; checksums as :func:`checksum_json`; manifests as
:func:`dump_manifest` (compact, unsorted: the format marker first), whose marker makes old
rows readable after a format change. Sealings, object encryption, a bucket's default
encryption and a key's versions and re-wrap progress are stored as this module writes them
(:func:`sealing_json`, :func:`encryption_json`, ...); all in the same compact sorted JSON,
the timestamps inside following the store's rule (UTC, milliseconds) like those in columns do.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import re
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from andromede.core.checksums import ChecksumAlgorithm, ChecksumType
from andromede.core.keys import (
    BucketEncryption,
    EncryptionMode,
    KekRef,
    KeyState,
    KeyVersion,
    KmsKey,
    ObjectEncryption,
    RewrapProgress,
    Sealing,
)
from andromede.core.models import (
    READABLE_MANIFEST_FORMATS,
    AccessKey,
    BlobRef,
    Bucket,
    Checksum,
    Manifest,
    MultipartUpload,
    ObjectSummary,
    ObjectVersion,
    Part,
    Segment,
    Versioning,
)
from andromede.core.object_lock import DefaultRetention, LockMode, ObjectLockConfig, Retention
from andromede.core.placement import SITE_NAME, Layout, Redundancy
from andromede.metadata.engines import Row
from andromede.metadata.lifecycle_records import dump_lifecycle, load_lifecycle
from andromede.metadata.records import count, field, json_object, optional, time_field
from andromede.metadata.schema import to_millis

_LAYOUT = re.compile(r"^(?:r(\d{1,2})|ec(\d{1,2})\+(\d{1,2})):([a-z0-9,-]+)$")


@functools.lru_cache(maxsize=4096)
def load_layout(text: str) -> Layout:
    """A layout as stored; ValueError for text that is no layout. Cached: the layouts in
    use are few, and every object read parses its manifest's."""
    if SITE_NAME.match(text):
        return Layout.single(text)
    match = _LAYOUT.match(text)
    if match is None:
        raise ValueError(f"not a layout: {text!r}")
    if match.group(1) is not None:
        redundancy = Redundancy.replicas(int(match.group(1)))
    else:
        redundancy = Redundancy(True, int(match.group(2)), int(match.group(3)))
    return Layout(redundancy, tuple(match.group(4).split(",")))


def dump_layout(layout: Layout) -> str:
    """Inverse of :func:`load_layout`."""
    if not layout.framed:
        return layout.sites[0]
    r = layout.redundancy
    scheme = f"ec{r.k}+{r.m}" if r.erasure else f"r{r.shards}"
    return f"{scheme}:{','.join(layout.sites)}"


def blob_ref(site: str, blob_id: str) -> BlobRef:
    """A blob as a ``(site, blob_id)`` pair of columns names it."""
    return BlobRef(load_layout(site), blob_id)


def blob_values(blob: BlobRef) -> dict[str, str]:
    """The ``site`` and ``blob_id`` column values naming ``blob``."""
    return {"site": dump_layout(blob.layout), "blob_id": blob.blob_id}


def naming_site(column: sa.Column[str], site: str) -> sa.ColumnElement[bool]:
    """``column`` holds a layout with a shard on ``site`` (site names have no LIKE
    wildcards: only ``[a-z0-9-]``)."""
    return sa.or_(
        column == site,
        column.like(f"%:{site}"),
        column.like(f"%:{site},%"),
        column.like(f"%,{site}"),
        column.like(f"%,{site},%"),
    )


def _dump_segment(segment: Segment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "s": dump_layout(segment.blob.layout),
        "b": segment.blob.blob_id,
        "n": segment.size,
    }
    if segment.sealing is not None:
        out["z"] = sealing_json(segment.sealing)
    if segment.part_number is not None:
        out["p"] = segment.part_number
    if segment.etag:
        out["e"] = segment.etag
    if segment.checksum is not None:
        out["c"] = checksum_json(segment.checksum)
    return out


def _load_segment(data: dict[str, Any]) -> Segment:
    return Segment(
        blob_ref(data["s"], data["b"]),
        int(data["n"]),
        data.get("p"),
        data.get("e", ""),
        checksum_from_json(data["c"]) if "c" in data else None,
        sealing_from_json(data["z"]) if "z" in data else None,
    )


def dump_manifest(manifest: Manifest) -> str:
    """A manifest as stored: compact JSON, format marker first."""
    out: dict[str, Any] = {
        "format": manifest.format,
        "segments": [_dump_segment(s) for s in manifest.segments],
    }
    if manifest.encryption is not None:
        out["enc"] = encryption_json(manifest.encryption)
    return json.dumps(out, separators=(",", ":"))


def load_manifest(text: str) -> Manifest:
    """Inverse of :func:`dump_manifest`; refuses formats this code does not know."""
    data = json.loads(text)
    fmt = int(data["format"])
    if fmt not in READABLE_MANIFEST_FORMATS:
        raise ValueError(f"unknown manifest format {fmt}")
    encryption = encryption_from_json(data["enc"]) if "enc" in data else None
    return Manifest(tuple(_load_segment(s) for s in data["segments"]), fmt, encryption)


def dump_map(values: dict[str, str]) -> str:
    """A string map as stored."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def load_map(text: str) -> dict[str, str]:
    """Inverse of :func:`dump_map`."""
    if text == "{}":  # most objects have no metadata or tags: skip the parser (3 per read)
        return {}
    loaded: dict[str, str] = json.loads(text)
    return loaded


def _dump(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def checksum_json(checksum: Checksum) -> dict[str, str]:
    """A checksum's stored form: algorithm, base64 value, type."""
    return {"a": checksum.algorithm.value, "v": checksum.value, "t": checksum.type.value}


def checksum_from_json(data: dict[str, Any]) -> Checksum:
    """Inverse of :func:`checksum_json`."""
    return Checksum(ChecksumAlgorithm(data["a"]), str(data["v"]), ChecksumType(data["t"]))


def sealing_json(sealing: Sealing) -> dict[str, object]:
    """A sealing's stored form (binary fields base64)."""
    out: dict[str, object] = {
        "f": sealing.envelope,
        "cs": sealing.chunk_size,
        "ctx": sealing.context,
        "w": _b64(sealing.wrapped_dek),
    }
    if sealing.kek is not None:
        out["k"] = sealing.kek.key_id
        out["kv"] = sealing.kek.version
    return out


def sealing_from_json(data: dict[str, Any]) -> Sealing:
    """Inverse of :func:`sealing_json`."""
    kek = KekRef(str(data["k"]), int(data["kv"])) if "k" in data else None
    return Sealing(
        int(data["f"]), int(data["cs"]), str(data["ctx"]), base64.b64decode(data["w"]), kek
    )


def encryption_json(encryption: ObjectEncryption) -> dict[str, object]:
    """An object's (or upload's) encryption as stored."""
    out: dict[str, object] = {"m": encryption.mode.value}
    if encryption.key_id is not None:
        out["k"] = encryption.key_id
    if encryption.customer_key_hmac is not None and encryption.customer_key_salt is not None:
        out["ch"] = _b64(encryption.customer_key_hmac)
        out["cs"] = _b64(encryption.customer_key_salt)
    return out


def encryption_from_json(data: dict[str, Any]) -> ObjectEncryption:
    """Inverse of :func:`encryption_json`."""
    return ObjectEncryption(
        EncryptionMode(data["m"]),
        data.get("k"),
        base64.b64decode(data["ch"]) if "ch" in data else None,
        base64.b64decode(data["cs"]) if "cs" in data else None,
    )


def dump_sealing(sealing: Sealing | None) -> str | None:
    """A part's sealing as stored, or NULL (a plaintext part)."""
    return None if sealing is None else _dump(sealing_json(sealing))


def load_sealing(text: str | None) -> Sealing | None:
    """Inverse of :func:`dump_sealing`."""
    return None if text is None else sealing_from_json(json.loads(text))


def _dump_encryption(encryption: ObjectEncryption | None) -> str | None:
    return None if encryption is None else _dump(encryption_json(encryption))


def _load_encryption(text: str | None) -> ObjectEncryption | None:
    return None if text is None else encryption_from_json(json.loads(text))


def dump_checksum(checksum: Checksum | None) -> str | None:
    """A checksum as stored, or NULL."""
    return None if checksum is None else json.dumps(checksum_json(checksum), sort_keys=True)


def load_checksum(text: str | None) -> Checksum | None:
    """Inverse of :func:`dump_checksum`."""
    return None if text is None else checksum_from_json(json.loads(text))


def manifest_blobs(text: str) -> list[BlobRef]:
    """The blobs a stored manifest names."""
    return load_manifest(text).blobs()


def access_key_values(key: AccessKey) -> dict[str, object]:
    """Column values of an access key."""
    return {
        "access_key_id": key.access_key_id,
        "secret_key": key.secret_key,
        "tenant": key.tenant,
        "created": key.created,
        "is_operator": key.is_operator,
        "description": key.description,
    }


def access_key(row: Row) -> AccessKey:
    """An ``access_keys`` row as a model."""
    return AccessKey(
        row.access_key_id,
        row.secret_key,
        row.tenant,
        row.created,
        bool(row.is_operator),
        row.description,
    )


def bucket_values(bucket: Bucket) -> dict[str, object]:
    """Column values of a bucket."""
    return {
        "name": bucket.name,
        "tenant": bucket.tenant,
        "created": bucket.created,
        "location": bucket.location,
        "encryption": dump_bucket_encryption(bucket.encryption),
        "tags": dump_bucket_tags(bucket.tags),
        "versioning": None if bucket.versioning is None else bucket.versioning.value,
        "object_lock": None if bucket.object_lock is None else dump_object_lock(bucket.object_lock),
        "lifecycle": None if bucket.lifecycle is None else dump_lifecycle(bucket.lifecycle),
    }


def dump_bucket_tags(tags: dict[str, str]) -> str | None:
    """A bucket's tag set as stored, or NULL (none set)."""
    return dump_map(tags) if tags else None


def dump_bucket_encryption(config: BucketEncryption | None) -> str | None:
    """A bucket's default encryption as stored, or NULL (none set)."""
    if config is None:
        return None
    return _dump({"m": config.mode.value, "k": config.kms_key_id, "bk": config.bucket_key_enabled})


def bucket(row: Row) -> Bucket:
    """A ``buckets`` row as a model."""
    encryption = None if row.encryption is None else _bucket_encryption(row.encryption)
    tags = {} if row.tags is None else load_map(row.tags)
    versioning = None if row.versioning is None else Versioning(row.versioning)
    lock = None if row.object_lock is None else load_object_lock(row.object_lock)
    rules = None if row.lifecycle is None else load_lifecycle(row.lifecycle)
    return Bucket(
        row.name, row.tenant, row.created, row.location, encryption, tags, versioning, lock, rules
    )


def dump_object_lock(config: ObjectLockConfig) -> str:
    """A bucket's object lock as stored: ``{}``, or its default retention."""
    default = config.default
    if default is None:
        return "{}"
    period = {"d": default.days} if default.days is not None else {"y": default.years}
    return _dump({"m": default.mode.value, **period})


def load_object_lock(text: str) -> ObjectLockConfig:
    """The stored form back."""
    raw = json.loads(text)
    if not raw:
        return ObjectLockConfig()
    return ObjectLockConfig(DefaultRetention(LockMode(raw["m"]), raw.get("d"), raw.get("y")))


def lock_values(retention: Retention | None, legal_hold: bool) -> dict[str, object]:
    """The lock columns of a version or an upload."""
    return {
        "lock_mode": None if retention is None else retention.mode.value,
        "lock_until": None if retention is None else retention.until,
        "legal_hold": legal_hold,
    }


def lock_of(row: Row) -> Retention | None:
    """A row's retention, or None."""
    if row.lock_mode is None or row.lock_until is None:
        return None
    return Retention(LockMode(row.lock_mode), row.lock_until)


def object_values(version: ObjectVersion) -> dict[str, object]:
    """Column values of an object version."""
    return {
        "bucket": version.bucket,
        "key": version.key,
        "version_id": version.version_id,
        "size": version.size,
        "etag": version.etag,
        "last_modified": version.last_modified,
        "content_type": version.content_type,
        "system_meta": dump_map(version.system_meta),
        "user_meta": dump_map(version.user_meta),
        "tags": dump_map(version.tags),
        "checksum": dump_checksum(version.checksum),
        "storage_class": version.storage_class,
        "owner": version.owner,
        "manifest": dump_manifest(version.manifest),
        "delete_marker": version.delete_marker,
        "null_version": version.null_version,
        **lock_values(version.retention, version.legal_hold),
        "seq": 0,  # a new key's first version; the store numbers later ones
    }


def object_version(row: Row) -> ObjectVersion:
    """An ``objects`` row as a model."""
    return ObjectVersion(
        bucket=row.bucket,
        key=row.key,
        version_id=row.version_id,
        size=row.size,
        etag=row.etag,
        last_modified=row.last_modified,
        manifest=load_manifest(row.manifest),
        content_type=row.content_type,
        system_meta=load_map(row.system_meta),
        user_meta=load_map(row.user_meta),
        tags=load_map(row.tags),
        checksum=load_checksum(row.checksum),
        storage_class=row.storage_class,
        owner=row.owner,
        delete_marker=bool(row.delete_marker),
        null_version=bool(row.null_version),
        retention=lock_of(row),
        legal_hold=bool(row.legal_hold),
        noncurrent_since=getattr(row, "noncurrent_since", None),
    )


def object_summary(row: Row) -> ObjectSummary:
    """A listing row (object columns plus the bucket's ``tenant``) as a summary."""
    checksum = load_checksum(row.checksum)
    return ObjectSummary(
        key=row.key,
        size=row.size,
        etag=row.etag,
        last_modified=row.last_modified,
        storage_class=row.storage_class,
        owner=row.owner or row.tenant,
        checksum_algorithm=None if checksum is None else checksum.algorithm,
        checksum_type=None if checksum is None else checksum.type,
    )


def upload_values(upload: MultipartUpload) -> dict[str, object]:
    """Column values of a multipart upload."""
    return {
        "upload_id": upload.upload_id,
        "bucket": upload.bucket,
        "key": upload.key,
        "initiated": upload.initiated,
        "owner": upload.owner,
        "content_type": upload.content_type,
        "system_meta": dump_map(upload.system_meta),
        "user_meta": dump_map(upload.user_meta),
        "tags": dump_map(upload.tags),
        "checksum_algorithm": _enum_value(upload.checksum_algorithm),
        "checksum_type": _enum_value(upload.checksum_type),
        "storage_class": upload.storage_class,
        "encryption": _dump_encryption(upload.encryption),
        **lock_values(upload.retention, upload.legal_hold),
    }


def upload(row: Row) -> MultipartUpload:
    """An ``uploads`` row as a model."""
    return MultipartUpload(
        upload_id=row.upload_id,
        bucket=row.bucket,
        key=row.key,
        initiated=row.initiated,
        owner=row.owner,
        content_type=row.content_type,
        system_meta=load_map(row.system_meta),
        user_meta=load_map(row.user_meta),
        tags=load_map(row.tags),
        checksum_algorithm=(
            None if row.checksum_algorithm is None else ChecksumAlgorithm(row.checksum_algorithm)
        ),
        checksum_type=None if row.checksum_type is None else ChecksumType(row.checksum_type),
        storage_class=row.storage_class,
        encryption=_load_encryption(row.encryption),
        retention=lock_of(row),
        legal_hold=bool(row.legal_hold),
    )


def part_values(part: Part) -> dict[str, object]:
    """Column values of a part."""
    return {
        "upload_id": part.upload_id,
        "part_number": part.part_number,
        "size": part.size,
        "etag": part.etag,
        "last_modified": part.last_modified,
        **blob_values(part.blob),
        "checksum": dump_checksum(part.checksum),
        "sealing": dump_sealing(part.sealing),
    }


def part(row: Row) -> Part:
    """A ``parts`` row as a model."""
    return Part(
        upload_id=row.upload_id,
        part_number=row.part_number,
        size=row.size,
        etag=row.etag,
        last_modified=row.last_modified,
        blob=blob_ref(row.site, row.blob_id),
        checksum=load_checksum(row.checksum),
        sealing=load_sealing(row.sealing),
    )


def kms_key_values(key: KmsKey) -> dict[str, object]:
    """Column values of a key-encryption key (``created`` and ``deletion_date`` are truncated
    by their column type; the timestamps inside the JSON columns here)."""
    versions = [replace(v, created=_utc_millis(v.created)) for v in key.versions]
    rewrap = key.rewrap
    if rewrap is not None:
        rewrap = replace(
            rewrap,
            started=None if rewrap.started is None else _utc_millis(rewrap.started),
            finished=None if rewrap.finished is None else _utc_millis(rewrap.finished),
        )
    return {
        "key_id": key.key_id,
        "tenant": key.tenant,
        "alias": key.alias,
        "manager": key.manager,
        "state": key.state.value,
        "created": key.created,
        "description": key.description,
        "deletion_date": key.deletion_date,
        "versions": _dump([_key_version_json(v) for v in versions]),
        "rewrap": None if rewrap is None else _dump(_rewrap_json(rewrap)),
    }


def kms_key(row: Row) -> KmsKey:
    """A ``kms_keys`` row as a model."""
    return KmsKey(
        key_id=row.key_id,
        tenant=row.tenant,
        manager=row.manager,
        state=KeyState(row.state),
        created=row.created,
        versions=_key_versions(row.versions),
        description=row.description,
        alias=row.alias,
        deletion_date=row.deletion_date,
        rewrap=None if row.rewrap is None else _rewrap(json_object(row.rewrap)),
    )


def _bucket_encryption(text: str) -> BucketEncryption:
    data = json_object(text)
    return BucketEncryption(
        EncryptionMode(field(data, "m", str)),
        optional(data, "k", str),
        field(data, "bk", bool, False),
    )


def _key_version_json(version: KeyVersion) -> dict[str, object]:
    return {"n": version.number, "h": version.handle, "c": version.created.isoformat()}


def _key_versions(text: str) -> tuple[KeyVersion, ...]:
    loaded = json.loads(text)
    if not isinstance(loaded, list) or not all(isinstance(v, dict) for v in loaded):
        raise ValueError(f"a key's stored versions are not a list of objects: {text[:80]!r}")
    return tuple(
        KeyVersion(
            field(v, "n", int),
            field(v, "h", str),
            dt.datetime.fromisoformat(field(v, "c", str)),
        )
        for v in loaded
    )


def _rewrap_json(progress: RewrapProgress) -> dict[str, object]:
    return {
        "target_version": progress.target_version,
        "scanned": progress.scanned,
        "rewrapped": progress.rewrapped,
        "done": progress.done,
        "started": progress.started.isoformat() if progress.started else None,
        "finished": progress.finished.isoformat() if progress.finished else None,
    }


def _rewrap(data: dict[str, object]) -> RewrapProgress:
    return RewrapProgress(
        field(data, "target_version", int),
        count(data, "scanned"),
        count(data, "rewrapped"),
        field(data, "done", bool, False),
        time_field(data, "started"),
        time_field(data, "finished"),
    )


def _utc_millis(value: dt.datetime) -> dt.datetime:
    """As ``UtcDateTime`` stores a column: aware, UTC, truncated to the millisecond."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
    return to_millis(value.astimezone(dt.UTC))


def _enum_value(member: ChecksumAlgorithm | ChecksumType | None) -> str | None:
    return None if member is None else member.value
