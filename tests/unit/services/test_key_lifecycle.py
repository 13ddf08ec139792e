"""Keys: a KEK's life cycle (enabled, disabled, pending deletion, destroyed), what each state
lets the data path do, who may manage whose keys, and rotation, whose re-wrap job moves every
DEK to the new version without touching a byte of data."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
from pathlib import Path

import pytest

from andromede.core import errors
from andromede.core.keys import EncryptionMode, KeyState, KmsKey, SseRequest
from andromede.core.models import ObjectVersion
from andromede.kms.builtin import BuiltinKeystore
from andromede.services.body import body_from_bytes
from andromede.services.keys import BUILTIN, Keys
from andromede.services.multipart import CompletedPart
from andromede.services.objects import Integrity, ObjectAttributes
from support.multipart import PART
from support.services import ALICE, MALLORY, OPERATOR, REGION, ServiceStack, build_services

MIN_DAYS = dt.timedelta(days=7)


def sse_kms(key: KmsKey) -> SseRequest:
    return SseRequest(EncryptionMode.SSE_KMS, key.key_id)


async def put(stack: ServiceStack, bucket: str, key: str, data: bytes, kek: KmsKey) -> None:
    await stack.objects.put(
        ALICE,
        bucket,
        key,
        body_from_bytes(data),
        ObjectAttributes(),
        Integrity(),
        sse=sse_kms(kek),
    )


async def version_of(stack: ServiceStack, bucket: str, key: str) -> ObjectVersion:
    return (await stack.objects.get(ALICE, bucket, key, with_body=False)).version


def kek_versions(version: ObjectVersion) -> list[int]:
    """The KEK version wrapping each segment's DEK."""
    return [s.sealing.kek.version for s in version.manifest.segments if s.sealing and s.sealing.kek]


@pytest.fixture
async def kek(stack: ServiceStack) -> KmsKey:
    return await stack.keys.create(ALICE, None, "ci")


# --- the life cycle ------------------------------------------------------------------------------
async def test_a_keys_life_cycle(stack: ServiceStack, kek: KmsKey) -> None:
    keys = stack.keys
    assert (kek.tenant, kek.state, kek.current.number) == ("acme", KeyState.ENABLED, 1)
    assert kek.description == "ci"
    assert (await keys.describe(ALICE, kek.key_id)).state is KeyState.ENABLED

    rotated = await keys.rotate(ALICE, kek.key_id)
    assert [v.number for v in rotated.versions] == [1, 2]
    assert rotated.rewrap is not None
    assert rotated.rewrap.target_version == 2

    assert (await keys.disable(ALICE, kek.key_id)).state is KeyState.DISABLED
    assert (await keys.enable(ALICE, kek.key_id)).state is KeyState.ENABLED

    pending = await keys.schedule_deletion(ALICE, kek.key_id, 7)
    assert pending.state is KeyState.PENDING_DELETION
    assert pending.deletion_date == stack.clock.now() + MIN_DAYS
    cancelled = await keys.cancel_deletion(ALICE, kek.key_id)  # comes back disabled, as on AWS
    assert (cancelled.state, cancelled.deletion_date) == (KeyState.DISABLED, None)

    await keys.schedule_deletion(ALICE, kek.key_id, 30)
    destroyed = await keys.destroy(ALICE, kek.key_id)
    assert destroyed.state is KeyState.DESTROYED
    for final in (keys.enable, keys.disable, keys.cancel_deletion, keys.rotate):
        with pytest.raises(errors.KmsInvalidState):
            await final(ALICE, kek.key_id)

    events = [e.operation for e in stack.events if dict(e.details)["key_id"] == kek.key_id]
    assert events == [
        "kms:CreateKey",
        "kms:RotateKey",
        "kms:DisableKey",
        "kms:EnableKey",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
        "kms:ScheduleKeyDeletion",
        "kms:DestroyKey",
    ]


@pytest.mark.parametrize("days", [6, 31])
async def test_the_deletion_window_is_7_to_30_days(
    stack: ServiceStack, kek: KmsKey, days: int
) -> None:
    with pytest.raises(errors.InvalidArgument, match=r"7.*30"):
        await stack.keys.schedule_deletion(ALICE, kek.key_id, days)
    assert (await stack.keys.describe(ALICE, kek.key_id)).state is KeyState.ENABLED


