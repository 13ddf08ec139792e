"""Contract of ``MetadataStore``: every implementation, the same behaviour.

Tenants, access keys, buckets, objects, listings and conditional writes. Runs on SQLite (a
temporary file) and PostgreSQL (a server started for the session, whose default collation is
ICU ``en-US`` so that byte-order sorting is really tested); the fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm, ChecksumType
from andromede.core.models import (
    AccessKey,
    Bucket,
    Checksum,
    DeleteCondition,
    Manifest,
    ObjectVersion,
    Segment,
    Tenant,
    WriteCondition,
)
from andromede.metadata.sql import SqlMetadataStore
from support.metadata import (
    GRACE,
    T0,
    FakeClock,
    blob,
    garbage,
    part,
    referenced,
    upload,
    version,
)


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


async def test_list_buckets_by_prefix_after_a_name_and_limited(store: SqlMetadataStore) -> None:
    await store.create_tenant(Tenant("acme", T0))
    await store.create_tenant(Tenant("other", T0))
    for name in ("logs-b", "logs-a", "logs.c", "logz", "data", "logs-d"):
        await store.create_bucket(Bucket(name, "acme", T0))
    await store.create_bucket(Bucket("logs-0", "other", T0))

    async def listed(prefix: str = "", after: str = "", limit: int | None = None) -> list[str]:
        found = await store.list_buckets("acme", prefix=prefix, after=after, limit=limit)
        return [b.name for b in found]

    assert await listed(prefix="logs") == ["logs-a", "logs-b", "logs-d", "logs.c"]
    assert await listed(prefix="logs-") == ["logs-a", "logs-b", "logs-d"]
    assert await listed(after="logs-b") == ["logs-d", "logs.c", "logz"]
    assert await listed(after="logs-c") == ["logs-d", "logs.c", "logz"]  # needs not exist
    assert await listed(limit=2) == ["data", "logs-a"]
    assert await listed(prefix="logs-", after="logs-a", limit=1) == ["logs-b"]
    assert await listed(prefix="logs-", after="logs-d", limit=1) == []
    assert await listed(prefix="nothing") == []


async def test_bucket_tags(store: SqlMetadataStore, bucket: str) -> None:
    async def tags_of(name: str) -> dict[str, str]:
        found = await store.get_bucket(name)
        assert found is not None
        return found.tags

    assert await tags_of(bucket) == {}
    tags = {"Hello": "World", "empty": "", "é": "ü 100%"}
    await store.set_bucket_tags(bucket, tags)
    assert await tags_of(bucket) == tags
    assert [b.tags for b in await store.list_buckets("acme")] == [tags]
    await store.set_bucket_tags(bucket, {"only": "one"})
    assert await tags_of(bucket) == {"only": "one"}
    await store.set_bucket_tags(bucket, {})
    assert await tags_of(bucket) == {}
    with pytest.raises(errors.NoSuchBucket):
        await store.set_bucket_tags("ghost", {"a": "1"})
    # Deleting the bucket deletes its tags: the name taken again starts with none.
    await store.set_bucket_tags(bucket, {"a": "1"})
    await store.delete_bucket(bucket)
    await store.create_bucket(Bucket(bucket, "acme", T0))
    assert await store.get_bucket(bucket) == Bucket(bucket, "acme", T0)


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
        assert await referenced(store, blob(name))
    assert not await referenced(store, blob("never"))


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
    only_new = WriteCondition(if_none_match="*")
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


async def test_if_none_match_etag(store: SqlMetadataStore, bucket: str) -> None:
    await store.put_object(version("k", "v1", etag='"abc"'), WriteCondition(if_none_match="abc"))
    for listed in ('"abc"', "abc", '"x", "abc"', "*"):
        with pytest.raises(errors.PreconditionFailed):
            await store.put_object(version("k", "refused"), WriteCondition(if_none_match=listed))
    await store.put_object(version("k", "v2", etag='"def"'), WriteCondition(if_none_match="zzz"))
    current = await store.get_object(bucket, "k")
    assert current is not None
    assert current.etag == '"def"'
    assert await garbage(store) == {"v1"}


async def test_conditional_delete(store: SqlMetadataStore, bucket: str) -> None:
    await store.put_object(version("k", "v1", etag='"abc"'))  # size 10, modified at T0
    for wrong in (
        DeleteCondition(if_match="def"),
        DeleteCondition(last_modified=T0 + dt.timedelta(seconds=1)),
        DeleteCondition(size=11),
        DeleteCondition(if_match="*", size=0),
    ):
        with pytest.raises(errors.PreconditionFailed):
            await store.delete_object(bucket, "k", wrong)
    assert await store.get_object(bucket, "k") is not None
    assert await garbage(store) == set()
    condition = DeleteCondition(if_match="abc", last_modified=T0, size=10)
    assert await store.delete_object(bucket, "k", condition)
    assert await store.get_object(bucket, "k") is None
    assert await garbage(store) == {"v1"}
    assert not await store.delete_object(bucket, "k", DeleteCondition(if_match="def"))


async def test_concurrent_create_only_one_wins(store: SqlMetadataStore, bucket: str) -> None:
    only_new = WriteCondition(if_none_match="*")
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
