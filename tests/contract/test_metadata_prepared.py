"""Prepared point reads (``engines.Prepared``): on SQLite they run straight on the driver,
so they must give what the same SELECT gives through SQLAlchemy, conversions included."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from andromede.core.models import Manifest, ObjectVersion
from andromede.metadata import schema as t
from andromede.metadata.engines import Prepared, first
from andromede.metadata.sql import SqlMetadataStore

PARIS = dt.timezone(dt.timedelta(hours=2))
STAMP = dt.datetime(2024, 5, 6, 9, 8, 9, 123000, tzinfo=PARIS)

BY_KEY = sa.select(t.objects).where(
    t.objects.c.bucket == sa.bindparam("bucket"), t.objects.c.key == sa.bindparam("key")
)
# A bind that needs converting (an aware datetime to the stored form) and a computed column.
BY_TIME = sa.select(
    t.objects.c.key, t.objects.c.last_modified, sa.func.length(t.objects.c.key).label("key_length")
).where(t.objects.c.last_modified == sa.bindparam("at", type_=t.UtcDateTime()))


async def test_a_prepared_read_gives_what_the_query_gives(
    store: SqlMetadataStore, bucket: str
) -> None:
    await store.put_object(ObjectVersion(bucket, "dir/é 100%", "v", 3, "e", STAMP, Manifest(())))
    tx = store._tx
    for stmt, params in (
        (BY_KEY, {"bucket": bucket, "key": "dir/é 100%"}),
        (BY_TIME, {"at": STAMP}),
    ):
        prepared = Prepared(stmt)
        row = await tx.read_row(prepared, params)
        expected = await tx.read(lambda conn, s=stmt, p=params: first(conn, s, p))
        assert row is not None
        assert expected is not None
        assert tuple(row) == tuple(expected)
        assert row._fields == tuple(expected._fields)
        assert row.last_modified == STAMP
        assert row.last_modified.utcoffset() == dt.timedelta(0)
    assert await tx.read_row(Prepared(BY_KEY), {"bucket": bucket, "key": "missing"}) is None