async def test_destroy_needs_a_pending_deletion(stack: ServiceStack, kek: KmsKey) -> None:
    with pytest.raises(errors.KmsInvalidState):
        await stack.keys.destroy(ALICE, kek.key_id)
    await stack.keys.disable(ALICE, kek.key_id)
    with pytest.raises(errors.KmsInvalidState):
        await stack.keys.destroy(ALICE, kek.key_id)
    assert (await stack.keys.describe(ALICE, kek.key_id)).state is KeyState.DISABLED


@pytest.mark.parametrize("key_id", ["9c1a5a4e-7f1b-4d3e-9a51-3c2e6c7d8e9f", "not-a-key-id"])
async def test_unknown_keys(stack: ServiceStack, key_id: str) -> None:
    for call in (stack.keys.describe, stack.keys.rotate, stack.keys.destroy):
        with pytest.raises(errors.KmsNotFound):
            await call(ALICE, key_id)


async def test_the_arn_names_the_key_too(stack: ServiceStack, kek: KmsKey) -> None:
    arn = f"arn:aws:kms:us-east-1:acme:key/{kek.key_id}"
    assert (await stack.keys.describe(ALICE, arn)).key_id == kek.key_id


async def test_a_tenant_manages_its_own_keys_only(stack: ServiceStack, kek: KmsKey) -> None:
    theirs = await stack.keys.create(MALLORY, None)
    assert theirs.tenant == "globex"
    for call in (stack.keys.describe, stack.keys.disable, stack.keys.rotate):
        with pytest.raises(errors.AccessDenied):
            await call(ALICE, theirs.key_id)
    with pytest.raises(errors.AccessDenied):
        await stack.keys.schedule_deletion(ALICE, theirs.key_id, 7)
    with pytest.raises(errors.AccessDenied):
        await stack.keys.create(ALICE, "globex")
    with pytest.raises(errors.AccessDenied):
        await stack.keys.list(ALICE, "globex")
    assert {k.key_id for k in await stack.keys.list(ALICE, None)} == {kek.key_id}
    untouched = await stack.keys.describe(MALLORY, theirs.key_id)
    assert (untouched.state, untouched.current.number) == (KeyState.ENABLED, 1)
    everyone = {k.key_id for k in await stack.keys.list(OPERATOR, None)}
    assert everyone == {kek.key_id, theirs.key_id}
    with pytest.raises(errors.NoSuchTenant):
        await stack.keys.create(OPERATOR, "nobody")


# --- what each state allows ----------------------------------------------------------------------
async def test_what_each_state_lets_reads_and_writes_do(
    stack: ServiceStack, bucket: str, kek: KmsKey
) -> None:
    keys = stack.keys
    await put(stack, bucket, "k", b"under the key", kek)
    await stack.put(bucket, "other", b"under the default key")

    async def outcome() -> tuple[type[Exception] | None, type[Exception] | None]:
        results: list[type[Exception] | None] = []
        for attempt in (stack.get(bucket, "k"), put(stack, bucket, "new", b"x", kek)):
            try:
                await attempt
            except errors.KmsError as exc:
                results.append(type(exc))
            else:
                results.append(None)
        return results[0], results[1]

    assert await outcome() == (None, None)
    await keys.disable(ALICE, kek.key_id)
    assert await outcome() == (errors.KmsDisabled, errors.KmsDisabled)
    with pytest.raises(errors.KmsDisabled):
        await keys.rotate(ALICE, kek.key_id)
    await keys.enable(ALICE, kek.key_id)
    assert await outcome() == (None, None)
    await keys.schedule_deletion(ALICE, kek.key_id, 7)
    assert await outcome() == (errors.KmsInvalidState, errors.KmsInvalidState)
    await keys.cancel_deletion(ALICE, kek.key_id)
    assert await outcome() == (errors.KmsDisabled, errors.KmsDisabled)
    await keys.schedule_deletion(ALICE, kek.key_id, 7)
    await keys.destroy(ALICE, kek.key_id)
    assert await outcome() == (errors.KmsInvalidState, errors.KmsInvalidState)
    # Another key's objects are untouched by all this.
    assert await stack.get(bucket, "other") == b"under the default key"


