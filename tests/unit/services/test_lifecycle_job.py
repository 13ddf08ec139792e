"""The lifecycle job through the services (real SQLite, memory sites, a fake clock): what each
rule expires and when, what it leaves (object lock, the newest noncurrent versions, versions
not yet due), and the audit events naming the rule."""

from __future__ import annotations

import datetime as dt

from andromede.core.checksums import ChecksumAlgorithm
from andromede.core.lifecycle import (
    Expiration,
    LifecycleConfig,
    LifecycleFilter,
    LifecycleRule,
    NoncurrentExpiration,
)
from andromede.core.models import Versioning
from andromede.core.object_lock import LockMode, LockRequest, Retention
from andromede.services.body import body_from_bytes
from andromede.services.objects import Integrity, ObjectAttributes
from support.services import ALICE, ServiceStack

DAY = dt.timedelta(days=1)


async def rules(stack: ServiceStack, bucket: str, *rule: LifecycleRule) -> None:
    await stack.lifecycle.put(ALICE, bucket, LifecycleConfig(rule))


async def keys_of(stack: ServiceStack, bucket: str) -> list[str]:
    return [o.key for o in await stack.store.list_objects(bucket, "", "", True, 100)]


def events(stack: ServiceStack) -> list[tuple[str, str | None, str]]:
    return [
        (e.operation, e.key, dict(e.details)["rule"]) for e in stack.events if e.face == "lifecycle"
    ]


async def test_current_versions_expire_by_prefix(stack: ServiceStack, bucket: str) -> None:
    await rules(stack, bucket, LifecycleRule("tmp", True, LifecycleFilter("tmp/"),
                                             Expiration(days=1)))  # fmt: skip
    await stack.put(bucket, "tmp/a", b"x")
    await stack.put(bucket, "keep/b", b"x")
    await stack.lifecycle.run_once()
    assert await keys_of(stack, bucket) == ["keep/b", "tmp/a"]  # not due yet
    stack.clock.current += 2 * DAY
    done = await stack.lifecycle.run_once()
    assert done["expired"] == 1
    assert await keys_of(stack, bucket) == ["keep/b"]
    assert events(stack) == [("lifecycle:Expiration", "tmp/a", "tmp")]


async def test_versioned_buckets_get_markers_and_lose_old_versions(
    stack: ServiceStack, bucket: str
) -> None:
    await stack.buckets.set_versioning(ALICE, bucket, Versioning.ENABLED)
    for n in range(3):
        await stack.put(bucket, "k", b"%d" % n)
        stack.clock.current += dt.timedelta(minutes=1)
    await rules(
        stack,
        bucket,
        LifecycleRule(
            "all",
            True,
            LifecycleFilter(),
            Expiration(days=1),
            NoncurrentExpiration(1, newer_versions=1),
        ),
    )
    stack.clock.current += 3 * DAY
    done = await stack.lifecycle.run_once()
    assert done["expired"] == 1  # a delete marker over the current version
    assert done["noncurrent_deleted"] == 1  # the oldest; the newest noncurrent one is kept
    history = await stack.store.list_object_versions(bucket, "", "", True, None, 10)
    assert [(v.delete_marker, v.latest) for v in history] == [
        (True, True),
        (False, False),
        (False, False),
    ]


async def test_a_lone_expired_delete_marker_is_removed(stack: ServiceStack, bucket: str) -> None:
    await stack.buckets.set_versioning(ALICE, bucket, Versioning.ENABLED)
    await stack.put(bucket, "gone", b"x")
    version = (await stack.store.get_object(bucket, "gone")).version_id  # type: ignore[union-attr]
    await stack.objects.delete(ALICE, bucket, "gone")
    await stack.objects.delete(ALICE, bucket, "gone", version_id=version)  # only the marker left
    markers = Expiration(expired_object_delete_marker=True)
    await rules(stack, bucket, LifecycleRule("markers", True, LifecycleFilter(), markers))
    done = await stack.lifecycle.run_once()
    assert done["markers_removed"] == 1
    assert await stack.store.get_object(bucket, "gone") is None


async def test_locked_versions_are_kept(stack: ServiceStack) -> None:
    await stack.buckets.create(ALICE, "vault", None, object_lock=True)
    data = b"record"
    lock = LockRequest(Retention(LockMode.COMPLIANCE, stack.clock.now() + 30 * DAY))
    integrity = Integrity(algorithm=ChecksumAlgorithm.CRC32)
    await stack.objects.put(ALICE, "vault", "k", body_from_bytes(data), ObjectAttributes(),
                            integrity, lock=lock)  # fmt: skip
    await stack.put(bucket="vault", key="k", data=b"newer")
    await rules(stack, "vault", LifecycleRule("old", True, LifecycleFilter(),
                                              noncurrent=NoncurrentExpiration(1)))  # fmt: skip
    stack.clock.current += 3 * DAY
    done = await stack.lifecycle.run_once()
    assert done["locked_kept"] == 1
    assert done["noncurrent_deleted"] == 0
    assert len(await stack.store.list_object_versions("vault", "", "", True, None, 10)) == 2


async def test_incomplete_uploads_are_aborted(stack: ServiceStack, bucket: str) -> None:
    old = await stack.multipart.create(ALICE, bucket, "big", ObjectAttributes(), None, None)
    stack.clock.current += 2 * DAY
    fresh = await stack.multipart.create(ALICE, bucket, "new", ObjectAttributes(), None, None)
    await rules(stack, bucket, LifecycleRule("mpu", True, LifecycleFilter(),
                                             abort_multipart_days=1))  # fmt: skip
    done = await stack.lifecycle.run_once()
    assert done["uploads_aborted"] == 1
    assert await stack.store.get_upload(bucket, "big", old.upload_id) is None
    assert await stack.store.get_upload(bucket, "new", fresh.upload_id) is not None
