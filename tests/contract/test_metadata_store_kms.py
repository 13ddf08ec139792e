"""Contract of ``MetadataStore``: encryption at rest, on SQLite and PostgreSQL.

Bucket defaults, the sealing of uploads and parts, key-encryption keys, and the scans and
compare-and-swap writes that re-wrap data keys after a rotation (fixtures in ``conftest.py``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace

import pytest

from andromede.core import errors
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
    Bucket,
    Manifest,
    MultipartUpload,
    ObjectVersion,
    Part,
    Segment,
    Tenant,
)
from andromede.metadata.sql import SqlMetadataStore
from support.metadata import T0, blob, garbage, referenced, upload

T1 = T0 + dt.timedelta(hours=1)
T2 = T0 + dt.timedelta(days=2)
SSE_S3 = ObjectEncryption(EncryptionMode.SSE_S3, key_id="k-default")


def sealing(context: str, kek_version: int = 1, wrapped: bytes = b"\x00wrapped\xff") -> Sealing:
    return Sealing(1, 65536, context, wrapped, KekRef("k-default", kek_version))


def sealed_version(key: str, *blob_ids: str, bucket: str = "photos") -> ObjectVersion:
    """A version whose manifest is sealed under version 1 of ``k-default``."""
    version_id = uuid.uuid4().hex
    names = blob_ids or (f"blob-{uuid.uuid4().hex}",)
    segments = tuple(
        Segment(blob(name), 10, sealing=sealing(version_id), etag=f"e{i}")
        for i, name in enumerate(names)
    )
    manifest = Manifest(segments, encryption=SSE_S3)
    return ObjectVersion(bucket, key, version_id, manifest.size, "etag", T0, manifest)


def rewrapped(manifest: Manifest, kek_version: int) -> Manifest:
    """``manifest`` with every data key wrapped again under another KEK version."""
    kek = KekRef("k-default", kek_version)
    segments = []
    for segment in manifest.segments:
        assert segment.sealing is not None
        new_sealing = replace(segment.sealing, wrapped_dek=b"rewrapped", kek=kek)
        segments.append(replace(segment, sealing=new_sealing))
    return replace(manifest, segments=tuple(segments))


def kms_key(
    key_id: str,
    tenant: str = "acme",
    *,
    alias: str | None = None,
    created: dt.datetime = T0,
) -> KmsKey:
    return KmsKey(
        key_id=key_id,
        tenant=tenant,
        manager="keystore",
        state=KeyState.ENABLED,
        created=created,
        versions=(KeyVersion(1, f"handle-{key_id}-1", created),),
        alias=alias,
    )


@pytest.fixture
async def tenants(store: SqlMetadataStore) -> None:
    await store.create_tenant(Tenant("acme", T0))
    await store.create_tenant(Tenant("zeta", T0))


# --- key-encryption keys ------------------------------------------------------------------------
@pytest.mark.usefixtures("tenants")
async def test_kms_key_round_trips_exactly(store: SqlMetadataStore) -> None:
    key = KmsKey(
        key_id="0b0e1f5c-7d7c-4f0e-9a51-3c1d2e4f5a6b",
        tenant="acme",
        manager="pkcs11",
        state=KeyState.PENDING_DELETION,
        created=T0,
        versions=(
            KeyVersion(1, "slot-0/label-1", T0),
            KeyVersion(2, "slot-0/label-2", T1),
        ),
        description="invoices, 2024",
        alias="default",
        deletion_date=T2,
        rewrap=RewrapProgress(2, scanned=41, rewrapped=40, done=True, started=T1, finished=T2),
    )
    await store.create_kms_key(key)
    assert await store.get_kms_key(key.key_id) == key
    assert await store.get_kms_key_by_alias("acme", "default") == key
    assert await store.get_kms_key_by_alias("zeta", "default") is None
    assert await store.get_kms_key_by_alias("acme", "other") is None
    assert await store.get_kms_key("missing") is None
    assert await store.list_kms_keys() == [key]


@pytest.mark.usefixtures("tenants")
async def test_kms_key_timestamps_come_back_utc_to_the_millisecond(
    store: SqlMetadataStore,
) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    precise = dt.datetime(2024, 5, 6, 9, 8, 9, 123456, tzinfo=paris)
    key = replace(
        kms_key("k"),
        created=precise,
        versions=(KeyVersion(1, "h", precise),),
        rewrap=RewrapProgress(1, started=precise),
    )
    await store.create_kms_key(key)
    got = await store.get_kms_key("k")
    assert got is not None
    utc_ms = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
    assert got.rewrap is not None
    assert got.rewrap.started is not None
    for when in (got.created, got.current.created, got.rewrap.started):
        assert when == utc_ms
        assert when.utcoffset() == dt.timedelta(0)


@pytest.mark.usefixtures("tenants")
async def test_list_kms_keys_by_tenant_created_and_id(store: SqlMetadataStore) -> None:
    keys = [
        kms_key("k-b", "zeta", created=T0),
        kms_key("k-c", "acme", created=T1),
        kms_key("k-z", "acme", created=T0),
        kms_key("k-a", "acme", created=T0),
    ]
    for key in keys:
        await store.create_kms_key(key)
    listed = [(k.tenant, k.key_id) for k in await store.list_kms_keys()]
    assert listed == [("acme", "k-a"), ("acme", "k-z"), ("acme", "k-c"), ("zeta", "k-b")]
    assert [k.key_id for k in await store.list_kms_keys("acme")] == ["k-a", "k-z", "k-c"]
    assert await store.list_kms_keys("ghost") == []


@pytest.mark.usefixtures("tenants")
async def test_kms_key_aliases_are_unique_per_tenant(store: SqlMetadataStore) -> None:
    await store.create_kms_key(kms_key("k1", alias="default"))
    with pytest.raises(errors.KmsAliasExists):
        await store.create_kms_key(kms_key("k2", alias="default"))
    assert await store.get_kms_key("k2") is None
    # Another tenant may use the alias; any number of keys may have none.
    await store.create_kms_key(kms_key("k3", "zeta", alias="default"))
    await store.create_kms_key(kms_key("k4"))
    await store.create_kms_key(kms_key("k5"))
    assert [k.key_id for k in await store.list_kms_keys("acme")] == ["k1", "k4", "k5"]


@pytest.mark.usefixtures("tenants")
async def test_create_kms_key_refusals(store: SqlMetadataStore) -> None:
    with pytest.raises(errors.NoSuchTenant):
        await store.create_kms_key(kms_key("k1", "ghost"))
    await store.create_kms_key(kms_key("k1"))
    with pytest.raises(errors.InvalidArgument):
        await store.create_kms_key(kms_key("k1", alias="fresh"))
    assert await store.get_kms_key_by_alias("acme", "fresh") is None
    assert [k.key_id for k in await store.list_kms_keys()] == ["k1"]


@pytest.mark.usefixtures("tenants")
async def test_update_kms_key(store: SqlMetadataStore) -> None:
    key = kms_key("k1", alias="default")
    await store.create_kms_key(key)
    await store.create_kms_key(kms_key("k2", alias="taken"))
    rotated = replace(
        key,
        state=KeyState.DISABLED,
        versions=(*key.versions, KeyVersion(2, "handle-2", T1)),
        description="rotated",
        alias="renamed",
        deletion_date=T2,
        rewrap=RewrapProgress(2, scanned=3, started=T1),
    )
    await store.update_kms_key(rotated)
    assert await store.get_kms_key("k1") == rotated
    assert await store.get_kms_key_by_alias("acme", "renamed") == rotated
    assert await store.get_kms_key_by_alias("acme", "default") is None
    # Back to no alias, no deletion date, no re-wrap: the NULLs are stored too.
    cleared = replace(rotated, alias=None, deletion_date=None, rewrap=None)
    await store.update_kms_key(cleared)
    assert await store.get_kms_key("k1") == cleared

    with pytest.raises(errors.KmsAliasExists):
        await store.update_kms_key(replace(cleared, alias="taken"))
    with pytest.raises(errors.KmsNotFound):
        await store.update_kms_key(kms_key("ghost"))
    with pytest.raises(ValueError, match="belongs to"):
        await store.update_kms_key(replace(cleared, tenant="zeta"))
    assert await store.get_kms_key("k1") == cleared


# --- bucket defaults ----------------------------------------------------------------------------
async def test_bucket_encryption(store: SqlMetadataStore, bucket: str) -> None:
    config = BucketEncryption(EncryptionMode.SSE_KMS, "k-1", bucket_key_enabled=True)
    assert (await store.get_bucket(bucket)) == Bucket(bucket, "acme", T0, "fr-par")
    await store.set_bucket_encryption(bucket, config)
    assert await store.get_bucket(bucket) == Bucket(bucket, "acme", T0, "fr-par", config)
    assert [b.encryption for b in await store.list_buckets("acme")] == [config]
    await store.set_bucket_encryption(bucket, None)
    got = await store.get_bucket(bucket)
    assert got is not None
    assert got.encryption is None
    with pytest.raises(errors.NoSuchBucket):
        await store.set_bucket_encryption("nope", config)
    # create_bucket stores a default given from the start.
    at_birth = Bucket("sealed", "acme", T0, encryption=BucketEncryption(EncryptionMode.SSE_S3))
    await store.create_bucket(at_birth)
    assert await store.get_bucket("sealed") == at_birth


# --- uploads and parts --------------------------------------------------------------------------
async def test_upload_encryption_and_part_sealing(store: SqlMetadataStore, bucket: str) -> None:
    sse_c = ObjectEncryption(
        EncryptionMode.SSE_C, customer_key_hmac=b"\x01" * 32, customer_key_salt=b"\x02" * 16
    )
    created = replace(upload("u1"), encryption=sse_c)
    await store.create_upload(created)
    await store.create_upload(upload("u2"))
    assert await store.get_upload(bucket, "big", "u1") == created
    listed = await store.list_uploads(bucket, "", "", "", 10)
    assert [(u.upload_id, u.encryption) for u in listed] == [("u1", sse_c), ("u2", None)]

    sealed = Part("u1", 1, 5, "etag-1", T0, blob("p1"), sealing=replace(sealing("u1/1"), kek=None))
    await store.put_part(sealed)
    await store.put_part(Part("u2", 1, 5, "etag-1", T0, blob("q1")))
    assert await store.list_parts("u1") == [sealed]
    assert [p.sealing for p in await store.list_parts("u2")] == [None]
    # A part sent again replaces the sealing with the blob.
    again = replace(sealed, blob=blob("p1b"), sealing=replace(sealing("u1/1"), kek=None))
    await store.put_part(again)
    assert await store.list_parts("u1") == [again]


# --- re-wrapping --------------------------------------------------------------------------------
async def test_list_versions_pages_in_byte_order(store: SqlMetadataStore, bucket: str) -> None:
    await store.create_bucket(Bucket("other", "acme", T0))
    keys = ["ab", "a-b", "B", "a", "é", "a/b"]
    versions = {key: sealed_version(key) for key in keys}
    for v in versions.values():
        await store.put_object(v)
    await store.put_object(sealed_version("a0", bucket="other"))

    seen: list[ObjectVersion] = []
    after: str | None = ""
    while after is not None:
        page, after = await store.list_versions(bucket, after, 2)
        assert len(page) <= 2
        seen.extend(page)
    # byte order: 'B' (0x42) < 'a' < 'a-b' (0x2d) < 'a/b' (0x2f) < 'ab' < 'é' (0xc3 0xa9)
    assert [v.key for v in seen] == ["B", "a", "a-b", "a/b", "ab", "é"]
    assert seen == [versions[v.key] for v in seen]  # whole versions, manifests included
    assert await store.list_versions(bucket, "a", 0) == ([], None)
    assert await store.list_versions("nope", "", 10) == ([], None)


async def test_list_versions_gives_every_version_of_each_key(
    store: SqlMetadataStore, bucket: str
) -> None:
    """Re-wrapping and residency reports walk noncurrent versions too (delete markers,
    which hold no data, are left out), each key's newest first."""
    for n in range(3):
        await store.put_object(replace(sealed_version("k", f"k{n}"), null_version=False))
    marker = replace(sealed_version("m", "m0"), null_version=False)
    await store.put_object(marker)
    await store.put_object(replace(marker, version_id="marker", manifest=Manifest(()),
                                   delete_marker=True))  # fmt: skip
    page, after = await store.list_versions(bucket, "", 1)
    assert [v.manifest.blobs()[0].blob_id for v in page] == ["k2", "k1", "k0"]
    assert after == "k"
    page, after = await store.list_versions(bucket, after, 1)
    assert [(v.key, v.delete_marker) for v in page] == [("m", False)]
    assert after == "m"
    assert await store.list_versions(bucket, after, 1) == ([], None)


