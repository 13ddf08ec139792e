"""The metadata store's accounts: tenants, their access keys, and buckets with their settings
(tags, default encryption).

A mixin of :class:`andromede.metadata.sql.SqlMetadataStore`, with the same rules: each public
method is one transaction, locks follow the order tenant, bucket, upload, object, part.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from andromede.core import errors
from andromede.core.keys import BucketEncryption
from andromede.core.models import AccessKey, BlobRef, Bucket, Tenant
from andromede.metadata import codec
from andromede.metadata import schema as t
from andromede.metadata.engines import Prepared, Transactions, all_rows, first, key_range

__all__ = ["AccountsMixin"]

_GET_BUCKET = Prepared(sa.select(t.buckets).where(t.buckets.c.name == sa.bindparam("name")))
_GET_ACCESS_KEY = Prepared(
    sa.select(t.access_keys).where(t.access_keys.c.access_key_id == sa.bindparam("id"))
)


class AccountsMixin:
    """Tenant, access key and bucket methods of the metadata store; needs the store's ``_tx``
    and ``_discard``."""

    _tx: Transactions

    if TYPE_CHECKING:

        async def _discard(self, conn: AsyncConnection, blobs: Iterable[BlobRef]) -> None: ...

    # --- tenants and keys ---------------------------------------------------------------------
    async def create_tenant(self, tenant: Tenant) -> None:
        """Raises TenantAlreadyExists."""

        async def op(conn: AsyncConnection) -> None:
            try:
                await conn.execute(
                    t.tenants.insert().values(name=tenant.name, created=tenant.created)
                )
            except sa.exc.IntegrityError as exc:
                raise errors.TenantAlreadyExists(Tenant=tenant.name) from exc

        await self._tx.write(op)

    async def get_tenant(self, name: str) -> Tenant | None:
        """The tenant, or None."""
        query = sa.select(t.tenants).where(t.tenants.c.name == name)
        row = await self._tx.read(lambda conn: first(conn, query))
        return None if row is None else Tenant(row.name, row.created)

    async def list_tenants(self) -> list[Tenant]:
        """All tenants by name."""
        query = sa.select(t.tenants).order_by(t.tenants.c.name)
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [Tenant(row.name, row.created) for row in rows]

    async def create_access_key(self, key: AccessKey) -> None:
        """Raises NoSuchTenant when the tenant does not exist."""

        async def op(conn: AsyncConnection) -> None:
            await self._lock_tenant(conn, key.tenant)
            try:
                await conn.execute(t.access_keys.insert().values(codec.access_key_values(key)))
            except sa.exc.IntegrityError as exc:
                raise errors.InvalidArgument(
                    "This access key id is already in use.", AccessKeyId=key.access_key_id
                ) from exc

        await self._tx.write(op)

    async def get_access_key(self, access_key_id: str) -> AccessKey | None:
        """The key with its secret, or None."""
        params = {"id": access_key_id}
        row = await self._tx.read_row(_GET_ACCESS_KEY, params)
        return None if row is None else codec.access_key(row)

    async def list_access_keys(self, tenant: str | None = None) -> list[AccessKey]:
        """Keys, optionally of one tenant, by access key id."""
        ak = t.access_keys
        query = sa.select(ak).order_by(ak.c.access_key_id)
        if tenant is not None:
            query = query.where(ak.c.tenant == tenant)
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.access_key(row) for row in rows]

    async def delete_access_key(self, access_key_id: str) -> bool:
        """True when a key was deleted."""
        ak = t.access_keys
        stmt = ak.delete().where(ak.c.access_key_id == access_key_id).returning(ak.c.access_key_id)
        return await self._tx.write(lambda conn: first(conn, stmt)) is not None

    # --- buckets ------------------------------------------------------------------------------
    async def create_bucket(self, bucket: Bucket) -> None:
        """Raises BucketAlreadyExists when the name is taken (by anyone); NoSuchTenant."""

        async def op(conn: AsyncConnection) -> None:
            await self._lock_tenant(conn, bucket.tenant)
            try:
                await conn.execute(t.buckets.insert().values(codec.bucket_values(bucket)))
            except sa.exc.IntegrityError as exc:
                raise errors.BucketAlreadyExists(BucketName=bucket.name) from exc

        await self._tx.write(op)

    async def get_bucket(self, name: str) -> Bucket | None:
        """The bucket, or None."""
        row = await self._tx.read_row(_GET_BUCKET, {"name": name})
        return None if row is None else codec.bucket(row)

    async def list_buckets(
        self, tenant: str, *, prefix: str = "", after: str = "", limit: int | None = None
    ) -> list[Bucket]:
        """The tenant's buckets by name: those starting with ``prefix`` whose names sort after
        ``after``, at most ``limit`` of them (all when None)."""
        b = t.buckets
        query = (
            sa.select(b)
            .where(b.c.tenant == tenant, *key_range(b.c.name, prefix))
            .order_by(b.c.name)
            .limit(limit)
        )
        if after:
            query = query.where(b.c.name > after)
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.bucket(row) for row in rows]

    async def set_bucket_tags(self, name: str, tags: dict[str, str]) -> None:
        """Replace a bucket's tag set (an empty one removes it). Raises NoSuchBucket."""
        await self._update_bucket(name, tags=codec.dump_bucket_tags(tags))

    async def set_bucket_encryption(self, name: str, config: BucketEncryption | None) -> None:
        """Set (or with None remove) a bucket's default encryption. Raises NoSuchBucket."""
        await self._update_bucket(name, encryption=codec.dump_bucket_encryption(config))

    async def _update_bucket(self, name: str, **values: object) -> None:
        b = t.buckets
        stmt = b.update().where(b.c.name == name).values(**values).returning(b.c.name)
        if await self._tx.write(lambda conn: first(conn, stmt)) is None:
            raise errors.NoSuchBucket(BucketName=name)

    async def delete_bucket(self, name: str) -> None:
        """Raises BucketNotEmpty if it holds objects; aborts its uploads; NoSuchBucket."""
        b, o, u, p = t.buckets, t.objects, t.uploads, t.parts

        async def op(conn: AsyncConnection) -> None:
            found = await first(conn, sa.select(b.c.name).where(b.c.name == name).with_for_update())
            if found is None:
                raise errors.NoSuchBucket(BucketName=name)
            if await first(conn, sa.select(o.c.key).where(o.c.bucket == name).limit(1)):
                raise errors.BucketNotEmpty(BucketName=name)
            in_bucket = sa.select(u.c.upload_id).where(u.c.bucket == name).scalar_subquery()
            dropped = await all_rows(
                conn,
                p.delete().where(p.c.upload_id.in_(in_bucket)).returning(p.c.site, p.c.blob_id),
            )
            await conn.execute(u.delete().where(u.c.bucket == name))
            await conn.execute(b.delete().where(b.c.name == name))
            await self._discard(conn, [codec.blob_ref(row.site, row.blob_id) for row in dropped])

        await self._tx.write(op)

    async def _lock_tenant(self, conn: AsyncConnection, name: str) -> None:
        tn = t.tenants
        query = (
            sa.select(tn.c.name).where(tn.c.name == name).with_for_update(key_share=True, read=True)
        )
        if await first(conn, query) is None:
            raise errors.NoSuchTenant(Tenant=name)
