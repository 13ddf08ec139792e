"""Contract of ``MetadataStore``: multipart uploads and the garbage queue, on SQLite and
PostgreSQL (the fixtures are in ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm, ChecksumType
from andromede.core.models import (
    BlobRef,
    Checksum,
    Manifest,
    MultipartUpload,
    ObjectVersion,
    Part,
    Segment,
    WriteCondition,
)
from andromede.core.placement import Layout, Redundancy
from andromede.metadata.sql import SqlMetadataStore
from support.metadata import (
    LATER,
    T0,
    blob,
    garbage,
    part,
    referenced,
    upload,
    version,
)


# --- multipart ----------------------------------------------------------------------------------
async def test_uploads_and_parts(store: SqlMetadataStore, bucket: str) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await store.create_upload(MultipartUpload("u0", "nope", "k", T0, "acme"))
    full = MultipartUpload(
        "u1",
        bucket,
        "big",
        T0,
        "acme",
        content_type="video/mp4",
        system_meta={"a": "b"},
        user_meta={"c": "d"},
        tags={"e": "f"},
        checksum_algorithm=ChecksumAlgorithm.CRC32,
        checksum_type=ChecksumType.COMPOSITE,
        storage_class="GLACIER",
    )
    await store.create_upload(full)
    assert await store.get_upload(bucket, "big", "u1") == full
    assert await store.get_upload(bucket, "other", "u1") is None
    assert await store.get_upload("nope", "big", "u1") is None
    with pytest.raises(errors.NoSuchUpload):
        await store.put_part(part("ghost", 1, "p"))
    for n in (3, 1, 2):
        await store.put_part(part("u1", n, f"p{n}"))
    checksummed = Part(
        "u1", 2, 9, "etag-new", T0, blob("p2b"), Checksum(ChecksumAlgorithm.CRC32, "q")
    )
    await store.put_part(checksummed)
    parts = await store.list_parts("u1")
    assert [p.part_number for p in parts] == [1, 2, 3]
    assert parts[1] == checksummed
    assert [p.part_number for p in await store.list_parts("u1", after_part=1, limit=1)] == [2]
    assert await store.list_parts("ghost") == []
    assert await garbage(store) == {"p2"}
    assert await referenced(store, blob("p1"))


async def test_list_uploads(store: SqlMetadataStore, bucket: str) -> None:
    t1, t2 = T0, T0 + dt.timedelta(seconds=1)
    entries = [
        ("z9", "b", t1),
        ("a1", "b", t2),
        ("a2", "b", t1),
        ("c1", "a", t1),
        ("d1", "a/x", t1),
        ("e1", "aé", t1),
        ("f1", "B", t1),
    ]
    for upload_id, key, initiated in entries:
        await store.create_upload(upload(upload_id, key, initiated))

    async def ids(
        prefix: str = "", key_marker: str = "", id_marker: str = "", limit: int = 100
    ) -> list[str]:
        found = await store.list_uploads(bucket, prefix, key_marker, id_marker, limit)
        return [u.upload_id for u in found]

    assert await ids() == ["f1", "c1", "d1", "e1", "a2", "z9", "a1"]
    assert await ids(prefix="a") == ["c1", "d1", "e1"]
    assert await ids(prefix="b") == ["a2", "z9", "a1"]
    assert await ids(key_marker="a/x") == ["e1", "a2", "z9", "a1"]
    # with an upload id marker, the rest of that key's uploads come first
    assert await ids(key_marker="a/x", id_marker="d0") == ["d1", "e1", "a2", "z9", "a1"]
    assert await ids(key_marker="b", id_marker="a2") == ["z9", "a1"]
    assert await ids(key_marker="b", id_marker="z9") == ["a1"]
    assert await ids(key_marker="b", id_marker="a1") == []
    # a marker upload that is gone: ids greater than the marker
    assert await ids(key_marker="b", id_marker="m") == ["z9"]
    assert await ids(limit=2) == ["f1", "c1"]
    assert await ids(limit=0) == []
    assert await store.list_uploads("nope", "", "", "", 10) == []


async def test_complete_upload(store: SqlMetadataStore, bucket: str) -> None:
    await store.put_object(version("big", "previous"))
    await store.create_upload(upload("u1"))
    for n in (1, 2, 3):
        await store.put_part(part("u1", n, f"p{n}"))
    manifest = Manifest((Segment(blob("p1"), 5, 1), Segment(blob("p3"), 5, 3)))
    final = ObjectVersion(bucket, "big", "v", 10, "x-2", T0, manifest)
    await store.complete_upload("u1", final, [1, 3])
    assert await store.get_object(bucket, "big") == final
    assert await store.get_upload(bucket, "big", "u1") is None
    assert await store.list_parts("u1") == []
    assert await garbage(store) == {"p2", "previous"}
    for name in ("p1", "p3"):
        assert await referenced(store, blob(name))
    with pytest.raises(errors.NoSuchUpload):
        await store.complete_upload("u1", final, [1, 3])
    # deleting the completed object frees the used parts' blobs
    await store.delete_object(bucket, "big")
    assert await garbage(store) == {"p1", "p2", "p3", "previous"}


async def test_complete_upload_checks_condition(store: SqlMetadataStore, bucket: str) -> None:
    await store.put_object(version("big", "existing"))
    await store.create_upload(upload("u1"))
    await store.put_part(part("u1", 1, "p1"))
    final = ObjectVersion(bucket, "big", "v", 5, "x-1", T0, Manifest((Segment(blob("p1"), 5, 1),)))
    with pytest.raises(errors.PreconditionFailed):
        await store.complete_upload("u1", final, [1], WriteCondition(if_none_match="*"))
    assert await store.get_upload(bucket, "big", "u1") is not None
    assert await garbage(store) == set()
    await store.complete_upload("u1", final, [1], WriteCondition(if_match="e"))
    assert await garbage(store) == {"existing"}


async def test_concurrent_complete_and_abort(store: SqlMetadataStore, bucket: str) -> None:
    await store.create_upload(upload("u1"))
    await store.put_part(part("u1", 1, "p1"))
    final = ObjectVersion(bucket, "big", "v", 5, "x-1", T0, Manifest((Segment(blob("p1"), 5, 1),)))
    completed, aborted = await asyncio.gather(
        store.complete_upload("u1", final, [1]),
        store.abort_upload("u1"),
        return_exceptions=True,
    )
    if completed is None:  # complete won; abort found nothing
        assert aborted is False
        assert await store.get_object(bucket, "big") == final
        assert await garbage(store) == set()
    else:
        assert isinstance(completed, errors.NoSuchUpload)
        assert aborted is True
        assert await garbage(store) == {"p1"}


async def test_abort_upload(store: SqlMetadataStore, bucket: str) -> None:
    await store.create_upload(upload("u1"))
    await store.put_part(part("u1", 1, "p1"))
    await store.put_part(part("u1", 2, "p2"))
    assert await store.abort_upload("u1") is True
    assert await store.abort_upload("u1") is False
    assert await store.get_upload(bucket, "big", "u1") is None
    assert await garbage(store) == {"p1", "p2"}
    with pytest.raises(errors.NoSuchUpload):
        await store.put_part(part("u1", 3, "p3"))


# --- garbage ------------------------------------------------------------------------------------
async def test_garbage_queue(store: SqlMetadataStore) -> None:
    await store.add_garbage([blob("late")], T0 + dt.timedelta(hours=2))
    await store.add_garbage([blob("early"), blob("mid"), blob("early")], T0)
    await store.add_garbage([blob("mid")], T0 + dt.timedelta(hours=9))  # already queued
    await store.add_garbage([], T0)
    assert await store.due_garbage(T0 - dt.timedelta(seconds=1), 10) == []
    assert {b.blob_id for b in await store.due_garbage(T0, 10)} == {"early", "mid"}
    assert len(await store.due_garbage(LATER, 2)) == 2
    assert [b.blob_id for b in await store.due_garbage(LATER, 10)][-1] == "late"
    assert await referenced(store, blob("late"))
    await store.forget_garbage([blob("early"), blob("mid"), blob("unknown")])
    await store.forget_garbage([])
    assert await store.due_garbage(LATER, 10) == [blob("late")]
    assert not await referenced(store, blob("early"))
    assert not await referenced(store, BlobRef(Layout.single("site-b"), "late"))


async def test_garbage_on_sites_out_of_reach_can_be_left_out(store: SqlMetadataStore) -> None:
    """The sweeper asks for the garbage of the sites it reaches: an entry naming a skipped site,
    as a single copy or as a shard of a layout, is left out; one naming a site whose name
    merely contains the skipped one's is not."""
    r3 = Redundancy.replicas(3)
    queued = [
        BlobRef(Layout.single("site-a"), "single-a"),
        BlobRef(Layout.single("site-ab"), "single-ab"),
        BlobRef(Layout(r3, ("site-b", "site-a", "site-c")), "shard-a-middle"),
        BlobRef(Layout(r3, ("site-b", "site-c", "site-a")), "shard-a-last"),
        BlobRef(Layout(r3, ("site-a", "site-b", "site-c")), "shard-a-first"),
        BlobRef(Layout(r3, ("site-b", "site-c", "site-ab")), "shard-ab"),
    ]
    await store.add_garbage(queued, T0)
    assert {b.blob_id for b in await store.due_garbage(T0, 10, ["site-a"])} == {
        "single-ab",
        "shard-ab",
    }
    assert {b.blob_id for b in await store.due_garbage(T0, 10, ["site-a", "site-ab"])} == set()
    assert len(await store.due_garbage(T0, 10, [])) == len(queued)


async def test_garbage_in_large_batches(store: SqlMetadataStore, bucket: str) -> None:
    names = [f"seg{i:05d}" for i in range(1200)]
    await store.put_object(version("huge", *names))
    await store.delete_object(bucket, "huge")
    queued = await store.due_garbage(LATER, 10_000)
    assert {b.blob_id for b in queued} == set(names)
    await store.forget_garbage(queued)
    assert await store.due_garbage(LATER, 10_000) == []