async def test_replace_manifest(store: SqlMetadataStore, bucket: str) -> None:
    current = sealed_version("k", "b1", "b2")
    await store.put_object(current)
    new = rewrapped(current.manifest, 2)

    assert await store.replace_manifest(bucket, "k", current.version_id, new) is True
    got = await store.get_object(bucket, "k")
    assert got == replace(current, manifest=new)
    assert [v.manifest for v in (await store.list_versions(bucket, "", 10))[0]] == [new]
    # The blobs are still indexed as live: deleting the object queues exactly them.
    assert [await referenced(store, blob(n)) for n in ("b1", "b2")] == [True, True]
    assert await garbage(store) == set()
    assert await store.delete_object(bucket, "k") is True
    assert await garbage(store) == {"b1", "b2"}


async def test_replace_manifest_loses_to_a_newer_version(
    store: SqlMetadataStore, bucket: str
) -> None:
    old = sealed_version("k", "b1")
    await store.put_object(old)
    newer = sealed_version("k", "b2")
    await store.put_object(newer)
    assert await store.replace_manifest(bucket, "k", old.version_id, old.manifest) is False
    assert await store.get_object(bucket, "k") == newer
    assert await store.replace_manifest(bucket, "gone", old.version_id, old.manifest) is False
    assert await store.replace_manifest("nope", "k", newer.version_id, newer.manifest) is False


