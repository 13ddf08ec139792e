"""Bucket use cases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from andromede.auth.policy import authorize_bucket
from andromede.core import errors
from andromede.core.ids import BucketName
from andromede.core.models import Bucket, BucketPage, Principal, Versioning
from andromede.core.object_lock import ObjectLockConfig
from andromede.core.tags import validate_bucket_tags
from andromede.ports import Clock, MetadataStore

# The one region where re-creating a bucket you own succeeds and changes nothing: AWS kept that
# legacy behaviour in us-east-1 alone; every other region answers BucketAlreadyOwnedByYou.
_LEGACY_REGION = "us-east-1"

# A tag set as sent, in order (``Buckets.list`` shadows the builtin inside the class).
TagPairs = list[tuple[str, str]]


class Buckets:
    """Create, find, list and delete buckets, each owned by one tenant."""

    def __init__(
        self,
        store: MetadataStore,
        clock: Clock,
        region: str,
        check_location: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.region = region
        self._check_location = check_location

    async def create(
        self, principal: Principal, name: str, location: str | None, *, object_lock: bool = False
    ) -> Bucket:
        """CreateBucket. ``location`` is the LocationConstraint, if any; ``object_lock``
        makes a bucket with object lock enabled (and so versioning)."""
        bucket_name = BucketName(name)
        if location and location != self.region:
            if self._check_location is None:
                raise errors.InvalidLocationConstraint(LocationConstraint=location)
            await self._check_location(location)  # a region the operator registered
        if location == "us-east-1":
            # AWS refuses an explicit us-east-1 constraint: it is the default.
            raise errors.InvalidLocationConstraint(LocationConstraint=location)
        bucket = Bucket(bucket_name, principal.tenant, self._clock.now(), location or "")
        if object_lock:
            bucket = replace(bucket, versioning=Versioning.ENABLED, object_lock=ObjectLockConfig())
        try:
            await self._store.create_bucket(bucket)
        except errors.BucketAlreadyExists:
            existing = await self._store.get_bucket(bucket_name)
            if existing is None or existing.tenant != principal.tenant:
                raise
            if self._recreate_changes_nothing(existing, location):
                authorize_bucket(principal, existing)  # the audit record names the owner
                return existing
            raise errors.BucketAlreadyOwnedByYou(BucketName=name) from None
        return bucket

    def _recreate_changes_nothing(self, existing: Bucket, location: str | None) -> bool:
        """Re-creating one's own bucket in the default region of a us-east-1 server: 200, and
        the bucket, its objects and its configuration stay as they are."""
        return self.region == _LEGACY_REGION and not existing.location and not location

    async def get(self, principal: Principal, name: str) -> Bucket:
        """The bucket if it exists and the principal's tenant owns it."""
        bucket = await self._store.get_bucket(name)
        if bucket is None:
            raise errors.NoSuchBucket(BucketName=name)
        authorize_bucket(principal, bucket)
        return bucket

    async def list(
        self, principal: Principal, *, prefix: str = "", after: str = "", limit: int | None = None
    ) -> BucketPage:
        """ListBuckets: the principal's tenant's buckets by name, those starting with ``prefix``
        after the name ``after``; all of them, or at most ``limit`` (≥ 1) and, when more
        remain, the last name listed to resume after."""
        found = await self._store.list_buckets(
            principal.tenant,
            prefix=prefix,
            after=after,
            limit=None if limit is None else limit + 1,
        )
        if limit is None or len(found) <= limit:
            return BucketPage(found, None)
        return BucketPage(found[:limit], found[limit - 1].name)

    async def delete(self, principal: Principal, name: str) -> None:
        """DeleteBucket: BucketNotEmpty while objects remain."""
        await self.get(principal, name)
        await self._store.delete_bucket(name)

    async def get_tags(self, principal: Principal, name: str) -> dict[str, str]:
        """GetBucketTagging: NoSuchTagSet when the bucket has none."""
        bucket = await self.get(principal, name)
        if not bucket.tags:
            raise errors.NoSuchTagSet(BucketName=name)
        return dict(bucket.tags)

    async def put_tags(self, principal: Principal, name: str, pairs: TagPairs) -> None:
        """PutBucketTagging: replaces the whole tag set (an empty one removes it)."""
        bucket = await self.get(principal, name)
        await self._store.set_bucket_tags(bucket.name, validate_bucket_tags(pairs))

    async def set_versioning(self, principal: Principal, name: str, state: Versioning) -> None:
        """PutBucketVersioning: enable or suspend (a bucket never goes back to "never
        enabled")."""
        bucket = await self.get(principal, name)
        await self._store.set_bucket_versioning(bucket.name, state)

    async def delete_tags(self, principal: Principal, name: str) -> None:
        """DeleteBucketTagging: succeeds whether or not the bucket had tags."""
        bucket = await self.get(principal, name)
        await self._store.set_bucket_tags(bucket.name, {})
