"""Garbage collection of blobs: queued garbage, abandoned temporary files, orphan blobs."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Protocol

from andromede.core.placement import Layout
from andromede.ports import Clock, FullStore, SiteBackend

log = logging.getLogger("andromede.janitor")
_BATCH = 500


class Sites(Protocol):
    """What the janitor needs of the site registry."""

    def physical(self) -> dict[str, SiteBackend]:
        """Every registered site's backend."""
        ...

    def backend(self, layout: Layout) -> SiteBackend:
        """The backend of a blob's layout (a site's own, or one over several sites)."""
        ...

    def unreachable(self) -> frozenset[str]:
        """Sites this process could not reach at its last look."""
        ...


class Janitor:
    """Removes data that nothing references any more, never data that something does."""

    def __init__(
        self,
        store: FullStore,
        sites: Sites,
        clock: Clock,
        *,
        garbage_grace: dt.timedelta,
        temp_grace: dt.timedelta,
        orphan_scan_interval: dt.timedelta = dt.timedelta(hours=1),
    ) -> None:
        self._store = store
        self._sites = sites
        self._clock = clock
        self._garbage_grace = garbage_grace
        self._temp_grace = temp_grace
        self._orphan_interval = orphan_scan_interval
        self._last_orphan_scan: dt.datetime | None = None

    async def collect_garbage(self) -> int:
        """Delete queued blobs whose grace period (for in-flight readers) has passed.

        Only on sites this process reaches: a blob on a site it cannot reach (down, or not
        mounted on this host) stays queued, for a later pass or another process, instead of
        being dropped from the queue as if deleted; the other sites' garbage goes on."""
        total = 0
        skip = set(self._sites.unreachable())
        while True:
            due = await self._store.due_garbage(self._clock.now(), _BATCH, skip)
            if not due:
                return total
            done = []
            for blob in due:
                try:
                    site = self._sites.backend(blob.layout)
                except KeyError:  # its site was removed: nothing left to delete
                    log.warning("garbage on unknown site %s: %s", blob.layout.sites, blob.blob_id)
                    done.append(blob)
                    continue
                try:
                    await site.delete(blob.blob_id)
                except OSError as exc:
                    log.warning(
                        "garbage on %s kept for a later pass: %s", ",".join(blob.layout.sites), exc
                    )
                    skip.update(blob.layout.sites)
                    continue
                done.append(blob)
            await self._store.forget_garbage(done)
            total += len(done)
            if len(due) < _BATCH and len(done) == len(due):
                return total

    async def sweep_temporary(self, older_than: dt.datetime) -> int:
        """Remove interrupted writes' temporary files."""
        sites = self._sites.physical().values()
        total = 0
        for site in sites:
            try:
                total += await site.sweep_temporary(older_than)
            except OSError as exc:
                log.warning("cannot sweep site %s: %s", site.name, exc)
        return total

    async def remove_orphans(self, older_than: dt.datetime) -> int:
        """Delete committed blobs that no metadata references (a crash between the data
        commit and the metadata commit leaves these)."""
        removed = 0
        for site in self._sites.physical().values():
            batch: list[str] = []
            try:
                async for blob_id in site.list_blobs(older_than):
                    batch.append(blob_id)
                    if len(batch) >= _BATCH:
                        removed += await self._remove_unreferenced(site, batch)
                        batch = []
                removed += await self._remove_unreferenced(site, batch)
            except OSError as exc:
                log.warning("cannot scan site %s: %s", site.name, exc)
        return removed

    async def _remove_unreferenced(self, site: SiteBackend, batch: list[str]) -> int:
        """A file on a site is live when something names its blob id with a layout (or the
        plain site name) that includes this site."""
        if not batch:
            return 0
        named = await self._store.blob_layouts(batch)
        dead = [
            blob_id
            for blob_id in batch
            if not any(site.name in layout.sites for layout in named.get(blob_id, ()))
        ]
        for blob_id in dead:
            await site.delete(blob_id)
        # Give requests a turn between batches: the scan may cover millions of blobs.
        await asyncio.sleep(0)
        return len(dead)

    async def sweep(self, *, at_start: bool = False) -> dict[str, int]:
        """One full pass. ``at_start``: no write can be in flight (single host, before
        workers start), so every leftover is removed regardless of age."""
        now = self._clock.now()
        temp_cut = now if at_start else now - self._temp_grace
        # A committed blob is unreferenced until its write's metadata commits: orphans get
        # the grace of in-flight writes, not the (possibly short) one of in-flight reads.
        orphan_cut = now if at_start else now - max(self._temp_grace, self._garbage_grace)
        result = {
            "garbage": await self.collect_garbage(),
            "temporary": await self.sweep_temporary(temp_cut),
            "orphans": 0,
        }
        # Orphans only appear after a crash between the data and the metadata commits; the
        # scan reads every blob id, so it runs at start and then rarely.
        last = self._last_orphan_scan
        if at_start or last is None or now - last >= self._orphan_interval:
            result["orphans"] = await self.remove_orphans(orphan_cut)
            self._last_orphan_scan = now
        if any(result.values()):
            log.info("sweep: %s", result)
        return result
