"""Contract of ``MetadataStore`` for object versions, on SQLite and PostgreSQL: a new version
keeps the one it replaces unless both are the null version, delete markers, deleting a
version for good (the newest noncurrent one becomes current), listing every version in
order and in pages, and the blobs of every version kept live until that version goes."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from andromede.core import errors
from andromede.core.keys import EncryptionMode, KekRef, ObjectEncryption, Sealing
from andromede.core.models import (
    DeleteCondition,
    Manifest,
    ObjectVersion,
    Segment,
    Versioning,
    WriteCondition,
)
from andromede.core.object_lock import LockMode, Retention
from andromede.core.placement import Layout
from andromede.metadata.sql import SqlMetadataStore
from support.metadata import FakeClock, blob, garbage, referenced, version


def kept(key: str, *blobs: str, etag: str = "e") -> ObjectVersion:
    """A version written while versioning is enabled (not the null version)."""
    return replace(version(key, *blobs, etag=etag), null_version=False)


def marker(key: str, null: bool = False) -> ObjectVersion:
    return replace(
        version(key), size=0, etag="", manifest=Manifest(()), delete_marker=True, null_version=null
    )


async def listing(store: SqlMetadataStore, bucket: str) -> list[tuple[str, str, bool, bool]]:
    rows = await store.list_object_versions(bucket, "", "", True, None, 1000)
    return [(v.object.key, v.version_id, v.latest, v.delete_marker) for v in rows]


async def test_enabled_keeps_every_version_newest_first(
    store: SqlMetadataStore, bucket: str, clock: FakeClock
) -> None:
    null = version("k", "n0")  # written before versioning was enabled
    await store.put_object(null)
    v1, v2 = kept("k", "b1"), kept("k", "b2", etag="e2")
    for v in (v1, v2):
        clock.current += dt.timedelta(seconds=1)
        await store.put_object(v)
    assert await store.get_object(bucket, "k") == v2
    assert await store.get_version(bucket, "k", v1.version_id) == v1
    assert await store.get_version(bucket, "k", "null") == null
    assert await store.get_version(bucket, "k", null.version_id) is None  # clients say "null"
    assert await listing(store, bucket) == [
        ("k", v2.version_id, True, False),
        ("k", v1.version_id, False, False),
        ("k", "null", False, False),
    ]
    assert await garbage(store) == set()
    for name in ("n0", "b1", "b2"):
        assert await referenced(store, blob(name))


async def test_a_null_version_replaces_the_null_version_only(
    store: SqlMetadataStore, bucket: str
) -> None:
    """Suspended: a write makes the null version, which replaces an older null version
    (current or not) and keeps the versions that have ids."""
    await store.put_object(version("k", "n0"))
    v1 = kept("k", "b1")
    await store.put_object(v1)
    await store.put_object(version("k", "n1"))  # suspended
    assert await garbage(store) == {"n0"}  # the noncurrent null version went
    assert [r[1] for r in await listing(store, bucket)] == ["null", v1.version_id]
    await store.put_object(version("k", "n2"))
    assert await garbage(store) == {"n0", "n1"}
    assert (await store.get_object(bucket, "k")).manifest.blobs() == [blob("n2")]  # type: ignore[union-attr]
    assert await store.get_version(bucket, "k", v1.version_id) == v1


async def test_delete_markers_hide_the_key_from_listings(
    store: SqlMetadataStore, bucket: str
) -> None:
    v1 = kept("k", "b1")
    await store.put_object(v1)
    m = marker("k")
    await store.put_object(m)
    current = await store.get_object(bucket, "k")
    assert current is not None
    assert current.delete_marker
    assert await store.list_objects(bucket, "", "", True, 10) == []
    assert not await store.bucket_is_empty(bucket)  # versions remain
    with pytest.raises(errors.BucketNotEmpty):
        await store.delete_bucket(bucket)
    assert await listing(store, bucket) == [
        ("k", m.version_id, True, True),
        ("k", v1.version_id, False, False),
    ]
    # A delete marker is no object for conditions: If-None-Match * succeeds over it...
    v2 = kept("k", "b2")
    await store.put_object(v2, WriteCondition(if_none_match="*"))
    # ...and a conditional delete leaves the version it would hide untouched if it fails.
    with pytest.raises(errors.PreconditionFailed):
        await store.put_object(marker("k"), DeleteCondition(if_match='"other"'))
    assert await store.get_object(bucket, "k") == v2


async def test_deleting_versions_for_good_promotes_the_newest(
    store: SqlMetadataStore, bucket: str
) -> None:
    v1, v2 = kept("k", "b1"), kept("k", "b2")
    await store.put_object(v1)
    await store.put_object(v2)
    m = marker("k")
    await store.put_object(m)
    gone = await store.delete_version(bucket, "k", m.version_id)
    assert gone is not None
    assert gone.delete_marker
    assert await store.get_object(bucket, "k") == v2  # the marker was current: v2 is again
    assert await store.delete_version(bucket, "k", v1.version_id) == v1
    assert await garbage(store) == {"b1"}
    assert await store.delete_version(bucket, "k", v1.version_id) is None
    assert await store.delete_version(bucket, "k", "null") is None
    assert await store.delete_version(bucket, "k", v2.version_id) == v2
    assert await store.get_object(bucket, "k") is None
    assert await garbage(store) == {"b1", "b2"}
    assert await store.bucket_is_empty(bucket)


async def test_deleting_a_version_checks_its_condition(
    store: SqlMetadataStore, bucket: str
) -> None:
    v1 = kept("k", "b1", etag='"one"')
    await store.put_object(v1)
    await store.put_object(kept("k", "b2"))
    with pytest.raises(errors.PreconditionFailed):
        await store.delete_version(bucket, "k", v1.version_id, DeleteCondition(if_match='"two"'))
    assert await store.get_version(bucket, "k", v1.version_id) == v1
    await store.delete_version(bucket, "k", v1.version_id, DeleteCondition(if_match='"one"'))
    assert await store.get_version(bucket, "k", v1.version_id) is None


async def test_delete_object_of_an_unversioned_key_promotes_too(
    store: SqlMetadataStore, bucket: str
) -> None:
    """``delete_object`` removes the current version; a noncurrent one left by versioning
    enabled meanwhile becomes current rather than being orphaned."""
    v1 = kept("k", "b1")
    await store.put_object(v1)
    await store.put_object(version("k", "n1"))
    assert await store.delete_object(bucket, "k") is True
    assert await store.get_object(bucket, "k") == v1


async def test_tags_of_one_version(store: SqlMetadataStore, bucket: str) -> None:
    v1 = kept("k", "b1")
    await store.put_object(v1)
    await store.put_object(kept("k", "b2"))
    tagged = await store.update_object_tags(bucket, "k", {"a": "1"}, v1.version_id)
    assert tagged is not None
    assert tagged.tags == {"a": "1"}
    assert (await store.get_object(bucket, "k")).tags == {}  # type: ignore[union-attr]
    await store.put_object(marker("k"))
    assert await store.update_object_tags(bucket, "k", {"b": "2"}) is None  # a marker


async def test_listing_pages_resume_inside_a_key(store: SqlMetadataStore, bucket: str) -> None:
    made: dict[str, list[str]] = {}
    for key in ("a", "b/1", "b/2", "c"):
        for _ in range(3):
            v = kept(key)
            await store.put_object(v)
            made.setdefault(key, []).insert(0, v.version_id)
    expected = [(k, vid) for k in ("a", "b/1", "b/2", "c") for vid in made[k]]
    seen: list[tuple[str, str]] = []
    start, inclusive, before = "", True, None
    while True:
        page = await store.list_object_versions(bucket, "", start, inclusive, before, 2)
        if not page:
            break
        seen += [(v.object.key, v.version_id) for v in page]
        start, inclusive, before = page[-1].object.key, False, page[-1].seq
    assert seen == expected
    prefixed = await store.list_object_versions(bucket, "b/", "", True, None, 100)
    assert [v.object.key for v in prefixed] == ["b/1"] * 3 + ["b/2"] * 3
    seq = await store.version_seq(bucket, "a", made["a"][1])
    after = await store.list_object_versions(bucket, "", "a", False, seq, 2)
    assert [(v.object.key, v.version_id) for v in after] == [
        ("a", made["a"][2]),
        ("b/1", made["b/1"][0]),
    ]
    assert await store.version_seq(bucket, "a", "no-such-version") is None


async def test_noncurrent_blobs_move_with_a_drain(store: SqlMetadataStore, bucket: str) -> None:
    v1 = kept("k", "b1")
    await store.put_object(v1)
    await store.put_object(kept("k", "b2"))
    moved = replace(blob("b1"), layout=Layout.single("site-b"))
    assert await store.relocate_blob(blob("b1"), moved) is True
    found = await store.get_version(bucket, "k", v1.version_id)
    assert found is not None
    assert found.manifest.blobs() == [moved]
    assert await referenced(store, moved)


async def test_versioning_state_is_kept(store: SqlMetadataStore, bucket: str) -> None:
    assert (await store.get_bucket(bucket)).versioning is None  # type: ignore[union-attr]
    await store.set_bucket_versioning(bucket, Versioning.ENABLED)
    assert (await store.get_bucket(bucket)).versioning is Versioning.ENABLED  # type: ignore[union-attr]
    await store.set_bucket_versioning(bucket, Versioning.SUSPENDED)
    assert (await store.get_bucket(bucket)).versioning is Versioning.SUSPENDED  # type: ignore[union-attr]
    with pytest.raises(errors.NoSuchBucket):
        await store.set_bucket_versioning("nope", Versioning.ENABLED)


async def test_locks_follow_versions_and_guard_deletes(
    store: SqlMetadataStore, bucket: str, clock: FakeClock
) -> None:
    until = clock.current + dt.timedelta(days=1)
    locked = replace(kept("k", "b1"), retention=Retention(LockMode.COMPLIANCE, until))
    await store.put_object(locked)
    await store.put_object(kept("k", "b2"))  # the locked one is noncurrent now
    assert await store.get_version(bucket, "k", locked.version_id) == locked

    def refuse(version: ObjectVersion) -> None:
        raise errors.AccessDenied(version.version_id)

    with pytest.raises(errors.AccessDenied):
        await store.delete_version(bucket, "k", locked.version_id, guard=refuse)
    assert await store.get_version(bucket, "k", locked.version_id) == locked

    held = await store.update_version_lock(
        bucket, "k", locked.version_id, lambda v: (v.retention, True)
    )
    assert held is not None
    assert held.legal_hold
    assert (await store.get_version(bucket, "k", locked.version_id)) == held
    assert await store.update_version_lock(bucket, "k", "nope", lambda v: (None, False)) is None


async def test_locked_versions_under_a_key(
    store: SqlMetadataStore, bucket: str, clock: FakeClock
) -> None:
    sealed = sealed_by("kek-1")
    until = clock.current + dt.timedelta(days=1)
    await store.put_object(
        replace(kept("k"), manifest=sealed, retention=Retention(LockMode.COMPLIANCE, until))
    )
    await store.put_object(replace(kept("k"), manifest=sealed_by("kek-1", "b9")))
    found = await store.locked_under_key("acme", "kek-1", clock.current)
    assert found == (bucket, "k", until)
    assert await store.locked_under_key("acme", "kek-2", clock.current) is None
    assert await store.locked_under_key("other", "kek-1", clock.current) is None
    assert await store.locked_under_key("acme", "kek-1", until) is None  # expired by then


def sealed_by(kek_id: str, name: str = "b0") -> Manifest:
    sealing = Sealing(1, 65536, "ctx", b"wrapped", KekRef(kek_id, 1))
    return Manifest(
        (Segment(blob(name), 10, sealing=sealing),),
        encryption=ObjectEncryption(EncryptionMode.SSE_KMS, kek_id),
    )
