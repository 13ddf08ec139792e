"""Bucket use cases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from andromede.auth.policy import authorize_bucket
from andromede.core import errors
from andromede.core.ids import BucketName
from andromede.core.models import Bucket, Principal
from andromede.ports import Clock, MetadataStore


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

    async def create(self, principal: Principal, name: str, location: str | None) -> Bucket:
        """CreateBucket. ``location`` is the LocationConstraint, if any."""
        bucket_name = BucketName(name)
        if location and location != self.region:
            if self._check_location is None:
                raise errors.InvalidLocationConstraint(LocationConstraint=location)
            await self._check_location(location)  # a region the operator registered
        if location == "us-east-1":
            # AWS refuses an explicit us-east-1 constraint: it is the default.
            raise errors.InvalidLocationConstraint(LocationConstraint=location)
        bucket = Bucket(bucket_name, principal.tenant, self._clock.now(), location or "")
        try:
            await self._store.create_bucket(bucket)
        except errors.BucketAlreadyExists:
            existing = await self._store.get_bucket(bucket_name)
            if existing is not None and existing.tenant == principal.tenant:
                raise errors.BucketAlreadyOwnedByYou(BucketName=name) from None
            raise
        return bucket

    async def get(self, principal: Principal, name: str) -> Bucket:
        """The bucket if it exists and the principal's tenant owns it."""
        bucket = await self._store.get_bucket(name)
        if bucket is None:
            raise errors.NoSuchBucket(BucketName=name)
        authorize_bucket(principal, bucket)
        return bucket

    async def list(self, principal: Principal) -> list[Bucket]:
        """ListBuckets: only the principal's tenant's buckets."""
        return await self._store.list_buckets(principal.tenant)

    async def delete(self, principal: Principal, name: str) -> None:
        """DeleteBucket: BucketNotEmpty while objects remain."""
        await self.get(principal, name)
        await self._store.delete_bucket(name)