async def test_replace_manifest_reaches_noncurrent_versions(
    store: SqlMetadataStore, bucket: str
) -> None:
    old = replace(sealed_version("k", "b1"), null_version=False)
    await store.put_object(old)
    await store.put_object(replace(sealed_version("k", "b2"), null_version=False))
    new = rewrapped(old.manifest, 2)
    assert await store.replace_manifest(bucket, "k", old.version_id, new) is True
    assert await store.get_version(bucket, "k", old.version_id) == replace(old, manifest=new)


async def test_replace_manifest_refuses_other_data(store: SqlMetadataStore, bucket: str) -> None:
    current = sealed_version("k", "b1", "b2")
    await store.put_object(current)
    segments = current.manifest.segments
    other_blob = replace(
        current.manifest, segments=(segments[0], replace(segments[1], blob=blob("x")))
    )
    reordered = replace(current.manifest, segments=(segments[1], segments[0]))
    resized = replace(current.manifest, segments=(segments[0], replace(segments[1], size=11)))
    for wrong in (other_blob, reordered, resized):
        with pytest.raises(ValueError, match="replacement manifest"):
            await store.replace_manifest(bucket, "k", current.version_id, wrong)
    assert await store.get_object(bucket, "k") == current
    assert not await referenced(store, blob("x"))


