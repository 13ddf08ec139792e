"""The metadata store over SQLAlchemy Core async engines: SQLite (aiosqlite) or PostgreSQL.

Each public method is one transaction (``engines.Transactions``). Conditional writes lock what
they test: ``SELECT ... FOR UPDATE`` on PostgreSQL (READ COMMITTED), while on SQLite every write
transaction holds the database's write lock from its ``BEGIN IMMEDIATE``. Locks are taken in one
order everywhere, bucket, upload, object, part, so writers do not deadlock; PostgreSQL's
deadlock and serialisation failures are retried all the same.

A blob goes to the garbage queue only once no object version and no part names it, in the
transaction that dropped its last reference (``references.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from andromede.core import errors
from andromede.core.models import (
    BlobRef,
    DeleteCondition,
    MultipartUpload,
    ObjectSummary,
    ObjectVersion,
    Part,
    WriteCondition,
)
from andromede.metadata import codec, references
from andromede.metadata import schema as t
from andromede.metadata.accounts_sql import AccountsMixin
from andromede.metadata.engines import (
    MAX_ATTEMPTS,
    Prepared,
    Row,
    Transactions,
    all_rows,
    async_url,
    first,
    insert_if_absent,
    key_range,
    run_prepared,
)
from andromede.metadata.keys_sql import KeysMixin
from andromede.metadata.leases_sql import LeasesMixin
from andromede.metadata.lifecycle_sql import LifecycleMixin
from andromede.metadata.migrate import upgrade
from andromede.metadata.placement_sql import PlacementMixin
from andromede.metadata.versions_sql import VersionsMixin, is_version
from andromede.ports import Clock, MetadataStore

__all__ = ["DEFAULT_GARBAGE_GRACE", "SqlMetadataStore", "SystemClock", "open_store"]

DEFAULT_GARBAGE_GRACE = dt.timedelta(minutes=5)


class SystemClock:
    """The system's UTC time."""

    def now(self) -> dt.datetime:
        """Current UTC time, timezone-aware."""
        return dt.datetime.now(dt.UTC)


async def open_store(
    database_url: str,
    *,
    garbage_grace: dt.timedelta = DEFAULT_GARBAGE_GRACE,
    clock: Clock | None = None,
) -> SqlMetadataStore:
    """Migrate the database to the newest schema, then open a store on it.

    ``database_url`` is any SQLAlchemy URL for SQLite (a file) or PostgreSQL; the async drivers
    (aiosqlite, asyncpg) are used whichever driver it names.
    """
    url = async_url(database_url)
    await asyncio.to_thread(upgrade, url.render_as_string(hide_password=False))
    return SqlMetadataStore(Transactions.open(url), garbage_grace=garbage_grace, clock=clock)


# The hottest lookups, built once: constructing a statement costs more than running it.
_GET_OBJECT = Prepared(
    sa.select(t.objects).where(
        t.objects.c.bucket == sa.bindparam("bucket"), t.objects.c.key == sa.bindparam("key")
    )
)
# SQLite's "insert unless the key is taken" (``put_object``'s common case).
_INSERT_NEW_OBJECT = Prepared(
    sqlite.insert(t.objects)
    .on_conflict_do_nothing(index_elements=[t.objects.c.bucket, t.objects.c.key])
    .returning(t.objects.c.bucket)
)
_LOCK_BUCKET = (
    sa.select(t.buckets.c.name)
    .where(t.buckets.c.name == sa.bindparam("name"))
    .with_for_update(key_share=True, read=True)
)


