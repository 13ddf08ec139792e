"""Object lock use cases: a bucket's lock configuration, a version's retention and legal
hold. The rules are in ``core/object_lock.py``; the store applies a change atomically with
reading the version it changes."""

from __future__ import annotations

from andromede.core import errors
from andromede.core.ids import ObjectKey
from andromede.core.models import Bucket, ObjectVersion, Principal
from andromede.core.object_lock import ObjectLockConfig, Retention, check_retention_change
from andromede.ports import Clock, MetadataStore
from andromede.services.buckets import Buckets
from andromede.services.objects import check_version_id


class Locks:
    """Object lock over the metadata store."""

    def __init__(self, store: MetadataStore, buckets: Buckets, clock: Clock) -> None:
        self._store = store
        self._buckets = buckets
        self._clock = clock

    async def get_config(self, principal: Principal, bucket: str) -> ObjectLockConfig:
        """GetObjectLockConfiguration: ObjectLockConfigurationNotFound when never enabled."""
        found = await self._buckets.get(principal, bucket)
        if found.object_lock is None:
            raise errors.ObjectLockConfigurationNotFound(BucketName=bucket)
        return found.object_lock

    async def put_config(self, principal: Principal, bucket: str, config: ObjectLockConfig) -> None:
        """PutObjectLockConfiguration: enables object lock for good (versioning must be
        enabled), or changes its default retention."""
        found = await self._buckets.get(principal, bucket)
        await self._store.set_bucket_object_lock(found.name, config)

    async def _locked_bucket(self, principal: Principal, bucket: str) -> Bucket:
        found = await self._buckets.get(principal, bucket)
        if found.object_lock is None:
            raise errors.InvalidRequest("Bucket is missing Object Lock Configuration")
        return found

    async def _version(
        self, principal: Principal, bucket: str, key: str, version_id: str | None
    ) -> ObjectVersion:
        if version_id is not None:
            check_version_id(version_id)
            found = await self._store.get_version(bucket, ObjectKey(key), version_id)
        else:
            found = await self._store.get_object(bucket, ObjectKey(key))
        if found is None or found.delete_marker:
            if version_id is not None and found is None:
                raise errors.NoSuchVersion(Key=key, VersionId=version_id)
            raise errors.NoSuchKey(Key=key)
        return found

    async def get_retention(
        self, principal: Principal, bucket: str, key: str, version_id: str | None
    ) -> Retention:
        """GetObjectRetention: NoSuchObjectLockConfiguration when the version has none."""
        await self._locked_bucket(principal, bucket)
        version = await self._version(principal, bucket, key, version_id)
        if version.retention is None:
            raise errors.NoSuchObjectLockConfiguration()
        return version.retention

    async def put_retention(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        version_id: str | None,
        retention: Retention | None,
        *,
        bypass: bool,
    ) -> ObjectVersion:
        """PutObjectRetention: set, extend, or (GOVERNANCE with ``bypass`` only) shorten or
        remove a version's retention; COMPLIANCE can only be extended."""
        await self._locked_bucket(principal, bucket)
        await self._version(principal, bucket, key, version_id)  # NoSuchKey / NoSuchVersion
        now = self._clock.now()

        def change(version: ObjectVersion) -> tuple[Retention | None, bool]:
            check_retention_change(version.retention, retention, now, bypass)
            return retention, version.legal_hold

        done = await self._store.update_version_lock(bucket, ObjectKey(key), version_id, change)
        if done is None:  # deleted meanwhile
            raise errors.NoSuchKey(Key=key)
        return done

    async def get_legal_hold(
        self, principal: Principal, bucket: str, key: str, version_id: str | None
    ) -> bool:
        """GetObjectLegalHold."""
        await self._locked_bucket(principal, bucket)
        return (await self._version(principal, bucket, key, version_id)).legal_hold

    async def put_legal_hold(
        self, principal: Principal, bucket: str, key: str, version_id: str | None, on: bool
    ) -> ObjectVersion:
        """PutObjectLegalHold: ON or OFF (a hold is lifted by whoever may place it)."""
        await self._locked_bucket(principal, bucket)
        await self._version(principal, bucket, key, version_id)

        def change(version: ObjectVersion) -> tuple[Retention | None, bool]:
            return version.retention, on

        done = await self._store.update_version_lock(bucket, ObjectKey(key), version_id, change)
        if done is None:
            raise errors.NoSuchKey(Key=key)
        return done