async def test_list_parts_after_pages_across_uploads(store: SqlMetadataStore, bucket: str) -> None:
    del bucket
    layout = {"u-b": [1, 2, 10], "U-a": [3], "u-a": [2]}
    for upload_id, numbers in layout.items():
        await store.create_upload(upload(upload_id))
        for n in numbers:
            await store.put_part(
                Part(upload_id, n, 5, f"e{n}", T0, blob(f"{upload_id}-{n}"), sealing=sealing("c"))
            )
    seen: list[Part] = []
    after = ("", 0)
    while page := await store.list_parts_after(after, 2):
        assert len(page) <= 2
        seen.extend(page)
        after = (page[-1].upload_id, page[-1].part_number)
    # upload ids in byte order ('U' < 'u'), part numbers as numbers (2 < 10)
    expected = [("U-a", 3), ("u-a", 2), ("u-b", 1), ("u-b", 2), ("u-b", 10)]
    assert [(p.upload_id, p.part_number) for p in seen] == expected
    assert all(p.sealing == sealing("c") for p in seen)
    assert [p.part_number for p in await store.list_parts_after(("u-b", 1), 10)] == [2, 10]
    assert await store.list_parts_after(("u-b", 10), 10) == []
    assert await store.list_parts_after(("", 0), 0) == []
    await store.abort_upload("u-b")
    assert [p.upload_id for p in await store.list_parts_after(("", 0), 10)] == ["U-a", "u-a"]


async def test_replace_part_sealing(store: SqlMetadataStore, bucket: str) -> None:
    del bucket
    await store.create_upload(upload("u1"))
    first = Part("u1", 1, 5, "e1", T0, blob("p1"), sealing=sealing("u1/1"))
    await store.put_part(first)
    rewrapped_sealing = sealing("u1/1", kek_version=2, wrapped=b"rewrapped")

    assert await store.replace_part_sealing("u1", 1, "p1", rewrapped_sealing) is True
    assert await store.list_parts("u1") == [replace(first, sealing=rewrapped_sealing)]
    assert await store.replace_part_sealing("u1", 1, "other", sealing("x")) is False
    assert await store.replace_part_sealing("u1", 2, "p1", sealing("x")) is False
    assert await store.replace_part_sealing("ghost", 1, "p1", sealing("x")) is False
    # The part was sent again meanwhile: a re-wrap of the old blob's key must lose.
    second = replace(first, blob=blob("p1b"), sealing=sealing("u1/1"))
    await store.put_part(second)
    assert await store.replace_part_sealing("u1", 1, "p1", rewrapped_sealing) is False
    assert await store.list_parts("u1") == [second]


async def test_parts_without_sealing_read_as_plaintext(
    store: SqlMetadataStore, bucket: str
) -> None:
    # Rows from before encryption at rest read back as plaintext (None), not as an error.
    await store.create_upload(MultipartUpload("u1", bucket, "k", T0, "acme"))
    await store.put_part(Part("u1", 1, 5, "e1", T0, blob("p1")))
    assert [p.sealing for p in await store.list_parts_after(("", 0), 10)] == [None]
    assert await store.replace_part_sealing("u1", 1, "p1", sealing("u1/1")) is True
    assert [p.sealing for p in await store.list_parts("u1")] == [sealing("u1/1")]
