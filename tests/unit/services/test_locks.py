"""Object lock through the services (real SQLite, memory sites, the built-in keystore): a
bucket's configuration, what a retention or a legal hold forbids, and COMPLIANCE held against
every side that could destroy a version: its owner, a governance bypass, bucket deletion,
and crypto-shredding of the key that seals it (refused, naming the bucket and the date)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from andromede.core import errors
from andromede.core.keys import EncryptionMode, KmsKey, SseRequest
from andromede.core.models import ObjectVersion, Versioning
from andromede.core.object_lock import (
    DefaultRetention,
    LockMode,
    LockRequest,
    ObjectLockConfig,
    Retention,
)
from andromede.services.body import body_from_bytes
from andromede.services.objects import Integrity, ObjectAttributes
from support.s3objects import b64
from support.services import ALICE, ServiceStack

DAY = dt.timedelta(days=1)


def md5_of(data: bytes) -> Integrity:
    return Integrity(content_md5=b64(hashlib.md5(data, usedforsecurity=False).digest()))


async def locked_bucket(stack: ServiceStack, name: str = "vault") -> str:
    await stack.buckets.create(ALICE, name, None, object_lock=True)
    return name


async def put(
    stack: ServiceStack,
    bucket: str,
    key: str,
    data: bytes = b"record",
    lock: LockRequest | None = None,
    key_id: str | None = None,
) -> ObjectVersion:
    sse = SseRequest(EncryptionMode.SSE_KMS, key_id) if key_id else None
    return await stack.objects.put(
        ALICE, bucket, key, body_from_bytes(data), ObjectAttributes(), md5_of(data),
        sse=sse, lock=lock,
    )  # fmt: skip


async def test_a_bucket_made_with_object_lock(stack: ServiceStack) -> None:
    bucket = await locked_bucket(stack)
    found = await stack.buckets.get(ALICE, bucket)
    assert found.versioning is Versioning.ENABLED
    assert await stack.locks.get_config(ALICE, bucket) == ObjectLockConfig()
    with pytest.raises(errors.InvalidBucketState):
        await stack.buckets.set_versioning(ALICE, bucket, Versioning.SUSPENDED)
    default = ObjectLockConfig(DefaultRetention(LockMode.GOVERNANCE, days=3))
    await stack.locks.put_config(ALICE, bucket, default)
    version = await put(stack, bucket, "k")
    assert version.retention == Retention(LockMode.GOVERNANCE, stack.clock.now() + 3 * DAY)


async def test_object_lock_needs_versioning_on(stack: ServiceStack, bucket: str) -> None:
    with pytest.raises(errors.ObjectLockConfigurationNotFound):
        await stack.locks.get_config(ALICE, bucket)
    with pytest.raises(errors.InvalidBucketState):
        await stack.locks.put_config(ALICE, bucket, ObjectLockConfig())
    await stack.buckets.set_versioning(ALICE, bucket, Versioning.ENABLED)
    await stack.locks.put_config(ALICE, bucket, ObjectLockConfig())  # allowed since 2023
    lock = LockRequest(legal_hold=True)
    with pytest.raises(errors.InvalidRequest, match="Content-MD5"):
        await stack.objects.put(
            ALICE, bucket, "k", body_from_bytes(b"x"), ObjectAttributes(), Integrity(), lock=lock
        )


async def test_compliance_holds_against_its_owner(stack: ServiceStack) -> None:
    bucket = await locked_bucket(stack)
    until = stack.clock.now() + DAY
    version = await put(stack, bucket, "k", lock=LockRequest(Retention(LockMode.COMPLIANCE, until)))
    for bypass in (False, True):
        with pytest.raises(errors.AccessDenied):
            await stack.objects.delete(
                ALICE, bucket, "k", version_id=version.version_id, bypass_governance=bypass
            )
        with pytest.raises(errors.AccessDenied):
            await stack.locks.put_retention(
                ALICE, bucket, "k", version.version_id, None, bypass=bypass
            )
    # A delete marker may be made (nothing is destroyed): the version stays readable.
    assert (await stack.objects.delete(ALICE, bucket, "k")).delete_marker
    got = await stack.objects.get(ALICE, bucket, "k", version_id=version.version_id)
    assert got.version.retention == Retention(LockMode.COMPLIANCE, until)
    with pytest.raises(errors.BucketNotEmpty):
        await stack.buckets.delete(ALICE, bucket)
    # Once the date has passed, it is an ordinary version.
    stack.clock.current = until + dt.timedelta(seconds=1)
    await stack.objects.delete(ALICE, bucket, "k", version_id=version.version_id)


async def test_governance_and_legal_holds(stack: ServiceStack) -> None:
    bucket = await locked_bucket(stack)
    retention = Retention(LockMode.GOVERNANCE, stack.clock.now() + DAY)
    version = await put(stack, bucket, "k", lock=LockRequest(retention))
    with pytest.raises(errors.AccessDenied):
        await stack.objects.delete(ALICE, bucket, "k", version_id=version.version_id)
    await stack.locks.put_legal_hold(ALICE, bucket, "k", version.version_id, True)
    assert await stack.locks.get_legal_hold(ALICE, bucket, "k", version.version_id)
    with pytest.raises(errors.AccessDenied, match="legal hold"):
        await stack.objects.delete(
            ALICE, bucket, "k", version_id=version.version_id, bypass_governance=True
        )
    await stack.locks.put_legal_hold(ALICE, bucket, "k", version.version_id, False)
    await stack.objects.delete(
        ALICE, bucket, "k", version_id=version.version_id, bypass_governance=True
    )
    with pytest.raises(errors.NoSuchVersion):
        await stack.locks.get_retention(ALICE, bucket, "k", version.version_id)


async def test_a_key_sealing_locked_versions_cannot_be_shredded(stack: ServiceStack) -> None:
    bucket = await locked_bucket(stack)
    kek: KmsKey = await stack.keys.create(ALICE, None, "records")
    until = stack.clock.now() + 30 * DAY
    kept = await put(
        stack, bucket, "ledger", lock=LockRequest(Retention(LockMode.COMPLIANCE, until)),
        key_id=kek.key_id,
    )  # fmt: skip
    await put(stack, bucket, "ledger", b"newer, unlocked", key_id=kek.key_id)  # kept: noncurrent
    with pytest.raises(errors.KmsInvalidState, match=f"bucket {bucket}.*{until.year}") as refused:
        await stack.keys.schedule_deletion(ALICE, kek.key_id, 7)
    assert "COMPLIANCE" in refused.value.message
    # A legal hold protects as well; a key sealing nothing locked goes as before.
    other: KmsKey = await stack.keys.create(ALICE, None, "other")
    held = await put(stack, bucket, "held", lock=LockRequest(legal_hold=True), key_id=other.key_id)
    with pytest.raises(errors.KmsInvalidState, match="legal hold"):
        await stack.keys.schedule_deletion(ALICE, other.key_id, 7)
    await stack.locks.put_legal_hold(ALICE, bucket, "held", held.version_id, False)
    await stack.keys.schedule_deletion(ALICE, other.key_id, 7)
    # After the retention date, the key may go, and the version with it.
    stack.clock.current = until + dt.timedelta(seconds=1)
    await stack.keys.schedule_deletion(ALICE, kek.key_id, 7)
    assert kept.retention is not None
