"""Object versions in SQL: installing a new current version, retiring the one it replaces,
deleting a version for good, and listing every version of a bucket's keys.

``objects`` holds one row per key, the current version (possibly a delete marker);
``object_versions`` the noncurrent ones, ordered by ``seq`` (the current row's is the highest).
A key has noncurrent versions only while it has a current row: deleting the current version
promotes the newest noncurrent one. Every version's blobs are indexed in ``object_blobs``
under its (bucket, key), so the sweeper, scrub, repair and drain see them all; a version's
blobs become garbage in the transaction that drops its last reference.

At most one version of a key is the ``null`` version (written while versioning was never
enabled, or suspended): a new null version replaces it, current or not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from andromede.core import errors
from andromede.core.conditions import check_delete, check_write
from andromede.core.models import (
    NULL_VERSION,
    BlobRef,
    DeleteCondition,
    ObjectSummary,
    ObjectVersion,
    Versioning,
    VersionSummary,
    WriteCondition,
)
from andromede.core.object_lock import ObjectLockConfig, Retention
from andromede.metadata import codec, references
from andromede.metadata import schema as t
from andromede.metadata.engines import (
    MAX_ATTEMPTS,
    Row,
    Transactions,
    all_rows,
    first,
    insert_if_absent,
    key_range,
)
from andromede.ports import Clock

_o, _ov = t.objects, t.object_versions
_KEY_IS = (_o.c.bucket == sa.bindparam("w_bucket"), _o.c.key == sa.bindparam("w_key"))
_CURRENT_ROW = sa.select(_o).where(*_KEY_IS).with_for_update()
_UPDATE_CURRENT = _o.update().where(*_KEY_IS)
# The columns a version has wherever it lives (``seq`` included).
_MOVED = [c.name for c in _ov.c if c.name != "noncurrent_since"]
_KEEP_CURRENT = _ov.insert().from_select(
    [*_MOVED, "noncurrent_since"],
    sa.select(
        *(_o.c[name] for name in _MOVED), sa.bindparam("since", type_=_ov.c.noncurrent_since.type)
    ).where(*_KEY_IS),
)
_LISTED = ("key", "seq", "version_id", "null_version", "delete_marker", "size", "etag",
           "last_modified", "storage_class", "owner", "checksum")  # fmt: skip


def is_version(table: sa.Table, version_id: str) -> sa.ColumnElement[bool]:
    """The row of ``version_id`` as clients name it ("null": the null version)."""
    if version_id == NULL_VERSION:
        return table.c.null_version.is_(sa.true())
    return sa.and_(table.c.version_id == version_id, table.c.null_version.is_(sa.false()))


class VersionsMixin:
    """Versions of objects; mixed into ``SqlMetadataStore``."""

    _tx: Transactions
    _clock: Clock

    async def _discard(self, conn: AsyncConnection, blobs: Iterable[BlobRef]) -> None:
        raise NotImplementedError  # SqlMetadataStore's

    # --- writing ------------------------------------------------------------------------------
    async def _install(
        self,
        conn: AsyncConnection,
        version: ObjectVersion,
        condition: WriteCondition | DeleteCondition | None,
    ) -> None:
        """Make ``version`` (an object or a delete marker) the current one of its key,
        checking ``condition`` under lock against the current object (a delete marker is no
        object; a DeleteCondition goes with a new delete marker); the version it replaces is
        retired."""
        where = {"w_bucket": version.bucket, "w_key": version.key}
        values = codec.object_values(version)
        for _ in range(MAX_ATTEMPTS):
            current = await first(conn, _CURRENT_ROW, where)
            live = None if current is None or current.delete_marker else current
            if isinstance(condition, DeleteCondition):
                if live is not None:
                    check_delete(condition, live.etag, live.last_modified, live.size)
            else:
                check_write(condition, None if live is None else live.etag)
            if current is not None:
                keep = set(version.manifest.blobs())  # a blob both name stays live
                await self._retire(conn, current, version.null_version, keep)
                await conn.execute(_UPDATE_CURRENT, {**values, "seq": current.seq + 1, **where})
            elif not await insert_if_absent(conn, _o, values, [_o.c.bucket, _o.c.key]):
                # A concurrent writer created the key after our read (PostgreSQL only):
                # read it again, now committed and lockable, and re-check the condition.
                continue
            # A blob the replaced version names too is indexed already (by the same key).
            held = set() if current is None else set(codec.manifest_blobs(current.manifest))
            blobs = [b for b in version.manifest.blobs() if b not in held]
            await references.index_manifest(conn, version.bucket, version.key, blobs)
            return
        raise errors.ConditionalRequestConflict()

    async def _retire(
        self, conn: AsyncConnection, current: Row, new_is_null: bool, keep: set[BlobRef]
    ) -> None:
        """The current version makes way: kept as noncurrent, unless it and the newcomer are
        both the null version (it is then gone for good). A null newcomer also replaces a
        noncurrent null version."""
        bucket, key = current.bucket, current.key
        if current.null_version and new_is_null:
            await self._drop(conn, bucket, key, current.manifest, keep)
        else:
            params = {"w_bucket": bucket, "w_key": key, "since": self._clock.now()}
            await conn.execute(_KEEP_CURRENT, params)
        if new_is_null:
            gone = await all_rows(
                conn,
                _ov.delete()
                .where(_ov.c.bucket == bucket, _ov.c.key == key, _ov.c.null_version.is_(sa.true()))
                .returning(_ov.c.manifest),
            )
            for row in gone:
                await self._drop(conn, bucket, key, row.manifest, keep)

    async def _drop(
        self,
        conn: AsyncConnection,
        bucket: str,
        key: str,
        manifest: str,
        keep: set[BlobRef] | frozenset[BlobRef] = frozenset(),
    ) -> None:
        """A version is gone: its blobs (but those in ``keep``, which the version replacing
        it names too) are no longer the key's, and garbage if nothing else names them. The
        versions of a key do not share blobs otherwise: every write stores new ones."""
        blobs = [b for b in codec.manifest_blobs(manifest) if b not in keep]
        if blobs:
            await references.unindex_blobs(conn, bucket, key, blobs)
            await self._discard(conn, blobs)

    async def _remove_current(self, conn: AsyncConnection, current: Row) -> None:
        """Delete the current version for good; the newest noncurrent one, if any, becomes
        current."""
        bucket, key = current.bucket, current.key
        await self._drop(conn, bucket, key, current.manifest)
        newest = await first(
            conn,
            sa.select(_ov)
            .where(_ov.c.bucket == bucket, _ov.c.key == key)
            .order_by(_ov.c.seq.desc())
            .limit(1)
            .with_for_update(),
        )
        where = (_o.c.bucket == bucket, _o.c.key == key)
        if newest is None:
            await conn.execute(_o.delete().where(*where))
            return
        promoted = {name: newest._mapping[name] for name in _MOVED if name not in ("bucket", "key")}
        await conn.execute(_o.update().where(*where).values(**promoted))
        await conn.execute(
            _ov.delete().where(_ov.c.bucket == bucket, _ov.c.key == key, _ov.c.seq == newest.seq)
        )

    async def delete_object(
        self, bucket: str, key: str, condition: DeleteCondition | None = None
    ) -> bool:
        """Remove the current version of the key for good (a bucket whose versioning was
        never enabled); its blobs become garbage. True when it existed.

        ``condition`` is checked on the locked row: PreconditionFailed when the object
        differs; a missing key is no error, whatever the condition names.
        """

        async def op(conn: AsyncConnection) -> bool:
            current = await first(conn, _CURRENT_ROW, {"w_bucket": bucket, "w_key": key})
            if current is None:
                return False
            if not current.delete_marker:
                check_delete(condition, current.etag, current.last_modified, current.size)
            await self._remove_current(conn, current)
            return True

        return await self._tx.write(op)

    async def delete_version(
        self,
        bucket: str,
        key: str,
        version_id: str,
        condition: DeleteCondition | None = None,
        guard: Callable[[ObjectVersion], None] | None = None,
    ) -> ObjectVersion | None:
        """Delete one version (or delete marker) for good, named as clients name it; None
        when there is no such version. Deleting the current one makes the newest
        noncurrent one current. ``guard`` sees the version under lock first and raises to
        refuse (its object lock)."""

        async def op(conn: AsyncConnection) -> ObjectVersion | None:
            current = await first(conn, _CURRENT_ROW, {"w_bucket": bucket, "w_key": key})
            if current is None:
                return None
            row: Row | None = current
            if not _row_is(current, version_id):
                row = await first(
                    conn,
                    sa.select(_ov)
                    .where(_ov.c.bucket == bucket, _ov.c.key == key, is_version(_ov, version_id))
                    .with_for_update(),
                )
            if row is None:
                return None
            if not row.delete_marker:
                check_delete(condition, row.etag, row.last_modified, row.size)
            if guard is not None:
                guard(codec.object_version(row))
            if row is current:
                await self._remove_current(conn, current)
            else:
                await conn.execute(
                    _ov.delete().where(
                        _ov.c.bucket == bucket, _ov.c.key == key, _ov.c.seq == row.seq
                    )
                )
                await self._drop(conn, bucket, key, row.manifest)
            return codec.object_version(row)

        return await self._tx.write(op)

    # --- reading ------------------------------------------------------------------------------
    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
        """A version (or delete marker) named as clients name it, current or not; None."""

        async def op(conn: AsyncConnection) -> ObjectVersion | None:
            for table in (_o, _ov):
                query = sa.select(table).where(
                    table.c.bucket == bucket, table.c.key == key, is_version(table, version_id)
                )
                row = await first(conn, query)
                if row is not None:
                    return codec.object_version(row)
            return None

        return await self._tx.read(op)

    async def version_seq(self, bucket: str, key: str, version_id: str) -> int | None:
        """Where a version stands among its key's versions (a listing resumes after it)."""

        async def op(conn: AsyncConnection) -> int | None:
            for table in (_o, _ov):
                query = sa.select(table.c.seq).where(
                    table.c.bucket == bucket, table.c.key == key, is_version(table, version_id)
                )
                row = await first(conn, query)
                if row is not None:
                    return int(row.seq)
            return None

        return await self._tx.read(op)

    async def list_object_versions(
        self,
        bucket: str,
        prefix: str,
        start: str,
        inclusive: bool,
        before_seq: int | None,
        limit: int,
    ) -> list[VersionSummary]:
        """Up to ``limit`` versions and delete markers of keys with ``prefix``, by key, then
        newest first: from ``start`` on (``inclusive``) or after it; with ``before_seq``,
        first the versions of ``start`` older than that, then the keys after it.

        Each table is read in its index order and stops at ``limit`` rows; the pages are
        merged here, so a page costs the same whatever the bucket holds."""
        if limit <= 0:
            return []

        def select(table: sa.Table, latest: bool) -> sa.Select[tuple[object, ...]]:
            return sa.select(
                *(table.c[name] for name in _LISTED), sa.literal(latest).label("latest")
            ).where(table.c.bucket == bucket, *key_range(table.c.key, prefix))

        queries = []
        if before_seq is not None:
            queries.append(
                select(_ov, False)
                .where(_ov.c.key == start, _ov.c.seq < before_seq)
                .order_by(_ov.c.seq.desc())
                .limit(limit)
            )
        for table, latest in ((_o, True), (_ov, False)):
            after = (
                table.c.key >= start if inclusive and before_seq is None else table.c.key > start
            )
            query = select(table, latest).where(after) if start else select(table, latest)
            queries.append(query.order_by(table.c.key, table.c.seq.desc()).limit(limit))

        async def op(conn: AsyncConnection) -> list[Row]:
            rows: list[Row] = []
            for query in queries:
                rows.extend(await all_rows(conn, query))
            return rows

        rows = await self._tx.read(op)
        # Same-key rows first (they precede every later key), then by key, newest first.
        rows.sort(key=lambda r: (r.key != start or before_seq is None, r.key, -r.seq))
        return [_summary(row) for row in rows[:limit]]

    async def set_bucket_versioning(self, name: str, state: Versioning) -> None:
        """Enable or suspend versioning. NoSuchBucket; InvalidBucketState when suspending a
        bucket with object lock (its versions must all be kept)."""
        b = t.buckets
        allowed = sa.or_(b.c.object_lock.is_(None), sa.literal(state is Versioning.ENABLED))
        stmt = (
            b.update()
            .where(b.c.name == name, allowed)
            .values(versioning=state.value)
            .returning(b.c.name)
        )

        async def op(conn: AsyncConnection) -> None:
            if await first(conn, stmt) is not None:
                return
            if await first(conn, sa.select(b.c.name).where(b.c.name == name)) is None:
                raise errors.NoSuchBucket(BucketName=name)
            raise errors.InvalidBucketState(
                "An Object Lock configuration is present on this bucket, so the versioning "
                "state cannot be changed.",
                BucketName=name,
            )

        await self._tx.write(op)

    async def set_bucket_object_lock(self, name: str, config: ObjectLockConfig) -> None:
        """Enable object lock (for good) or change its default retention. NoSuchBucket;
        InvalidBucketState unless versioning is enabled."""
        b = t.buckets

        async def op(conn: AsyncConnection) -> None:
            row = await first(
                conn, sa.select(b.c.versioning).where(b.c.name == name).with_for_update()
            )
            if row is None:
                raise errors.NoSuchBucket(BucketName=name)
            if row.versioning != Versioning.ENABLED.value:
                raise errors.InvalidBucketState(
                    "Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                    "configuration",
                    BucketName=name,
                )
            await conn.execute(
                b.update()
                .where(b.c.name == name)
                .values(object_lock=codec.dump_object_lock(config))
            )

        await self._tx.write(op)

    async def update_version_lock(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        change: Callable[[ObjectVersion], tuple[Retention | None, bool]],
    ) -> ObjectVersion | None:
        """Set a version's retention and legal hold to what ``change`` returns for it (which
        raises to refuse), atomically with reading it; the current version when
        ``version_id`` is None. None when there is no such object version (delete markers
        hold no lock)."""

        async def op(conn: AsyncConnection) -> ObjectVersion | None:
            for table in (_o, _ov):
                where = [table.c.bucket == bucket, table.c.key == key]
                if version_id is not None:
                    where.append(is_version(table, version_id))
                elif table is _ov:
                    return None
                row = await first(conn, sa.select(table).where(*where).with_for_update())
                if row is None:
                    continue
                version = codec.object_version(row)
                if version.delete_marker:
                    return None
                retention, hold = change(version)
                await conn.execute(
                    table.update().where(*where).values(**codec.lock_values(retention, hold))
                )
                return replace(version, retention=retention, legal_hold=hold)
            return None

        return await self._tx.write(op)

    async def locked_under_key(
        self, tenant: str, key_id: str, now: dt.datetime
    ) -> tuple[str, str, dt.datetime | None] | None:
        """A version of ``tenant`` that a COMPLIANCE retention or a legal hold protects now
        and whose bytes ``key_id`` seals: (bucket, key, retained until, or None for a legal
        hold). None when there is none. Scans the locked versions of the tenant's buckets."""
        needle = f'%"k":"{key_id}"%'

        async def op(conn: AsyncConnection) -> Row | None:
            for table in (_o, _ov):
                locked = sa.or_(
                    table.c.legal_hold.is_(sa.true()),
                    sa.and_(table.c.lock_mode == "COMPLIANCE", table.c.lock_until > now),
                )
                query = (
                    sa.select(table.c.bucket, table.c.key, table.c.lock_until, table.c.legal_hold)
                    .join(t.buckets, t.buckets.c.name == table.c.bucket)
                    .where(t.buckets.c.tenant == tenant, locked, table.c.manifest.like(needle))
                    .order_by(table.c.lock_until.desc())
                    .limit(1)
                )
                row = await first(conn, query)
                if row is not None:
                    return row
            return None

        row = await self._tx.read(op)
        if row is not None:
            return row.bucket, row.key, None if row.legal_hold else row.lock_until
        return None

    async def noncurrent_versions(
        self, bucket: str, keys: list[str]
    ) -> dict[str, list[ObjectVersion]]:
        """The noncurrent versions (delete markers left out) of ``keys``, newest first."""
        if not keys:
            return {}
        query = (
            sa.select(_ov)
            .where(_ov.c.bucket == bucket, _ov.c.key.in_(keys), _ov.c.delete_marker.is_(sa.false()))
            .order_by(_ov.c.key, _ov.c.seq.desc())
        )
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        out: dict[str, list[ObjectVersion]] = {}
        for row in rows:
            out.setdefault(row.key, []).append(codec.object_version(row))
        return out


def _row_is(row: Row, version_id: str) -> bool:
    if version_id == NULL_VERSION:
        return bool(row.null_version)
    return not row.null_version and row.version_id == version_id


def _summary(row: Row) -> VersionSummary:
    checksum = codec.load_checksum(row.checksum)
    summary = ObjectSummary(
        key=row.key,
        size=row.size,
        etag=row.etag,
        last_modified=row.last_modified,
        storage_class=row.storage_class,
        owner=row.owner,
        checksum_algorithm=None if checksum is None else checksum.algorithm,
        checksum_type=None if checksum is None else checksum.type,
    )
    return VersionSummary(
        summary,
        NULL_VERSION if row.null_version else row.version_id,
        int(row.seq),
        bool(row.latest),
        bool(row.delete_marker),
    )
