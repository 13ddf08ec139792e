"""Blob references: which rows name a blob, and queueing the blobs nothing names any more.

Runs inside the caller's transaction, so dropping a blob's last reference and queueing the blob
for deletion commit together: a crash can neither leak the blob nor delete a live one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from andromede.core.models import BlobRef
from andromede.metadata import codec
from andromede.metadata import schema as t
from andromede.metadata.engines import (
    Prepared,
    all_rows,
    first,
    insert_ignoring,
    run_prepared_many,
)

# Blobs per IN (...) list: far below SQLite's and asyncpg's bound-parameter limits.
CHUNK = 500


def unique(blobs: Iterable[BlobRef]) -> list[BlobRef]:
    """``blobs`` without repeats, in order."""
    return list(dict.fromkeys(blobs))


def chunks(blobs: list[BlobRef]) -> Iterator[list[BlobRef]]:
    """``blobs`` in slices of at most :data:`CHUNK`."""
    for i in range(0, len(blobs), CHUNK):
        yield blobs[i : i + CHUNK]


def named(
    columns: tuple[sa.Column[str], sa.Column[str]], blobs: list[BlobRef]
) -> sa.ColumnElement[bool]:
    """``(site, blob_id)`` columns equal to one of ``blobs``."""
    return sa.tuple_(*columns).in_([(codec.dump_layout(b.layout), b.blob_id) for b in blobs])


async def discard(conn: AsyncConnection, blobs: Iterable[BlobRef], due: dt.datetime) -> None:
    """Queue for deletion at ``due`` those of ``blobs`` no object version or part names."""
    candidates = unique(blobs)
    if len(candidates) == 1:  # the common case (a single-part object), with built statements
        blob = candidates[0]
        params = codec.blob_values(blob)
        if await first(conn, _LIVE_ONE, params) is None:
            await conn.execute(_ENQUEUE_ONE[conn.dialect.name], {**params, "due": due})
        return
    live: set[BlobRef] = set()
    for chunk in chunks(candidates):
        for table in (t.object_blobs, t.parts):
            columns = (table.c.site, table.c.blob_id)
            found = await all_rows(conn, sa.select(*columns).where(named(columns, chunk)))
            live.update(codec.blob_ref(row.site, row.blob_id) for row in found)
    await enqueue(conn, [b for b in candidates if b not in live], due)


async def enqueue(conn: AsyncConnection, blobs: Iterable[BlobRef], due: dt.datetime) -> None:
    """Queue ``blobs`` for deletion at ``due``; one already queued keeps its first due time."""
    g = t.garbage
    values = [{**codec.blob_values(b), "due": due} for b in unique(blobs)]
    if values:
        stmt = insert_ignoring(conn, g).on_conflict_do_nothing(
            index_elements=[g.c.site, g.c.blob_id]
        )
        await conn.execute(stmt, values)


async def forget(conn: AsyncConnection, blobs: Iterable[BlobRef]) -> None:
    """Remove ``blobs`` from the deletion queue."""
    g = t.garbage
    for chunk in chunks(unique(blobs)):
        await conn.execute(g.delete().where(named((g.c.site, g.c.blob_id), chunk)))


async def index_manifest(
    conn: AsyncConnection, bucket: str, key: str, blobs: Iterable[BlobRef]
) -> None:
    """Record that the current version of ``bucket``/``key`` names ``blobs``."""
    values = [{**codec.blob_values(b), "bucket": bucket, "key": key} for b in unique(blobs)]
    await run_prepared_many(conn, _INDEX, values)


_INDEX = Prepared(t.object_blobs.insert())


async def unindex_blobs(
    conn: AsyncConnection, bucket: str, key: str, blobs: Iterable[BlobRef]
) -> None:
    """Forget that a version of ``bucket``/``key`` (current or not) names ``blobs``; the
    key's other versions keep theirs."""
    ob = t.object_blobs
    where = (ob.c.bucket == bucket, ob.c.key == key)
    for chunk in chunks(unique(blobs)):
        await conn.execute(ob.delete().where(*where, named((ob.c.site, ob.c.blob_id), chunk)))


def _names_one(table: sa.Table) -> sa.Select[str]:
    return sa.select(table.c.blob_id).where(
        table.c.site == sa.bindparam("site"), table.c.blob_id == sa.bindparam("blob_id")
    )


_LIVE_ONE = sa.union_all(_names_one(t.object_blobs), _names_one(t.parts))
_ENQUEUE_ONE = {
    name: dialect_insert(t.garbage).on_conflict_do_nothing(
        index_elements=[t.garbage.c.site, t.garbage.c.blob_id]
    )
    for name, dialect_insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))
}