class SqlMetadataStore(
    VersionsMixin, LifecycleMixin, AccountsMixin, PlacementMixin, KeysMixin, LeasesMixin
):
    """:class:`andromede.ports.MetadataStore` on SQLite or PostgreSQL; see :func:`open_store`.

    Tenants, access keys and buckets are in ``AccountsMixin``; key-encryption keys and the
    re-wrap scans in ``KeysMixin``; sites, regions and repair state in ``PlacementMixin``; job
    leases in ``LeasesMixin``.
    """

    def __init__(
        self,
        transactions: Transactions,
        *,
        garbage_grace: dt.timedelta = DEFAULT_GARBAGE_GRACE,
        clock: Clock | None = None,
    ) -> None:
        self._tx = transactions
        self._grace = garbage_grace
        self._clock: Clock = clock or SystemClock()

    async def close(self) -> None:
        """Release connections."""
        await self._tx.dispose()

    # --- objects ------------------------------------------------------------------------------
    async def put_object(
        self, version: ObjectVersion, condition: WriteCondition | DeleteCondition | None = None
    ) -> None:
        """Make ``version`` current atomically; the replaced one is kept as noncurrent or,
        when both are the null version, dropped (its blobs become garbage): see
        ``versions_sql``.

        PreconditionFailed when ``condition`` fails (NoSuchKey for If-Match on a missing key);
        NoSuchBucket when the bucket vanished.
        """

        async def op(conn: AsyncConnection) -> None:
            # The common case in two statements: SQLite runs one writer at a time, so no row
            # lock is needed, and the bucket's foreign key stands in for its lookup.
            sqlite_new = conn.dialect.name == "sqlite" and condition is None
            if sqlite_new and await self._insert_new(conn, version):
                return
            await self._lock_bucket(conn, version.bucket)
            await self._install(conn, version, condition)

        await self._tx.write(op)

    async def _insert_new(self, conn: AsyncConnection, version: ObjectVersion) -> bool:
        """Insert ``version`` if its key is free (False if taken). SQLite only: prepared
        statements on the writer thread's connection."""
        try:
            row = await run_prepared(conn, _INSERT_NEW_OBJECT, codec.object_values(version))
        except (sa.exc.IntegrityError, sqlite3.IntegrityError) as exc:
            # the bucket's foreign key: it is gone
            raise errors.NoSuchBucket(BucketName=version.bucket) from exc
        if row is None:
            return False
        await references.index_manifest(conn, version.bucket, version.key, version.manifest.blobs())
        return True

    async def get_object(self, bucket: str, key: str) -> ObjectVersion | None:
        """The current version, or None."""
        params = {"bucket": bucket, "key": key}
        row = await self._tx.read_row(_GET_OBJECT, params)
        return None if row is None else codec.object_version(row)

    async def update_object_tags(
        self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None
    ) -> ObjectVersion | None:
        """Replace the tag set of the current version, or of ``version_id`` (as clients name
        it); None when there is no such object (a delete marker has no tags)."""

        def stmt(table: sa.Table) -> sa.Update:
            where = [table.c.bucket == bucket, table.c.key == key]
            where.append(table.c.delete_marker.is_(sa.false()))
            if version_id is not None:
                where.append(is_version(table, version_id))
            return (
                table.update().where(*where).values(tags=codec.dump_map(tags)).returning(*table.c)
            )

        async def op(conn: AsyncConnection) -> Row | None:
            row = await first(conn, stmt(t.objects))
            if row is None and version_id is not None:
                row = await first(conn, stmt(t.object_versions))
            return row

        row = await self._tx.write(op)
        return None if row is None else codec.object_version(row)

    async def list_objects(
        self, bucket: str, prefix: str, start: str, inclusive: bool, limit: int
    ) -> Sequence[ObjectSummary]:
        """Up to ``limit`` objects with ``prefix``, keys from ``start`` on (or after), sorted."""
        if limit <= 0:
            return []
        o, b = t.objects, t.buckets
        query = (
            sa.select(
                o.c.key,
                o.c.size,
                o.c.etag,
                o.c.last_modified,
                o.c.storage_class,
                o.c.owner,
                o.c.checksum,
                b.c.tenant,
            )
            .join(b, b.c.name == o.c.bucket)
            .where(o.c.bucket == bucket, *key_range(o.c.key, prefix))
            .where(o.c.delete_marker.is_(sa.false()))
            .order_by(o.c.key)
            .limit(limit)
        )
        if start:
            query = query.where(o.c.key >= start if inclusive else o.c.key > start)
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.object_summary(row) for row in rows]

    async def bucket_is_empty(self, bucket: str) -> bool:
        """True when the bucket holds no object."""
        o = t.objects
        query = sa.select(o.c.key).where(o.c.bucket == bucket).limit(1)
        return await self._tx.read(lambda conn: first(conn, query)) is None

    # --- multipart ----------------------------------------------------------------------------
    async def create_upload(self, upload: MultipartUpload) -> None:
        """Register a new upload. Raises NoSuchBucket."""

        async def op(conn: AsyncConnection) -> None:
            await self._lock_bucket(conn, upload.bucket)
            await conn.execute(t.uploads.insert().values(codec.upload_values(upload)))

        await self._tx.write(op)

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> MultipartUpload | None:
        """The upload if it exists for this bucket and key."""
        u = t.uploads
        query = sa.select(u).where(u.c.upload_id == upload_id, u.c.bucket == bucket, u.c.key == key)
        row = await self._tx.read(lambda conn: first(conn, query))
        return None if row is None else codec.upload(row)

    async def put_part(self, part: Part) -> None:
        """Add or replace a part (the replaced part's blob becomes garbage). NoSuchUpload."""
        p = t.parts

        async def op(conn: AsyncConnection) -> None:
            await self._lock_upload(conn, part.upload_id, exclusive=False)
            where = (p.c.upload_id == part.upload_id, p.c.part_number == part.part_number)
            values = codec.part_values(part)
            for _ in range(MAX_ATTEMPTS):
                old = await first(
                    conn, sa.select(p.c.site, p.c.blob_id).where(*where).with_for_update()
                )
                if old is not None:
                    await conn.execute(p.update().where(*where).values(values))
                    await self._discard(conn, [codec.blob_ref(old.site, old.blob_id)])
                    return
                if await insert_if_absent(conn, p, values, [p.c.upload_id, p.c.part_number]):
                    return
            raise errors.ConditionalRequestConflict()

        await self._tx.write(op)

    async def list_parts(
        self, upload_id: str, after_part: int = 0, limit: int = 10000
    ) -> list[Part]:
        """Parts by number, those after ``after_part``."""
        p = t.parts
        query = (
            sa.select(p)
            .where(p.c.upload_id == upload_id, p.c.part_number > after_part)
            .order_by(p.c.part_number)
            .limit(max(limit, 0))
        )
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.part(row) for row in rows]

    async def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> list[MultipartUpload]:
        """In-progress uploads sorted by (key, initiated, upload id), after the markers.

        With only ``key_marker``, uploads of later keys. With both, also the uploads of
        ``key_marker`` that sort after the marker upload (by initiation time, then id); if the
        marker upload is gone, those whose id is greater than ``upload_id_marker``.
        """
        if limit <= 0:
            return []
        u = t.uploads

        async def op(conn: AsyncConnection) -> list[MultipartUpload]:
            query = (
                sa.select(u)
                .where(u.c.bucket == bucket, *key_range(u.c.key, prefix))
                .order_by(u.c.key, u.c.initiated, u.c.upload_id)
                .limit(limit)
            )
            if key_marker:
                after = await self._after_upload_marker(conn, bucket, key_marker, upload_id_marker)
                query = query.where(sa.or_(u.c.key > key_marker, after))
            return [codec.upload(row) for row in await all_rows(conn, query)]

        return await self._tx.read(op)

    async def complete_upload(
        self,
        upload_id: str,
        version: ObjectVersion,
        used_parts: Sequence[int],
        condition: WriteCondition | None = None,
    ) -> None:
        """Atomically: install ``version``, drop the upload; unused parts become garbage.

        Raises NoSuchUpload if the upload is gone (completed or aborted concurrently).
        Every part blob the new manifest does not name goes to garbage, ``used_parts`` or not,
        and none that it names does: a blob is never both live and queued for deletion.
        """
        del used_parts  # the manifest is the truth about which part blobs live on
        u, p = t.uploads, t.parts

        async def op(conn: AsyncConnection) -> None:
            await self._lock_bucket(conn, version.bucket)
            await self._lock_upload(conn, upload_id, exclusive=True)
            await self._install(conn, version, condition)
            dropped = await all_rows(
                conn, p.delete().where(p.c.upload_id == upload_id).returning(p.c.site, p.c.blob_id)
            )
            await conn.execute(u.delete().where(u.c.upload_id == upload_id))
            await self._discard(conn, [codec.blob_ref(row.site, row.blob_id) for row in dropped])

        await self._tx.write(op)

    async def abort_upload(self, upload_id: str) -> bool:
        """Drop the upload; its parts become garbage. True when it existed."""
        u, p = t.uploads, t.parts

        async def op(conn: AsyncConnection) -> bool:
            found = sa.select(u.c.upload_id).where(u.c.upload_id == upload_id).with_for_update()
            if await first(conn, found) is None:
                return False
            dropped = await all_rows(
                conn, p.delete().where(p.c.upload_id == upload_id).returning(p.c.site, p.c.blob_id)
            )
            await conn.execute(u.delete().where(u.c.upload_id == upload_id))
            await self._discard(conn, [codec.blob_ref(row.site, row.blob_id) for row in dropped])
            return True

        return await self._tx.write(op)

    # --- blob garbage -------------------------------------------------------------------------
    async def add_garbage(self, blobs: Sequence[BlobRef], due: dt.datetime) -> None:
        """Queue blobs for deletion at ``due`` (used when a write fails after storing data)."""
        if blobs:
            await self._tx.write(lambda conn: references.enqueue(conn, blobs, due))

    async def due_garbage(
        self, now: dt.datetime, limit: int, skip_sites: Collection[str] = ()
    ) -> list[BlobRef]:
        """Queued blobs whose grace period has passed, oldest first, leaving out those with a
        shard on one of ``skip_sites``."""
        g = t.garbage
        query = (
            sa.select(g.c.site, g.c.blob_id)
            .where(g.c.due <= now, *(sa.not_(codec.naming_site(g.c.site, s)) for s in skip_sites))
            .order_by(g.c.due, g.c.site, g.c.blob_id)
            .limit(max(limit, 0))
        )
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.blob_ref(row.site, row.blob_id) for row in rows]

    async def forget_garbage(self, blobs: Sequence[BlobRef]) -> None:
        """Remove blobs from the queue once deleted."""
        if blobs:
            await self._tx.write(lambda conn: references.forget(conn, blobs))

    # --- inside transactions ------------------------------------------------------------------
    async def _discard(self, conn: AsyncConnection, blobs: Iterable[BlobRef]) -> None:
        await references.discard(conn, blobs, self._clock.now() + self._grace)

    async def _lock_bucket(self, conn: AsyncConnection, name: str) -> None:
        """Hold the bucket (FOR KEY SHARE) so a concurrent delete_bucket waits for us."""
        if await first(conn, _LOCK_BUCKET, {"name": name}) is None:
            raise errors.NoSuchBucket(BucketName=name)

    async def _lock_upload(self, conn: AsyncConnection, upload_id: str, *, exclusive: bool) -> None:
        u = t.uploads
        query = sa.select(u.c.upload_id).where(u.c.upload_id == upload_id)
        query = (
            query.with_for_update()
            if exclusive
            else query.with_for_update(key_share=True, read=True)
        )
        if await first(conn, query) is None:
            raise errors.NoSuchUpload(UploadId=upload_id)

    async def _after_upload_marker(
        self, conn: AsyncConnection, bucket: str, key_marker: str, upload_id_marker: str
    ) -> sa.ColumnElement[bool]:
        u = t.uploads
        if not upload_id_marker:
            return sa.false()
        marker = await first(
            conn,
            sa.select(u.c.initiated).where(
                u.c.bucket == bucket, u.c.key == key_marker, u.c.upload_id == upload_id_marker
            ),
        )
        if marker is None:
            return sa.and_(u.c.key == key_marker, u.c.upload_id > upload_id_marker)
        return sa.and_(
            u.c.key == key_marker,
            sa.or_(
                u.c.initiated > marker.initiated,
                sa.and_(u.c.initiated == marker.initiated, u.c.upload_id > upload_id_marker),
            ),
        )


if TYPE_CHECKING:

    def _implements_the_port(store: SqlMetadataStore) -> MetadataStore:
        return store  # mypy checks the class against the Protocol here