async def test_a_destroyed_keys_material_is_gone_whatever_the_metadata_says(
    tmp_path: Path,
) -> None:
    """Crypto-shredding: with the key manager's material destroyed, forging the key's state
    back to enabled opens nothing (as another gateway that has not yet seen the destruction
    finds)."""
    stack = await build_services(tmp_path, kms_cache_seconds=0)
    try:
        await stack.buckets.create(ALICE, "photos", None)
        kek = await stack.keys.create(ALICE, None)
        await put(stack, "photos", "k", b"shredded", kek)
        await stack.keys.schedule_deletion(ALICE, kek.key_id, 7)
        destroyed = await stack.keys.destroy(ALICE, kek.key_id)
        forged = dataclasses.replace(destroyed, state=KeyState.ENABLED, deletion_date=None)
        assert await stack.store.update_kms_key(forged)
        with pytest.raises(errors.KmsInvalidState, match="cannot be recovered"):
            await stack.get("photos", "k")
    finally:
        await stack.close()


class CountingKeystore(BuiltinKeystore):
    """The real keystore, counting its unwraps."""

    unwraps = 0

    async def unwrap(self, handle: str, wrapped: bytes, aad: bytes) -> bytes:
        self.unwraps += 1
        return await super().unwrap(handle, wrapped, aad)


async def test_a_cached_data_key_works_only_while_its_key_does(tmp_path: Path) -> None:
    """Gateway B unwraps a hot DEK once, however long its key stays enabled; a disable made
    through gateway A stops B within B's key-state bound, cached DEK or not."""
    bound = 0.3
    stack = await build_services(tmp_path)
    try:
        kek = await stack.keys.create(ALICE, None)
        dek = os.urandom(32)
        ref, wrapped = await stack.keys.wrap(kek, dek, "ctx")
        manager = CountingKeystore(tmp_path / "keystore")
        gateway_b = Keys(
            stack.store, {BUILTIN: manager}, stack.clock, region=REGION, cache_seconds=bound
        )
        for _ in range(3):
            assert await gateway_b.unwrap("acme", ref, wrapped, "ctx") == dek
            await asyncio.sleep(bound + 0.05)  # the key's state is reloaded each time
        assert manager.unwraps == 1
        await stack.keys.disable(ALICE, kek.key_id)
        await asyncio.sleep(bound + 0.05)
        with pytest.raises(errors.KmsDisabled):
            await gateway_b.unwrap("acme", ref, wrapped, "ctx")
        await stack.keys.enable(ALICE, kek.key_id)
        await asyncio.sleep(bound + 0.05)
        assert await gateway_b.unwrap("acme", ref, wrapped, "ctx") == dek
        assert manager.unwraps == 2  # the disable dropped the cached DEK
        with pytest.raises(errors.DecryptionFailed):  # another context: no cache hit
            await gateway_b.unwrap("acme", ref, wrapped, "other")
    finally:
        await stack.close()


async def test_keys_are_destroyed_when_their_waiting_period_ends(
    stack: ServiceStack, bucket: str, kek: KmsKey
) -> None:
    await put(stack, bucket, "k", b"x", kek)
    await stack.keys.schedule_deletion(ALICE, kek.key_id, 7)
    stack.clock.advance(MIN_DAYS - dt.timedelta(seconds=1))
    await stack.key_jobs.run_once()
    assert (await stack.keys.describe(ALICE, kek.key_id)).state is KeyState.PENDING_DELETION
    stack.clock.advance(dt.timedelta(seconds=1))
    await stack.key_jobs.run_once()
    assert (await stack.keys.describe(ALICE, kek.key_id)).state is KeyState.DESTROYED
    with pytest.raises(errors.KmsInvalidState):
        await stack.get(bucket, "k")
    assert stack.events[-1].operation == "kms:DestroyKey"
    assert stack.events[-1].access_key_id is None  # the job, not a person


async def test_writes_without_a_key_use_the_tenants_default(
    stack: ServiceStack, bucket: str
) -> None:
    version = await stack.objects.put(
        ALICE, bucket, "k", body_from_bytes(b"x"), ObjectAttributes(), Integrity()
    )
    assert version.encryption is not None
    assert version.encryption.mode is EncryptionMode.SSE_S3
    default = await stack.keys.default_key("acme")
    assert version.encryption.key_id == default.key_id
    assert default.alias == "default"


