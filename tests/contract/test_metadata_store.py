"""Contract of ``MetadataStore``: every implementation, the same behaviour.

Runs on SQLite (a temporary file) and PostgreSQL (a server started for the session, whose
default collation is ICU ``en-US`` so that byte-order sorting is really tested).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite

from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm, ChecksumType
from andromede.core.models import (
    AccessKey,
    BlobRef,
    Bucket,
    Checksum,
    Manifest,
    MultipartUpload,
    ObjectVersion,
    Part,
    Segment,
    Tenant,
    WriteCondition,
)
from andromede.metadata.schema import UtcDateTime
from andromede.metadata.sql import SqlMetadataStore, open_store
from support.postgres import create_database

T0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
GRACE = dt.timedelta(minutes=5)
LATER = T0 + dt.timedelta(days=1)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.current = now

    def now(self) -> dt.datetime:
        return self.current


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    server: str = request.getfixturevalue("postgres_url")
    return create_database(server, f"t_{uuid.uuid4().hex}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def store(database_url: str, clock: FakeClock) -> AsyncIterator[SqlMetadataStore]:
    opened = await open_store(database_url, garbage_grace=GRACE, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def bucket(store: SqlMetadataStore) -> str:
    await store.create_tenant(Tenant("acme", T0))
    await store.create_bucket(Bucket("photos", "acme", T0, "fr-par"))
    return "photos"


def blob(name: str) -> BlobRef:
    return BlobRef("site-a", name)


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


# --- tenants and access keys --------------------------------------------------------------------
async def test_tenants(store: SqlMetadataStore) -> None:
    await store.create_tenant(Tenant("zeta", T0))
    await store.create_tenant(Tenant("acme", T0))
    assert await store.get_tenant("acme") == Tenant("acme", T0)
    assert await store.get_tenant("nobody") is None
    assert [t.name for t in await store.list_tenants()] == ["acme", "zeta"]
    with pytest.raises(errors.TenantAlreadyExists):
        await store.create_tenant(Tenant("acme", T0))


async def test_access_keys(store: SqlMetadataStore) -> None:
    await store.create_tenant(Tenant("acme", T0))
    await store.create_tenant(Tenant("other", T0))
    key = AccessKey("AKB", "secret/with+chars", "acme", T0, is_operator=True, description="ops")
    await store.create_access_key(key)
    await store.create_access_key(AccessKey("AKA", "s2", "other", T0))
    assert await store.get_access_key("AKB") == key
    assert await store.get_access_key("AKX") is None
    assert [k.access_key_id for k in await store.list_access_keys()] == ["AKA", "AKB"]
    assert await store.list_access_keys("acme") == [key]
    with pytest.raises(errors.NoSuchTenant):
        await store.create_access_key(AccessKey("AKC", "s", "ghost", T0))
    assert await store.delete_access_key("AKB") is True
    assert await store.delete_access_key("AKB") is False
    assert await store.get_access_key("AKB") is None


# --- buckets ------------------------------------------------------------------------------------
async def test_buckets(store: SqlMetadataStore) -> None:
    await store.create_tenant(Tenant("acme", T0))
    await store.create_tenant(Tenant("other", T0))
    await store.create_bucket(Bucket("b-2", "acme", T0))
    await store.create_bucket(Bucket("b.1", "acme", T0, "fr-par"))
    await store.create_bucket(Bucket("b1", "acme", T0))
    await store.create_bucket(Bucket("zz", "other", T0))
    assert await store.get_bucket("b.1") == Bucket("b.1", "acme", T0, "fr-par")
    assert await store.get_bucket("nope") is None
    # byte order: '-' (0x2d) < '.' (0x2e) < '1' (0x31), whatever the database locale says
    assert [b.name for b in await store.list_buckets("acme")] == ["b-2", "b.1", "b1"]
    assert await store.list_buckets("ghost") == []
    for owner in ("acme", "other"):
        with pytest.raises(errors.BucketAlreadyExists):
            await store.create_bucket(Bucket("b1", owner, T0))
    with pytest.raises(errors.NoSuchTenant):
        await store.create_bucket(Bucket("fresh", "ghost", T0))


async def test_delete_bucket(store: SqlMetadataStore, bucket: str) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await store.delete_bucket("nope")
    await store.put_object(version("k", "obj"))
    with pytest.raises(errors.BucketNotEmpty):
        await store.delete_bucket(bucket)
    assert await store.delete_object(bucket, "k")
    await store.create_upload(upload("u1"))
    await store.put_part(part("u1", 1, "p1"))
    await store.put_part(part("u1", 2, "p2"))
    await store.delete_bucket(bucket)
    assert await store.get_bucket(bucket) is None
    assert await store.get_upload(bucket, "big", "u1") is None
    assert await store.list_parts("u1") == []
    assert await garbage(store) == {"obj", "p1", "p2"}
    # the name is free again
    await store.create_bucket(Bucket(bucket, "acme", T0))


# --- objects ------------------------------------------------------------------------------------
async def test_object_round_trip(store: SqlMetadataStore, bucket: str) -> None:
    manifest = Manifest(
        (
            Segment(blob("x1"), 7, 1, "etag1", Checksum(ChecksumAlgorithm.CRC32C, "AAAAAA==")),
            Segment(blob("x2"), 3, 2, "etag2"),
        )
    )
    original = ObjectVersion(
        bucket=bucket,
        key="dir/é 100%.txt",
        version_id="v1",
        size=10,
        etag="abc-2",
        last_modified=T0,
        manifest=manifest,
        content_type="text/plain",
        system_meta={"cache-control": "no-cache"},
        user_meta={"colour": "bleu"},
        tags={"team": "x"},
        checksum=Checksum(ChecksumAlgorithm.CRC32C, "AAAAAA==", ChecksumType.COMPOSITE),
        storage_class="STANDARD_IA",
        owner="acme",
    )
    await store.put_object(original)
    assert await store.get_object(bucket, original.key) == original
    assert await store.get_object(bucket, "missing") is None
    assert await store.get_object("nope", original.key) is None


async def test_timestamps_are_aware_utc_milliseconds(store: SqlMetadataStore, bucket: str) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    stamp = dt.datetime(2024, 5, 6, 9, 8, 9, 123456, tzinfo=paris)
    await store.put_object(ObjectVersion(bucket, "k", "v", 0, "e", stamp, Manifest(())))
    got = await store.get_object(bucket, "k")
    assert got is not None
    assert got.last_modified == dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
    assert got.last_modified.utcoffset() == dt.timedelta(0)
    listed = await store.list_objects(bucket, "", "", False, 10)
    assert listed[0].last_modified == got.last_modified


async def test_put_object_needs_bucket(store: SqlMetadataStore, bucket: str) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await store.put_object(version("k", bucket="nope"))


async def test_overwrite_queues_old_blobs(
    store: SqlMetadataStore, bucket: str, clock: FakeClock
) -> None:
    await store.put_object(version("k", "old1", "old2", "kept"))
    clock.current = T0 + dt.timedelta(minutes=1)
    await store.put_object(version("k", "new", "kept", etag="e2"))
    current = await store.get_object(bucket, "k")
    assert current is not None
    assert current.etag == "e2"
    due_at = clock.current + GRACE
    assert await store.due_garbage(due_at - dt.timedelta(milliseconds=1), 10) == []
    assert {b.blob_id for b in await store.due_garbage(due_at, 10)} == {"old1", "old2"}
    for name in ("new", "kept", "old1"):
        assert blob(name) in await store.referenced_blobs([blob(name)])
    assert blob("never") not in await store.referenced_blobs([blob("never")])


async def test_delete_object(store: SqlMetadataStore, bucket: str) -> None:
    await store.put_object(version("k", "b1", "b2"))
    assert await store.delete_object(bucket, "k") is True
    assert await store.get_object(bucket, "k") is None
    assert await store.delete_object(bucket, "k") is False
    assert await store.delete_object("nope", "k") is False
    assert await garbage(store) == {"b1", "b2"}
    assert await store.bucket_is_empty(bucket)


async def test_shared_blob_is_not_collected_while_named(
    store: SqlMetadataStore, bucket: str
) -> None:
    await store.put_object(version("a", "shared"))
    await store.put_object(version("b", "shared"))
    await store.delete_object(bucket, "a")
    assert await garbage(store) == set()
    await store.delete_object(bucket, "b")
    assert await garbage(store) == {"shared"}


async def test_update_object_tags(store: SqlMetadataStore, bucket: str) -> None:
    await store.put_object(version("k", "b1"))
    updated = await store.update_object_tags(bucket, "k", {"a": "1", "b": "2"})
    assert updated is not None
    assert updated.tags == {"a": "1", "b": "2"}
    assert await store.get_object(bucket, "k") == updated
    assert await store.update_object_tags(bucket, "missing", {"a": "1"}) is None
    assert await garbage(store) == set()


async def test_bucket_is_empty(store: SqlMetadataStore, bucket: str) -> None:
    assert await store.bucket_is_empty(bucket)
    await store.put_object(version("k"))
    assert not await store.bucket_is_empty(bucket)


# --- listing ------------------------------------------------------------------------------------
KEYS = [
    "a",
    "a/b",
    "aé",
    "a\u00ff",
    "b",
    "A",
    "a%b",
    "a_b",
    "a\U0001f600",
    "a\ue000",
    "a-b",
    "ab",
    "\U0010ffff",
    "\U0010ffffz",
    "a\U0010ffff",
    "a\U0010ffffx",
    "B",
    "a\x01",
]


def byte_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode())


async def listed_keys(
    store: SqlMetadataStore,
    prefix: str = "",
    start: str = "",
    inclusive: bool = False,
    limit: int = 1000,
) -> list[str]:
    return [o.key for o in await store.list_objects("photos", prefix, start, inclusive, limit)]


async def test_list_objects_sorts_in_utf8_byte_order(store: SqlMetadataStore, bucket: str) -> None:
    for key in KEYS:
        await store.put_object(version(key))
    assert await listed_keys(store) == byte_order(KEYS)


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "a",
        "a%",
        "a_",
        "a/",
        "aé",
        "a\u00ff",
        "a\U0001f600",
        "A",
        "b",
        "a\U0010ffff",
        "\U0010ffff",
        "zzz",
        "a/b/c",
    ],
)
async def test_list_objects_prefix(store: SqlMetadataStore, bucket: str, prefix: str) -> None:
    for key in KEYS:
        await store.put_object(version(key))
    expected = byte_order([k for k in KEYS if k.startswith(prefix)])
    assert await listed_keys(store, prefix) == expected


async def test_list_objects_start_and_limit(store: SqlMetadataStore, bucket: str) -> None:
    for key in KEYS:
        await store.put_object(version(key))
    ordered = byte_order(KEYS)
    i = ordered.index("a/b")
    assert await listed_keys(store, start="a/b") == ordered[i + 1 :]
    assert await listed_keys(store, start="a/b", inclusive=True) == ordered[i:]
    assert await listed_keys(store, start="a/a") == ordered[i:]
    assert (
        await listed_keys(store, prefix="a", start="a/b", limit=2)
        == [k for k in ordered[i + 1 :] if k.startswith("a")][:2]
    )
    assert await listed_keys(store, limit=0) == []
    # paging by the last key visits every key once
    seen: list[str] = []
    start, inclusive = "", False
    while page := await listed_keys(store, start=start, inclusive=inclusive, limit=4):
        seen += page
        start = page[-1]
    assert seen == ordered


async def test_list_objects_summary(store: SqlMetadataStore, bucket: str) -> None:
    checksum = Checksum(ChecksumAlgorithm.SHA256, "x", ChecksumType.FULL_OBJECT)
    await store.put_object(version("mine", etag="e1", owner="someone", checksum=checksum))
    await store.put_object(version("plain", etag="e2"))
    mine, plain = await store.list_objects(bucket, "", "", False, 10)
    assert (mine.key, mine.etag, mine.size, mine.owner) == ("mine", "e1", 10, "someone")
    assert (mine.checksum_algorithm, mine.checksum_type) == (
        ChecksumAlgorithm.SHA256,
        ChecksumType.FULL_OBJECT,
    )
    assert mine.storage_class == "STANDARD"
    assert plain.owner == "acme"  # no stored owner: the bucket's tenant
    assert (plain.checksum_algorithm, plain.checksum_type) == (None, None)
    assert await store.list_objects("nope", "", "", False, 10) == []


# --- conditional writes -------------------------------------------------------------------------
async def test_if_none_match(store: SqlMetadataStore, bucket: str) -> None:
    only_new = WriteCondition(if_none_match_any=True)
    await store.put_object(version("k", "first"), only_new)
    with pytest.raises(errors.PreconditionFailed):
        await store.put_object(version("k", "second"), only_new)
    current = await store.get_object(bucket, "k")
    assert current is not None
    assert current.manifest.blobs() == [blob("first")]
    # the refused write queued nothing: its blobs are the caller's to clean up
    assert await garbage(store) == set()


async def test_if_match(store: SqlMetadataStore, bucket: str) -> None:
    with pytest.raises(errors.NoSuchKey):
        await store.put_object(version("k"), WriteCondition(if_match='"abc"'))
    await store.put_object(version("k", "v1", etag="abc"))
    await store.put_object(version("k", "v2", etag="def"), WriteCondition(if_match='"abc"'))
    with pytest.raises(errors.PreconditionFailed):
        await store.put_object(version("k", "v3", etag="ghi"), WriteCondition(if_match="abc"))
    await store.put_object(version("k", "v4", etag="jkl"), WriteCondition(if_match="def"))
    await store.put_object(version("k", "v5", etag="mno"), WriteCondition(if_match="*"))
    await store.put_object(version("k", "v6", etag="pqr"), WriteCondition(if_match='"x", "mno"'))
    current = await store.get_object(bucket, "k")
    assert current is not None
    assert current.etag == "pqr"
    assert await garbage(store) == {"v1", "v2", "v4", "v5"}


async def test_concurrent_create_only_one_wins(store: SqlMetadataStore, bucket: str) -> None:
    only_new = WriteCondition(if_none_match_any=True)
    outcomes = await asyncio.gather(
        *(store.put_object(version("race", f"b{i}"), only_new) for i in range(20)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if o is None]
    assert len(winners) == 1
    assert all(isinstance(o, errors.PreconditionFailed) for o in outcomes if o is not None)
    assert await garbage(store) == set()


async def test_concurrent_overwrites_collect_every_loser(
    store: SqlMetadataStore, bucket: str
) -> None:
    names = [f"b{i}" for i in range(20)]
    await asyncio.gather(*(store.put_object(version("race", n)) for n in names))
    current = await store.get_object(bucket, "race")
    assert current is not None
    (live,) = current.manifest.blobs()
    assert await garbage(store) == set(names) - {live.blob_id}


async def test_concurrent_if_match_chain(store: SqlMetadataStore, bucket: str) -> None:
    await store.put_object(version("k", "v0", etag="0"))
    outcomes = await asyncio.gather(
        *(
            store.put_object(version("k", f"v{i}", etag=str(i)), WriteCondition(if_match="0"))
            for i in range(1, 11)
        ),
        return_exceptions=True,
    )
    assert sum(o is None for o in outcomes) == 1


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
    assert blob("p1") in await store.referenced_blobs([blob("p1")])


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
        assert blob(name) in await store.referenced_blobs([blob(name)])
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
        await store.complete_upload("u1", final, [1], WriteCondition(if_none_match_any=True))
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
    assert blob("late") in await store.referenced_blobs([blob("late")])
    await store.forget_garbage([blob("early"), blob("mid"), blob("unknown")])
    await store.forget_garbage([])
    assert await store.due_garbage(LATER, 10) == [blob("late")]
    assert blob("early") not in await store.referenced_blobs([blob("early")])
    assert BlobRef("site-b", "late") not in await store.referenced_blobs(
        [BlobRef("site-b", "late")]
    )


async def test_garbage_in_large_batches(store: SqlMetadataStore, bucket: str) -> None:
    names = [f"seg{i:05d}" for i in range(1200)]
    await store.put_object(version("huge", *names))
    await store.delete_object(bucket, "huge")
    queued = await store.due_garbage(LATER, 10_000)
    assert {b.blob_id for b in queued} == set(names)
    await store.forget_garbage(queued)
    assert await store.due_garbage(LATER, 10_000) == []


# --- SQLite: several processes on one file ------------------------------------------------------
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"


async def _seed(url: str) -> None:
    first = await open_store(url)
    try:
        await first.create_tenant(Tenant("acme", T0))
        await first.create_bucket(Bucket("photos", "acme", T0))
    finally:
        await first.close()


async def test_two_engines_on_one_sqlite_file(sqlite_url: str) -> None:
    await _seed(sqlite_url)
    stores = [await open_store(sqlite_url) for _ in range(2)]
    try:

        async def worker(s: SqlMetadataStore, n: int) -> None:
            for i in range(30):
                await s.put_object(version(f"w{n}/{i}", etag=str(i)))
                await s.put_object(version(f"shared/{i % 5}"))
                await s.list_objects("photos", f"w{n}/", "", False, 100)
                if i % 3 == 0:
                    await s.delete_object("photos", f"w{n}/{i}")

        await asyncio.gather(*(worker(stores[n % 2], n) for n in range(4)))
        keys = [o.key for o in await stores[0].list_objects("photos", "", "", False, 1000)]
        assert len([k for k in keys if k.startswith("w")]) == 4 * 20
        assert len([k for k in keys if k.startswith("shared/")]) == 5
    finally:
        for s in stores:
            await s.close()


_WORKER = textwrap.dedent(
    """
    import asyncio, sys, uuid, datetime as dt
    from andromede.core.models import BlobRef, Manifest, ObjectVersion, Segment, WriteCondition
    from andromede.core import errors
    from andromede.metadata.sql import open_store

    async def main(url, name):
        store = await open_store(url)
        now = dt.datetime.now(dt.UTC)
        won = 0
        try:
            for i in range(40):
                m = Manifest((Segment(BlobRef("s", uuid.uuid4().hex), 1),))
                await store.put_object(ObjectVersion("photos", f"{name}/{i}", "v", 1, "e", now, m))
                try:
                    await store.put_object(
                        ObjectVersion("photos", f"race/{i}", name, 1, "e", now, m),
                        WriteCondition(if_none_match_any=True),
                    )
                    won += 1
                except errors.PreconditionFailed:
                    pass
        finally:
            await store.close()
        print(won)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_worker_processes_share_one_sqlite_file(sqlite_url: str) -> None:
    await _seed(sqlite_url)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            sqlite_url,
            f"p{n}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(3)
    ]
    wins = 0
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()
        wins += int(out)
    assert wins == 40  # each race key was created by exactly one process
    store = await open_store(sqlite_url)
    try:
        assert len(await store.list_objects("photos", "", "", False, 1000)) == 3 * 40 + 40
    finally:
        await store.close()


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().process_bind_param(dt.datetime(2024, 1, 1), sqlite.dialect())
