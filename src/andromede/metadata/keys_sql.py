"""The metadata store's part in encryption at rest: key-encryption keys, and the scans and
swaps that re-wrap data keys when a key rotates (bucket defaults are in ``accounts_sql``).

A mixin of :class:`andromede.metadata.sql.SqlMetadataStore`, with the same rules: each public
method is one transaction, locks follow the order bucket, upload, object, part.

Re-wrapping changes only how a blob's data key is wrapped, never which blobs hold the data: a
manifest swap that would name other blobs is refused, so ``object_blobs`` and the garbage queue
need no change. Both swaps are compare-and-swap: they lose, and say so, to any write that
replaced the object or the part since it was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from andromede.core import errors
from andromede.core.keys import KmsKey, Sealing
from andromede.core.models import Manifest, ObjectVersion, Part
from andromede.metadata import codec
from andromede.metadata import schema as t
from andromede.metadata.engines import Row, Transactions, all_rows, first, insert_if_absent

__all__ = ["KeysMixin"]


class KeysMixin:
    """Encryption methods of the metadata store; needs the store's ``_tx`` and
    ``_lock_tenant``."""

    _tx: Transactions

    if TYPE_CHECKING:

        async def _lock_tenant(self, conn: AsyncConnection, name: str) -> None: ...

    # --- key-encryption keys ------------------------------------------------------------------
    async def create_kms_key(self, key: KmsKey) -> None:
        """Register a key. Raises KmsAliasExists when the tenant has a key with its alias,
        NoSuchTenant when the tenant does not exist; InvalidArgument when the key id is taken."""
        k = t.kms_keys

        async def op(conn: AsyncConnection) -> None:
            await self._lock_tenant(conn, key.tenant)
            # The conflict clause covers the primary key only: an alias collision still fails.
            try:
                inserted = await insert_if_absent(conn, k, codec.kms_key_values(key), [k.c.key_id])
            except sa.exc.IntegrityError as exc:
                raise _alias_exists(key) from exc
            if not inserted:
                raise errors.InvalidArgument("This key id is already in use.", KeyId=key.key_id)

        await self._tx.write(op)

    async def get_kms_key(self, key_id: str) -> KmsKey | None:
        """The key, or None."""
        query = sa.select(t.kms_keys).where(t.kms_keys.c.key_id == key_id)
        row = await self._tx.read(lambda conn: first(conn, query))
        return None if row is None else codec.kms_key(row)

    async def get_kms_key_by_alias(self, tenant: str, alias: str) -> KmsKey | None:
        """The tenant's key with this alias, or None."""
        k = t.kms_keys
        query = sa.select(k).where(k.c.tenant == tenant, k.c.alias == alias)
        row = await self._tx.read(lambda conn: first(conn, query))
        return None if row is None else codec.kms_key(row)

    async def list_kms_keys(self, tenant: str | None = None) -> list[KmsKey]:
        """Keys by (tenant, created, key id), optionally of one tenant."""
        k = t.kms_keys
        query = sa.select(k).order_by(k.c.tenant, k.c.created, k.c.key_id)
        if tenant is not None:
            query = query.where(k.c.tenant == tenant)
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.kms_key(row) for row in rows]

    async def update_kms_key(self, key: KmsKey, expected: KmsKey | None = None) -> bool:
        """Replace the stored key (same ``key_id``); with ``expected``, only if the stored
        row still equals it (False otherwise). Raises KmsNotFound; KmsAliasExists when the
        new alias is another key's; ValueError when ``key`` names another tenant."""
        k = t.kms_keys
        values = codec.kms_key_values(key)
        del values["key_id"], values["tenant"]  # the identity of a key never changes
        conditions = [k.c.key_id == key.key_id, k.c.tenant == key.tenant]
        if expected is not None:
            before = codec.kms_key_values(expected)
            for name in ("state", "versions", "alias", "deletion_date", "rewrap"):
                column = k.c[name]
                value = before[name]
                conditions.append(column.is_(None) if value is None else column == value)

        async def op(conn: AsyncConnection) -> bool:
            stmt = k.update().where(*conditions).values(values).returning(k.c.key_id)
            try:
                updated = await first(conn, stmt)
            except sa.exc.IntegrityError as exc:
                raise _alias_exists(key) from exc
            if updated is not None:
                return True
            owner = await first(conn, sa.select(k.c.tenant).where(k.c.key_id == key.key_id))
            if owner is None:
                raise errors.KmsNotFound(f"Key '{key.key_id}' does not exist.")
            if owner.tenant != key.tenant:
                raise ValueError(
                    f"key {key.key_id} belongs to {owner.tenant!r}, not {key.tenant!r}"
                )
            return False

        return await self._tx.write(op)

    # --- re-wrapping --------------------------------------------------------------------------
    async def list_versions(
        self, bucket: str, after_key: str, limit: int
    ) -> tuple[list[ObjectVersion], str | None]:
        """Every version (current or not, delete markers left out) of up to ``limit`` keys of
        a bucket after ``after_key``, in key (byte) order, each key's newest first; and the
        key to resume after (None: no key is left)."""
        if limit <= 0:
            return [], None
        o, ov = t.objects, t.object_versions
        query = (
            sa.select(o)
            .where(o.c.bucket == bucket, o.c.key > after_key)
            .order_by(o.c.key)
            .limit(limit)
        )

        def older(last: str) -> sa.Select[tuple[object, ...]]:
            return (
                sa.select(ov)
                .where(ov.c.bucket == bucket, ov.c.key > after_key, ov.c.key <= last)
                .where(ov.c.delete_marker.is_(sa.false()))
                .order_by(ov.c.key, ov.c.seq.desc())
            )

        async def op(conn: AsyncConnection) -> tuple[Sequence[Row], Sequence[Row]]:
            current = await all_rows(conn, query)
            if not current:
                return [], []
            return current, await all_rows(conn, older(current[-1].key))

        current, noncurrent = await self._tx.read(op)
        by_key: dict[str, list[ObjectVersion]] = {}
        for row in noncurrent:
            by_key.setdefault(row.key, []).append(codec.object_version(row))
        versions: list[ObjectVersion] = []
        for row in current:
            if not row.delete_marker:
                versions.append(codec.object_version(row))
            versions.extend(by_key.get(row.key, []))
        resume = current[-1].key if len(current) == limit else None
        return versions, resume

    async def replace_manifest(
        self, bucket: str, key: str, version_id: str, manifest: Manifest
    ) -> bool:
        """Swap the manifest of version ``version_id`` (the internal id; current or not) if
        the version still exists; False when it was deleted meanwhile.

        Raises ValueError unless the new manifest differs from the stored one only in how its
        segments are sealed and in its encryption: same blobs in the same order, same sizes,
        part numbers, ETags and checksums (the object's size and ETag columns stay right).
        """

        async def op(conn: AsyncConnection) -> bool:
            for table in (t.objects, t.object_versions):
                where = (
                    table.c.bucket == bucket,
                    table.c.key == key,
                    table.c.version_id == version_id,
                )
                query = sa.select(table.c.manifest).where(*where).with_for_update()
                current = await first(conn, query)
                if current is None:
                    continue
                _check_same_data(codec.load_manifest(current.manifest), manifest)
                await conn.execute(
                    table.update().where(*where).values(manifest=codec.dump_manifest(manifest))
                )
                return True
            return False

        return await self._tx.write(op)

    async def list_parts_after(self, after: tuple[str, int], limit: int) -> list[Part]:
        """Parts of every in-progress upload after (upload id, part number), in that order;
        ``("", 0)`` starts from the first."""
        if limit <= 0:
            return []
        p = t.parts
        position = sa.tuple_(p.c.upload_id, p.c.part_number)
        query = (
            sa.select(p)
            .where(position > sa.tuple_(sa.literal(after[0]), sa.literal(after[1])))
            .order_by(p.c.upload_id, p.c.part_number)
            .limit(limit)
        )
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.part(row) for row in rows]

    async def replace_part_sealing(
        self, upload_id: str, part_number: int, blob_id: str, sealing: Sealing
    ) -> bool:
        """Swap a part's sealing if the part still holds blob ``blob_id``; False otherwise
        (the part was replaced, or its upload completed or aborted)."""
        p = t.parts
        stmt = (
            p.update()
            .where(
                p.c.upload_id == upload_id,
                p.c.part_number == part_number,
                p.c.blob_id == blob_id,
            )
            .values(sealing=codec.dump_sealing(sealing))
            .returning(p.c.part_number)
        )
        return await self._tx.write(lambda conn: first(conn, stmt)) is not None


def _alias_exists(key: KmsKey) -> errors.KmsAliasExists:
    return errors.KmsAliasExists(f"The tenant already has a key with alias '{key.alias}'.")


def _check_same_data(stored: Manifest, new: Manifest) -> None:
    """Raise ValueError unless ``new`` describes the same stored bytes as ``stored``."""

    def unsealed(manifest: Manifest) -> list[object]:
        return [replace(segment, sealing=None) for segment in manifest.segments]

    if new.blobs() != stored.blobs():
        raise ValueError("a replacement manifest must name the same blobs, in the same order")
    if unsealed(new) != unsealed(stored):
        raise ValueError("a replacement manifest may change only how its segments are sealed")