async def test_a_key_of_another_tenant_or_none_at_all(stack: ServiceStack, bucket: str) -> None:
    theirs = await stack.keys.create(MALLORY, None)
    with pytest.raises(errors.AccessDenied):
        await put(stack, bucket, "k", b"x", theirs)
    with pytest.raises(errors.KmsNotFound):
        await stack.objects.put(
            ALICE,
            bucket,
            "k",
            body_from_bytes(b"x"),
            ObjectAttributes(),
            Integrity(),
            sse=SseRequest(EncryptionMode.SSE_KMS, "9c1a5a4e-7f1b-4d3e-9a51-3c2e6c7d8e9f"),
        )
    assert stack.site().blobs == {}


# --- rotation ------------------------------------------------------------------------------------
async def test_rotation_rewraps_every_dek_and_touches_no_data(
    stack: ServiceStack, bucket: str, kek: KmsKey
) -> None:
    site = stack.site()
    objects = {"single": os.urandom(300_000)}
    await put(stack, bucket, "single", objects["single"], kek)
    mp = await stack.multipart.create(
        ALICE, bucket, "multipart", ObjectAttributes(), None, None, sse=sse_kms(kek)
    )
    data = [os.urandom(PART), os.urandom(1000)]
    parts = [
        (
            await stack.multipart.upload_part(
                ALICE, bucket, "multipart", mp.upload_id, n, body_from_bytes(d), Integrity()
            )
        ).part
        for n, d in enumerate(data, 1)
    ]
    await stack.multipart.complete(
        ALICE,
        bucket,
        "multipart",
        mp.upload_id,
        [CompletedPart(p.part_number, p.etag) for p in parts],
        None,
        None,
    )
    objects["multipart"] = b"".join(data)
    pending = await stack.multipart.create(
        ALICE, bucket, "pending", ObjectAttributes(), None, None, sse=sse_kms(kek)
    )
    pending_part = (
        await stack.multipart.upload_part(
            ALICE, bucket, "pending", pending.upload_id, 1, body_from_bytes(b"later"), Integrity()
        )
    ).part
    blobs_before = {blob_id: site.data(blob_id) for blob_id in site.blobs}
    wrapped_before = {
        s.blob.blob_id: s.sealing.wrapped_dek
        for key in objects
        for s in (await version_of(stack, bucket, key)).manifest.segments
        if s.sealing
    }
    assert [kek_versions(await version_of(stack, bucket, k)) for k in objects] == [[1], [1, 1]]

    await stack.keys.rotate(ALICE, kek.key_id)
    await stack.key_jobs.run_once()
    first_pass = (await stack.keys.describe(ALICE, kek.key_id)).rewrap
    assert first_pass is not None
    # Other gateways may wrap under version 1 for as long as they cache the key: not done yet.
    assert first_pass.done is False
    stack.clock.advance(dt.timedelta(seconds=10))
    await stack.key_jobs.run_once()

    progress = (await stack.keys.describe(ALICE, kek.key_id)).rewrap
    assert progress is not None
    assert progress.done is True
    assert progress.rewrapped == 4  # one single PUT, two parts completed, one part pending
    assert [kek_versions(await version_of(stack, bucket, k)) for k in objects] == [[2], [2, 2]]
    wrapped_after = {
        s.blob.blob_id: s.sealing.wrapped_dek
        for key in objects
        for s in (await version_of(stack, bucket, key)).manifest.segments
        if s.sealing
    }
    assert wrapped_after.keys() == wrapped_before.keys()
    assert all(wrapped_after[b] != wrapped_before[b] for b in wrapped_before)
    assert {blob_id: site.data(blob_id) for blob_id in site.blobs} == blobs_before
    for key, expected in objects.items():
        assert await stack.get(bucket, key) == expected
    await stack.multipart.complete(
        ALICE,
        bucket,
        "pending",
        pending.upload_id,
        [CompletedPart(1, pending_part.etag)],
        None,
        None,
    )
    assert kek_versions(await version_of(stack, bucket, "pending")) == [2]
    assert await stack.get(bucket, "pending") == b"later"
    await put(stack, bucket, "new", b"after rotation", kek)
    assert kek_versions(await version_of(stack, bucket, "new")) == [2]
    assert "kms:RewrapDone" in [e.operation for e in stack.events]
