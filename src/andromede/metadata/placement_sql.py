"""The metadata store's part in placement: sites, regions, the repair queue, job state, and
moving a blob's shards (the one write that changes which sites a live blob names).

A mixin of :class:`andromede.metadata.sql.SqlMetadataStore`, with its rules: each public
method is one transaction; locks follow the order bucket, upload, object, part.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from andromede.core import errors
from andromede.core.models import BlobRef
from andromede.core.placement import Layout, Redundancy, Region, Site, SiteState
from andromede.core.repair import DrainProgress, RepairTotals, ScrubState
from andromede.metadata import codec, records, references
from andromede.metadata import schema as t
from andromede.metadata.engines import Row, Transactions, all_rows, first, insert_if_absent

__all__ = ["PlacementMixin"]

# The job_state rows (names kept from when the jobs named their own rows).
SCRUB = "scrub"
REPAIR = "repair"


def _site(row: Row) -> Site:
    return Site(
        row.name,
        row.jurisdiction,
        row.failure_domain,
        row.provider,
        row.path,
        SiteState(row.state),
    )


def _region(row: Row) -> Region:
    return Region(
        row.name,
        frozenset(row.jurisdictions.split(",")),
        Redundancy.parse(row.redundancy),
        int(row.min_failure_domains),
    )


class PlacementMixin:
    """Placement methods of the metadata store; needs the store's ``_tx``."""

    _tx: Transactions

    # --- sites --------------------------------------------------------------------------------
    async def create_site(self, site: Site, created: dt.datetime) -> None:
        """Register a site. SiteAlreadyExists when its name or path is taken."""
        s = t.sites
        values = {
            "name": site.name,
            "jurisdiction": site.jurisdiction,
            "failure_domain": site.failure_domain,
            "provider": site.provider,
            "path": site.path,
            "state": site.state.value,
            "created": created,
            "progress": None,
        }

        async def op(conn: AsyncConnection) -> None:
            same_path = await first(conn, sa.select(s.c.name).where(s.c.path == site.path))
            if same_path is not None or not await insert_if_absent(conn, s, values, [s.c.name]):
                raise errors.SiteAlreadyExists(Site=site.name)

        await self._tx.write(op)

    async def list_sites(self) -> list[Site]:
        """Every site, by name."""
        rows = await self._tx.read(
            lambda conn: all_rows(conn, sa.select(t.sites).order_by(t.sites.c.name))
        )
        return [_site(row) for row in rows]

    async def site_progress(self) -> dict[str, DrainProgress]:
        """Drain progress by site name (sites that have some)."""
        s = t.sites
        query = sa.select(s.c.name, s.c.progress).where(s.c.progress.is_not(None))
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return {row.name: records.load_drain_progress(row.progress) for row in rows}

    async def set_site_state(
        self, name: str, state: SiteState, progress: DrainProgress | None = None
    ) -> None:
        """Change a site's state (and its drain progress). NoSuchSite."""
        s = t.sites
        text = None if progress is None else records.dump_drain_progress(progress)
        stmt = (
            s.update()
            .where(s.c.name == name)
            .values(state=state.value, progress=text)
            .returning(s.c.name)
        )
        if await self._tx.write(lambda conn: first(conn, stmt)) is None:
            raise errors.NoSuchSite(Site=name)

    async def set_site_progress(self, name: str, progress: DrainProgress) -> None:
        """Record the drain job's progress on a site (no error if it vanished)."""
        s = t.sites
        text = records.dump_drain_progress(progress)
        stmt = s.update().where(s.c.name == name).values(progress=text)
        await self._tx.write(lambda conn: conn.execute(stmt))

    async def delete_site(self, name: str) -> None:
        """Forget a site. NoSuchSite; SiteNotDrained while a live blob (a version's or a
        part's) still names it. Blobs only queued for deletion do not hold a site back: their
        shards there are left to whoever wipes the site's directory."""
        s = t.sites

        async def op(conn: AsyncConnection) -> None:
            row = await first(conn, sa.select(s.c.name).where(s.c.name == name).with_for_update())
            if row is None:
                raise errors.NoSuchSite(Site=name)
            for table in (t.object_blobs, t.parts):
                query = (
                    sa.select(table.c.site).where(codec.naming_site(table.c.site, name)).limit(1)
                )
                if await first(conn, query) is not None:
                    raise errors.SiteNotDrained(Site=name)
            await conn.execute(s.delete().where(s.c.name == name))

        await self._tx.write(op)

    # --- regions ------------------------------------------------------------------------------
    async def create_region(self, region: Region, created: dt.datetime) -> None:
        """Register a region. RegionAlreadyExists."""
        r = t.regions
        values = {
            "name": region.name,
            "jurisdictions": ",".join(region.jurisdiction_list()),
            "redundancy": str(region.redundancy),
            "min_failure_domains": region.min_failure_domains,
            "created": created,
        }

        async def op(conn: AsyncConnection) -> None:
            if not await insert_if_absent(conn, r, values, [r.c.name]):
                raise errors.RegionAlreadyExists(Region=region.name)

        await self._tx.write(op)

    async def list_regions(self) -> list[Region]:
        """Every region, by name."""
        rows = await self._tx.read(
            lambda conn: all_rows(conn, sa.select(t.regions).order_by(t.regions.c.name))
        )
        return [_region(row) for row in rows]

    # --- blobs by layout ----------------------------------------------------------------------
    async def blobs_after(
        self,
        after: BlobRef | None,
        limit: int,
        site: str | None = None,
        *,
        after_id: str = "",
        framed_only: bool = False,
    ) -> list[BlobRef]:
        """Blobs a current version or a part names, by (blob id, stored layout), after
        ``after`` and with ids after ``after_id``; with ``site``, only those whose layout
        names that site; with ``framed_only``, only redundant (framed) layouts.

        Each table is read in index order and stops at ``limit`` rows, and the two pages
        are merged here: a UNION ordered as a whole would sort every live blob after
        ``after`` for each page, which made a scrub pass quadratic in the catalogue."""
        selects = []
        for table in (t.object_blobs, t.parts):
            query = sa.select(table.c.blob_id, table.c.site)
            if site is not None:
                query = query.where(codec.naming_site(table.c.site, site))
            if framed_only:
                # A framed layout is stored as ``scheme:site,...``; a one-copy one as a name.
                query = query.where(table.c.site.like("%:%"))
            if after is not None:
                position = (sa.literal(after.blob_id), sa.literal(codec.dump_layout(after.layout)))
                query = query.where(sa.tuple_(table.c.blob_id, table.c.site) > sa.tuple_(*position))
            if after_id:
                query = query.where(table.c.blob_id > after_id)
            selects.append(query.order_by(table.c.blob_id, table.c.site).limit(limit))

        async def op(conn: AsyncConnection) -> list[tuple[str, str]]:
            pairs: set[tuple[str, str]] = set()
            for query in selects:
                pairs.update((row.blob_id, row.site) for row in await all_rows(conn, query))
            return sorted(pairs)[:limit]

        pairs = await self._tx.read(op)
        return [codec.blob_ref(layout, blob_id) for blob_id, layout in pairs]

    async def blob_buckets(self, blob: BlobRef) -> set[str]:
        """The buckets whose objects or uploads name ``blob``."""
        ob, p, u = t.object_blobs, t.parts, t.uploads
        text = codec.dump_layout(blob.layout)

        async def op(conn: AsyncConnection) -> set[str]:
            found = await all_rows(
                conn,
                sa.select(ob.c.bucket).where(ob.c.site == text, ob.c.blob_id == blob.blob_id),
            )
            via_parts = await all_rows(
                conn,
                sa.select(u.c.bucket)
                .join(p, p.c.upload_id == u.c.upload_id)
                .where(p.c.site == text, p.c.blob_id == blob.blob_id),
            )
            return {row.bucket for row in (*found, *via_parts)}

        return await self._tx.read(op)

    async def blob_layouts(self, blob_ids: Sequence[str]) -> dict[str, set[Layout]]:
        """For each of ``blob_ids`` that anything (a version, a part, the garbage queue)
        names: the layouts naming it."""
        out: dict[str, set[Layout]] = {}
        ids = list(dict.fromkeys(blob_ids))

        async def op(conn: AsyncConnection) -> None:
            for start in range(0, len(ids), references.CHUNK):
                chunk = ids[start : start + references.CHUNK]
                for table in (t.object_blobs, t.parts, t.garbage):
                    query = sa.select(table.c.site, table.c.blob_id).where(
                        table.c.blob_id.in_(chunk)
                    )
                    for row in await all_rows(conn, query):
                        layout = codec.load_layout(row.site)
                        out.setdefault(row.blob_id, set()).add(layout)

        await self._tx.read(op)
        return out

    async def layout_counts(self) -> dict[Layout, int]:
        """How many distinct live blobs (versions' and parts') each layout holds."""
        both = sa.union(
            sa.select(t.object_blobs.c.site, t.object_blobs.c.blob_id),
            sa.select(t.parts.c.site, t.parts.c.blob_id),
        ).subquery()
        query = sa.select(both.c.site, sa.func.count().label("n")).group_by(both.c.site)
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return {codec.load_layout(row.site): int(row.n) for row in rows}

    async def relocate_blob(self, old: BlobRef, new: BlobRef) -> bool:
        """Make every live reference to ``old`` name ``new`` instead (same blob id, shards
        moved): the manifests of versions (current or not), their blob index, parts;
        atomically. False when nothing
        live names ``old`` any more (the object was replaced or deleted meanwhile)."""
        if old.blob_id != new.blob_id:
            raise ValueError("relocation keeps the blob id")
        ob, o, p = t.object_blobs, t.objects, t.parts
        old_site, new_site = codec.dump_layout(old.layout), codec.dump_layout(new.layout)

        async def op(conn: AsyncConnection) -> bool:
            names = (ob.c.site == old_site, ob.c.blob_id == old.blob_id)
            owners = await all_rows(conn, sa.select(ob.c.bucket, ob.c.key).where(*names))
            for owner in owners:
                # The current version, or one of the key's noncurrent ones.
                for table in (o, t.object_versions):
                    where = (table.c.bucket == owner.bucket, table.c.key == owner.key)
                    rows = await all_rows(
                        conn,
                        sa.select(table.c.version_id, table.c.manifest)
                        .where(*where)
                        .with_for_update(),
                    )
                    for row in rows:
                        manifest = codec.load_manifest(row.manifest)
                        if old not in manifest.blobs():
                            continue
                        segments = tuple(
                            replace(s, blob=new) if s.blob == old else s for s in manifest.segments
                        )
                        moved = replace(manifest, segments=segments)
                        await conn.execute(
                            table.update()
                            .where(*where, table.c.version_id == row.version_id)
                            .values(manifest=codec.dump_manifest(moved))
                        )
            if owners:
                await conn.execute(ob.update().where(*names).values(site=new_site))
            parts = await conn.execute(
                p.update()
                .where(p.c.site == old_site, p.c.blob_id == old.blob_id)
                .values(site=new_site)
            )
            await conn.execute(
                t.repairs.delete().where(
                    t.repairs.c.site == old_site, t.repairs.c.blob_id == old.blob_id
                )
            )
            return bool(owners) or bool(parts.rowcount)

        return await self._tx.write(op)

    # --- repair queue and job state -----------------------------------------------------------
    async def queue_repairs(self, blobs: Iterable[BlobRef], now: dt.datetime) -> None:
        """Queue blobs a read found degraded (one already queued stays as it is)."""
        r = t.repairs
        for blob in references.unique(blobs):
            values: dict[str, object] = {**codec.blob_values(blob), "queued": now}

            async def op(conn: AsyncConnection, values: dict[str, object] = values) -> None:
                await insert_if_absent(conn, r, values, [r.c.site, r.c.blob_id])

            await self._tx.write(op)

    async def queued_repairs(self, limit: int) -> list[BlobRef]:
        """The oldest queued repairs."""
        r = t.repairs
        query = sa.select(r.c.site, r.c.blob_id).order_by(r.c.queued).limit(limit)
        rows = await self._tx.read(lambda conn: all_rows(conn, query))
        return [codec.blob_ref(row.site, row.blob_id) for row in rows]

    async def count_repairs(self) -> int:
        """How many blobs wait for repair."""
        query = sa.select(sa.func.count().label("n")).select_from(t.repairs)
        row = await self._tx.read(lambda conn: first(conn, query))
        return int(row.n) if row is not None else 0

    async def forget_repairs(self, blobs: Iterable[BlobRef]) -> None:
        """Drop repaired (or vanished) blobs from the queue."""
        r = t.repairs

        async def op(conn: AsyncConnection) -> None:
            for chunk in references.chunks(references.unique(blobs)):
                await conn.execute(
                    r.delete().where(references.named((r.c.site, r.c.blob_id), chunk))
                )

        await self._tx.write(op)

    async def set_scrub_state(self, state: ScrubState) -> None:
        """Store where the scrubber stands."""
        j = t.job_state
        text = records.dump_scrub_state(state)

        async def op(conn: AsyncConnection) -> None:
            stmt = j.update().where(j.c.name == SCRUB).values(value=text).returning(j.c.name)
            if await first(conn, stmt) is None:
                await insert_if_absent(conn, j, {"name": SCRUB, "value": text}, [j.c.name])

        await self._tx.write(op)

    async def scrub_state(self) -> ScrubState | None:
        """Where the scrubber stands; None before its first run."""
        text = await self._job_state(SCRUB)
        return None if text is None else records.load_scrub_state(text)

    async def add_repair_totals(self, done: RepairTotals) -> None:
        """Add one process's repairs to the totals, in one transaction (several processes
        may report at once)."""
        j = t.job_state

        async def op(conn: AsyncConnection) -> None:
            for _ in range(2):  # a row another process inserted meanwhile: update it instead
                query = sa.select(j.c.value).where(j.c.name == REPAIR).with_for_update()
                row = await first(conn, query)
                before = RepairTotals() if row is None else records.load_repair_totals(row.value)
                text = records.dump_repair_totals(before + done)
                if row is not None:
                    await conn.execute(j.update().where(j.c.name == REPAIR).values(value=text))
                    return
                if await insert_if_absent(conn, j, {"name": REPAIR, "value": text}, [j.c.name]):
                    return

        await self._tx.write(op)

    async def repair_totals(self) -> RepairTotals | None:
        """What every process's repairs have done; None before any reported."""
        text = await self._job_state(REPAIR)
        return None if text is None else records.load_repair_totals(text)

    async def _job_state(self, name: str) -> str | None:
        j = t.job_state
        row = await self._tx.read(
            lambda conn: first(conn, sa.select(j.c.value).where(j.c.name == name))
        )
        return None if row is None else str(row.value)
