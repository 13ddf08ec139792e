"""What the lifecycle job reads and writes in SQL: buckets' configurations, every version of
a page of keys, and uploads begun before a date."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from andromede.core import errors
from andromede.core.lifecycle import LifecycleConfig
from andromede.core.models import Bucket, MultipartUpload, ObjectVersion
from andromede.metadata import codec
from andromede.metadata import schema as t
from andromede.metadata.engines import Row, Transactions, all_rows, first, insert_if_absent
from andromede.metadata.lifecycle_records import dump_lifecycle

__all__ = ["LifecycleMixin"]


class LifecycleMixin:
    """Lifecycle methods of the metadata store."""

    _tx: Transactions

    async def set_bucket_lifecycle(self, name: str, config: LifecycleConfig | None) -> None:
        """Set (or with None remove) a bucket's lifecycle configuration. NoSuchBucket."""
        b = t.buckets
        text = None if config is None else dump_lifecycle(config)
        stmt = b.update().where(b.c.name == name).values(lifecycle=text).returning(b.c.name)
        if await self._tx.write(lambda conn: first(conn, stmt)) is None:
            raise errors.NoSuchBucket(BucketName=name)

    async def buckets_with_lifecycle(self) -> list[Bucket]:
        """Every bucket that has a lifecycle configuration, by name."""
        b = t.buckets
        query = sa.select(b).where(b.c.lifecycle.is_not(None)).order_by(b.c.name)
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.bucket(row) for row in rows]

    async def lifecycle_page(
        self, bucket: str, after_key: str, limit: int
    ) -> tuple[list[tuple[ObjectVersion, list[ObjectVersion]]], str | None]:
        """Up to ``limit`` keys after ``after_key``: each one's current version (a delete
        marker too) and its noncurrent versions, newest first; and the key to resume after
        (None: none left)."""
        o, ov = t.objects, t.object_versions
        current_q = (
            sa.select(o)
            .where(o.c.bucket == bucket, o.c.key > after_key)
            .order_by(o.c.key)
            .limit(limit)
        )

        async def op(conn: AsyncConnection) -> tuple[Sequence[Row], Sequence[Row]]:
            current = await all_rows(conn, current_q)
            if not current:
                return [], []
            older = (
                sa.select(ov)
                .where(ov.c.bucket == bucket, ov.c.key > after_key, ov.c.key <= current[-1].key)
                .order_by(ov.c.key, ov.c.seq.desc())
            )
            return current, await all_rows(conn, older)

        current, noncurrent = await self._tx.read(op)
        history: dict[str, list[ObjectVersion]] = {}
        for row in noncurrent:
            history.setdefault(row.key, []).append(codec.object_version(row))
        page = [(codec.object_version(row), history.get(row.key, [])) for row in current]
        return page, current[-1].key if len(current) == limit else None

    async def uploads_started_before(
        self, bucket: str, before: dt.datetime, limit: int
    ) -> list[MultipartUpload]:
        """Up to ``limit`` of the bucket's uploads in progress begun before ``before``,
        oldest first."""
        u = t.uploads
        query = (
            sa.select(u)
            .where(u.c.bucket == bucket, u.c.initiated < before)
            .order_by(u.c.initiated, u.c.upload_id)
            .limit(limit)
        )
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.upload(row) for row in rows]

    async def save_job_progress(self, job: str, text: str) -> None:
        """Keep what a background job's pass has done so far (JSON), for operators."""
        j = t.job_state
        name = f"progress:{job}"

        async def op(conn: AsyncConnection) -> None:
            stmt = j.update().where(j.c.name == name).values(value=text).returning(j.c.name)
            if await first(conn, stmt) is None:
                await insert_if_absent(conn, j, {"name": name, "value": text}, [j.c.name])

        await self._tx.write(op)

    async def job_progress(self, job: str) -> str | None:
        """What ``save_job_progress`` kept last for ``job``, or None."""
        j = t.job_state
        query = sa.select(j.c.value).where(j.c.name == f"progress:{job}")
        row = await self._tx.read(lambda conn: first(conn, query))
        return None if row is None else str(row.value)
