"""Shared by the ``MetadataStore`` contract tests: a fake clock and builders of model values."""

from __future__ import annotations

import datetime as dt
import uuid

from andromede.core.models import (
    BlobRef,
    Checksum,
    Manifest,
    MultipartUpload,
    ObjectVersion,
    Part,
    Segment,
)
from andromede.core.placement import Layout
from andromede.metadata.sql import SqlMetadataStore

T0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
GRACE = dt.timedelta(minutes=5)
LATER = T0 + dt.timedelta(days=1)


class FakeClock:
    """A clock the test moves by hand (the ``Clock`` port)."""

    def __init__(self, now: dt.datetime) -> None:
        self.current = now

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        """Move time forward by ``delta``; returns the new now."""
        self.current += delta
        return self.current


def blob(name: str) -> BlobRef:
    return BlobRef(Layout.single("site-a"), name)


def version(
    key: str,
    *blobs: str,
    etag: str = "e",
    bucket: str = "photos",
    owner: str = "",
    checksum: Checksum | None = None,
) -> ObjectVersion:
    names = blobs or (f"blob-{uuid.uuid4().hex}",)
    manifest = Manifest(tuple(Segment(blob(n), 10) for n in names))
    return ObjectVersion(
        bucket=bucket,
        key=key,
        version_id=uuid.uuid4().hex,
        size=manifest.size,
        etag=etag,
        last_modified=T0,
        manifest=manifest,
        owner=owner,
        checksum=checksum,
    )


def upload(upload_id: str, key: str = "big", initiated: dt.datetime = T0) -> MultipartUpload:
    return MultipartUpload(upload_id, "photos", key, initiated, owner="acme")


def part(upload_id: str, number: int, blob_id: str) -> Part:
    return Part(upload_id, number, 5, f"etag-{number}", T0, blob(blob_id))


async def garbage(store: SqlMetadataStore) -> set[str]:
    return {b.blob_id for b in await store.due_garbage(LATER, 10_000)}


async def referenced(store: SqlMetadataStore, ref: BlobRef) -> bool:
    """Whether a version, a part or the garbage queue names ``ref`` (as the sweeper asks)."""
    return ref.layout in (await store.blob_layouts([ref.blob_id])).get(ref.blob_id, set())
