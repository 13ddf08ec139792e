"""Keeping data whole and in place: repair of degraded blobs, the scrubber, and site drains.

Every move obeys the residency policy of the bucket the blob belongs to: a shard is rebuilt on
its own site when that site is healthy, active and allowed, else on another allowed site that
holds no shard of the blob; when there is none, the blob stays as it is and the job says why.
A move writes the new shard durably first, then points the metadata at it (a compare-and-swap
that loses to any write replacing the object), and only then deletes the old shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import cast

from andromede.auth.policy import require_operator
from andromede.core import errors
from andromede.core.models import BlobRef, Principal
from andromede.core.placement import (
    Layout,
    Region,
    SiteState,
    choose_replacement,
    layout_allowed,
)
from andromede.core.repair import (
    DrainProgress,
    DrainState,
    Outcome,
    OutcomeCounts,
    RepairTotals,
    ScrubState,
)
from andromede.ports import Clock, FullStore, ShardSet, SiteBackend
from andromede.services.placement import Placement

log = logging.getLogger("andromede.repair")
_PAGE = 200
# The scrubber's pace counts each blob it verifies as at least this many bytes: its shard
# reads, frame checks and metadata cost CPU whatever its size, and a store of small objects
# paced by bytes alone would be re-read at thousands of blobs a second, taking the cores the
# requests need.
SCRUB_BLOB_FLOOR = 256 << 10


@dataclass(frozen=True)
class Health:
    """The shards of one blob that are not right, and the size the right ones have."""

    bad: tuple[int, ...]
    size: int | None


@dataclass(frozen=True)
class RepairStatus:
    """What ``repair status`` shows."""

    degraded_blobs: int  # queued for repair
    bytes_at_risk: int  # object bytes of the first 1000 queued blobs
    scrub: ScrubState | None  # None: the scrubber never ran
    repair: RepairTotals | None  # None: no repair round ever reported
    drains: dict[str, DrainProgress]  # by site


class Repairs:
    """Repair, scrub and drain, run by one process per deployment (the sweeper's)."""

    def __init__(
        self, store: FullStore, placement: Placement, clock: Clock, *, scrub_rate: float
    ) -> None:
        self._store = store
        self._placement = placement
        self._clock = clock
        self._scrub_rate = scrub_rate
        self._counts: Counter[str] = Counter()
        self._saved: Counter[str] = Counter()

    # --- one blob -----------------------------------------------------------------------------
    def _shards(self, layout: Layout) -> ShardSet:
        return cast(ShardSet, self._placement.backend(layout))

    async def health(self, ref: BlobRef) -> Health:
        """Check every shard of a framed blob: size, header, every frame's checksum."""
        shards = self._shards(ref.layout)
        sizes = await shards.shard_sizes(ref.blob_id)
        known = Counter(s for s in sizes if s is not None)
        if not known:
            return Health(tuple(range(len(sizes))), None)
        size = known.most_common(1)[0][0]
        bad = []
        for index, found in enumerate(sizes):
            if found != size or not await shards.verify_shard(ref.blob_id, index, size):
                bad.append(index)
        self._counts["bytes_checked"] += size * (len(sizes) - len(bad))
        return Health(tuple(bad), size)

    async def _region(self, ref: BlobRef) -> Region | None:
        """The policy of the bucket the blob belongs to (None: nothing names it now)."""
        names = await self._store.blob_buckets(ref)
        regions = []
        for name in sorted(names):
            bucket = await self._store.get_bucket(name)
            if bucket is not None:
                regions.append(self._placement.region_of(bucket))
        if not regions:
            return None
        if len({r.name for r in regions}) > 1:
            log.warning("blob %s is named in buckets of several regions: %s", ref, names)
        return regions[0]

    def _keeps(self, region: Region, site: str) -> bool:
        """A shard may stay (or be rebuilt) on ``site``."""
        known = self._placement.sites.get(site)
        return (
            known is not None
            and known.state is SiteState.ACTIVE
            and region.allows(known)
            and site not in self._placement.unavailable()
            and site in self._placement.physical()
        )

    # One return per outcome, in the order they are decided.
    async def repair(  # noqa: PLR0911
        self, ref: BlobRef, *, leave: str | None = None, health: Health | None = None
    ) -> Outcome:
        """Make a blob whole: rebuild bad shards (and the shard on ``leave``, when draining)
        on allowed sites; move the metadata if a shard changed site. ``health``: the check
        the caller just made (the scrubber), so the shards are not read twice for it."""
        layout = ref.layout
        if not layout.framed:
            return await self._move_single(ref, leave) if leave else Outcome.HEALTHY
        region = await self._region(ref)
        if region is None:
            return Outcome.VANISHED
        if health is None:
            health = await self.health(ref)
        wanted = set(health.bad)
        if leave is not None and leave in layout.sites:
            wanted.add(layout.sites.index(leave))
        if not wanted:
            return Outcome.HEALTHY
        if len(health.bad) > layout.redundancy.tolerates or health.size is None:
            log.error("blob %s lost: shards %s unreadable", ref, health.bad)
            return Outcome.LOST
        target = self._target(ref, region, sorted(wanted), leave)
        if target is None:
            return Outcome.BLOCKED
        source = self._shards(layout)
        rebuilt = await source.rebuild(
            ref.blob_id, health.size, sorted(wanted), self._shards(target)
        )
        self._counts["bytes_rebuilt"] += rebuilt
        if target == layout:
            return Outcome.REPAIRED
        return await self._relocate(ref, target)

    def _target(
        self, ref: BlobRef, region: Region, wanted: list[int], leave: str | None
    ) -> Layout | None:
        """Where shards ``wanted`` go: in place where their site may keep them, elsewhere
        within the region's policy otherwise; None when the policy leaves nowhere."""
        target = ref.layout
        for index in wanted:
            site = target.sites[index]
            if site != leave and self._keeps(region, site):
                continue  # rebuilt in place
            try:
                target = target.moved(
                    index,
                    choose_replacement(region, self._placement.candidates(), target, index),
                )
            except errors.PlacementImpossible as exc:
                log.warning("blob %s: shard %d cannot move: %s", ref, index, exc)
                return None
        return target if layout_allowed(region, target, self._placement.sites) else None

    async def _relocate(self, ref: BlobRef, target: Layout) -> Outcome:
        """Point the metadata at the rebuilt shards' new sites, then drop the old shards (or
        the new ones, when the object changed meanwhile)."""
        layout = ref.layout
        moved = [i for i in range(len(layout.sites)) if layout.sites[i] != target.sites[i]]
        if not await self._store.relocate_blob(ref, BlobRef(target, ref.blob_id)):
            for index in moved:  # the object changed meanwhile: drop what was written
                await self._delete_on(target.sites[index], ref.blob_id)
            return Outcome.VANISHED
        for index in moved:
            await self._delete_on(layout.sites[index], ref.blob_id)
        return Outcome.MOVED

    async def _delete_on(self, site: str, blob_id: str) -> None:
        try:
            await self._placement.site_backend(site).delete(blob_id)
        except (OSError, KeyError) as exc:  # an orphan for the sweeper
            log.warning("could not delete %s on %s: %s", blob_id, site, exc)

    async def _move_single(self, ref: BlobRef, leave: str) -> Outcome:
        """Copy a one-copy blob (the site's own format) whole to another allowed site."""
        region = await self._region(ref)
        if region is None:
            return Outcome.VANISHED
        try:
            name = choose_replacement(region, self._placement.candidates(), ref.layout, 0)
        except errors.PlacementImpossible:
            return Outcome.BLOCKED
        source = self._placement.site_backend(ref.layout.sites[0])
        target = self._placement.site_backend(name)
        size = await source.size(ref.blob_id)
        await _copy(source, target, ref.blob_id, size)
        self._counts["bytes_rebuilt"] += size
        if not await self._store.relocate_blob(ref, BlobRef(Layout.single(name), ref.blob_id)):
            await self._delete_on(name, ref.blob_id)
            return Outcome.VANISHED
        await self._delete_on(leave, ref.blob_id)
        return Outcome.MOVED

    # --- jobs ---------------------------------------------------------------------------------
    async def repair_queued(self, limit: int = _PAGE) -> dict[str, int]:
        """Repair the blobs reads found degraded."""
        done: Counter[str] = Counter()
        queued = await self._store.queued_repairs(limit)
        for ref in queued:
            outcome = await self._attempt(ref)
            done[outcome.value] += 1
            if outcome in (Outcome.HEALTHY, Outcome.REPAIRED, Outcome.MOVED, Outcome.VANISHED):
                await self._store.forget_repairs([ref])
        return dict(done)

    async def _attempt(
        self, ref: BlobRef, leave: str | None = None, health: Health | None = None
    ) -> Outcome:
        try:
            outcome = await self.repair(ref, leave=leave, health=health)
        except errors.ShardsUnavailable:
            outcome = Outcome.UNAVAILABLE
        except (errors.AndromedeError, OSError) as exc:
            log.warning("repair of %s failed: %s", ref, exc)
            outcome = Outcome.UNAVAILABLE
        self._counts[outcome.value] += 1
        return outcome

    async def drain(self, site: str) -> DrainProgress:
        """One pass over the blobs with a shard on ``site``: move each away, saving progress
        after every page (``site list`` and ``repair status`` show it while it runs)."""
        moved = failed = 0
        blocked: set[str] = set()
        after: BlobRef | None = None
        while True:
            page = await self._store.blobs_after(after, _PAGE, site=site)
            for ref in page:
                outcome = await self._attempt(ref, leave=site)
                if outcome is Outcome.MOVED:
                    moved += 1
                elif outcome is Outcome.BLOCKED:
                    blocked.update(await self._store.blob_buckets(ref))
                elif outcome not in (Outcome.VANISHED, Outcome.HEALTHY):
                    failed += 1
            if len(page) < _PAGE:
                break
            after = page[-1]
            remaining = await self._remaining(site)
            progress = DrainProgress(
                DrainState.RUNNING,
                moved,
                tuple(sorted(blocked)),
                failed,
                remaining,
                self._clock.now(),
            )
            await self._store.set_site_progress(site, progress)
        remaining = await self._remaining(site)
        if remaining == 0:
            state = DrainState.DONE
        else:
            state = DrainState.BLOCKED if blocked else DrainState.RUNNING
        progress = DrainProgress(
            state, moved, tuple(sorted(blocked)), failed, remaining, self._clock.now()
        )
        await self._store.set_site_progress(site, progress)
        return progress

    async def _remaining(self, site: str) -> int:
        """Live blobs with a shard on ``site``."""
        counts = await self._store.layout_counts()
        return sum(n for layout, n in counts.items() if site in layout.sites)

    async def drain_all(self) -> None:
        """Drain every draining site."""
        await self._placement.refresh(force=True)
        for site in list(self._placement.sites.values()):
            if site.state is SiteState.DRAINING:
                await self.drain(site.name)

    async def scrub(self, budget_s: float, *, full: bool = False) -> ScrubState:
        """Verify blobs from where the last call stopped, for about ``budget_s`` seconds at
        most ``scrub_rate`` bytes a second; repairs what it finds. ``full``: one whole pass
        from the start, at full speed."""
        state = await self._store.scrub_state() or ScrubState()
        # The resume point is a blob id (the layout is the store's to write down).
        after_id = "" if full else state.blob_id
        if full:
            budget_s = float("inf")
        after: BlobRef | None = None
        deadline = time.monotonic() + budget_s
        start_bytes = self._counts["bytes_checked"]
        began = time.monotonic()
        visited = 0
        while time.monotonic() < deadline:
            page = await self._store.blobs_after(after, _PAGE, after_id=after_id, framed_only=True)
            if not page:
                state = replace(
                    state, passes=state.passes + 1, last_pass_finished=self._clock.now()
                )
                after, after_id = None, ""
                break
            for ref in page:
                after = ref
                if ref.layout.framed:
                    health = await self.health(ref)
                    visited += 1
                    state = replace(state, checked=state.checked + 1)
                    if health.bad:
                        state = state.found(await self._attempt(ref, health=health))
                if self._scrub_rate > 0 and not full:
                    read = self._counts["bytes_checked"] - start_bytes
                    done = max(read, visited * SCRUB_BLOB_FLOOR)
                    ahead = done / self._scrub_rate - (time.monotonic() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                if time.monotonic() >= deadline:
                    break
        state = replace(
            state,
            blob_id=after.blob_id if after else after_id,
            bytes_checked=state.bytes_checked + self._counts["bytes_checked"] - start_bytes,
        )
        await self._store.set_scrub_state(state)
        return state

    async def run_once(self, scrub_budget_s: float = 5.0) -> None:
        """One round: queued repairs, drains, then some scrubbing (``workers/loop.py`` runs
        it periodically in one process per deployment)."""
        await self.repair_queued()
        await self.drain_all()
        if self._scrub_rate > 0:
            await self.scrub(scrub_budget_s)
        await self._save_counters()

    async def run_now(self, principal: Principal) -> None:
        """One round on demand (operators): repairs, drains, a whole scrub pass."""
        require_operator(principal)
        await self.repair_queued()
        await self.drain_all()
        await self.scrub(0, full=True)
        await self.repair_queued()
        await self._save_counters()

    async def _save_counters(self) -> None:
        """Add what this process did since its last save to the stored totals."""
        keys = ("bytes_rebuilt", *(o.value for o in Outcome))
        deltas = {k: self._counts[k] - self._saved[k] for k in keys}
        done = RepairTotals(deltas["bytes_rebuilt"], OutcomeCounts.of(deltas), self._clock.now())
        await self._store.add_repair_totals(done)
        self._saved = Counter({k: self._counts[k] for k in keys})

    # --- status -------------------------------------------------------------------------------
    async def status(self, principal: Principal) -> RepairStatus:
        """Degraded blobs waiting, bytes at risk, the jobs' progress."""
        require_operator(principal)
        queued = await self._store.queued_repairs(1000)
        at_risk = 0
        for ref in queued:
            with contextlib.suppress(errors.AndromedeError, OSError, ValueError, KeyError):
                layout = ref.layout
                shard = await self._placement.backend(layout).size(ref.blob_id)
                at_risk += shard * (layout.redundancy.k if layout.redundancy.erasure else 1)
        drains = await self._store.site_progress()
        return RepairStatus(
            degraded_blobs=await self._store.count_repairs(),
            bytes_at_risk=at_risk,
            scrub=await self._store.scrub_state(),
            repair=await self._store.repair_totals(),
            drains=drains,
        )


async def _copy(source: SiteBackend, target: SiteBackend, blob_id: str, size: int) -> None:
    """Copy a blob's bytes as they are, durably (commit before returning)."""
    writer = await target.create(blob_id)
    try:
        async for piece in source.read(blob_id, 0, size):
            await writer.write(piece)
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise
