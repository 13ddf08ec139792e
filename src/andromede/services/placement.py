"""Where data goes: the site registry, residency policies, and the operator's site and region
use cases.

Every gateway process keeps the registry (sites and regions, from the metadata store) fresh
within ``refresh_seconds``, so a site added or drained through one process steers every
other's placement shortly after. A write asks :meth:`Placement.target` for the layout of a
new blob: sites chosen under the bucket's region, or a refusal (PlacementImpossible) when
too few allowed sites are available — never a site outside the policy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from andromede.auth.policy import require_operator
from andromede.core import errors
from andromede.core.locations import RadosLocation, check_path, describe
from andromede.core.models import BlobRef, Bucket, Principal
from andromede.core.placement import (
    ANY_JURISDICTION,
    Candidates,
    Layout,
    Redundancy,
    Region,
    Site,
    SiteState,
    check_region_name,
    check_site_name,
    choose_sites,
)
from andromede.core.repair import DrainProgress
from andromede.ports import Clock, PlacementStore, ShardedFactory, SiteBackend

log = logging.getLogger("andromede.placement")

# A site whose write failed is left out of new placements this long (then tried again).
SITE_FAILURE_HOLD_S = 30.0
# How long ``site add`` waits for a new site to take a write.
SITE_CHECK_TIMEOUT_S = 30.0
# Layout backends kept built (each is a few objects; the set of layouts in use is small).
LAYOUT_CACHE = 4096


@dataclass(frozen=True)
class SiteView:
    """A site as ``site list`` shows it."""

    site: Site
    available: bool
    used_bytes: int | None
    free_bytes: int | None
    shards: int
    progress: DrainProgress | None  # None: never drained
    problem: str | None = None  # why it is unavailable, as its backend says


# Opens a registered site's backend; ``True``: create it if missing (registration only).
OpenSite = Callable[[Site, bool], SiteBackend]


class Placement:
    """The registry of sites and regions of one gateway process, and placement decisions."""

    def __init__(
        self,
        store: PlacementStore,
        clock: Clock,
        open_site: OpenSite,
        sharded: ShardedFactory,
        *,
        default_site: Site | None,
        default_region: Region,
        follow_default_site: bool = True,
        refresh_seconds: float = 2.0,
        reserve_bytes: int = 0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._open_site = open_site
        self._sharded = sharded
        self.default_site = default_site
        self._follow_default = follow_default_site
        self.default_region = default_region
        self._refresh_s = refresh_seconds
        self._sites: dict[str, Site] = {}
        self._regions: dict[str, Region] = {}
        self._backends: dict[str, SiteBackend] = {}
        self._layouts: collections.OrderedDict[Layout, SiteBackend] = collections.OrderedDict()
        self._failed: dict[str, float] = {}
        self._down: frozenset[str] = frozenset()
        self._unreachable: frozenset[str] = frozenset()
        self._reserve = reserve_bytes
        self._loaded_at = -1e9
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    # --- registry -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Register the default site and region on first start, then load the registry."""
        if self.default_site is not None:
            with contextlib.suppress(errors.SiteAlreadyExists):
                await self._store.create_site(self.default_site, self._clock.now())
        with contextlib.suppress(errors.RegionAlreadyExists):
            await self._store.create_region(self.default_region, self._clock.now())
        await self.refresh(force=True)

    async def refresh(self, *, force: bool = False) -> None:
        """Reload sites and regions when older than ``refresh_seconds``."""
        if not force and time.monotonic() - self._loaded_at < self._refresh_s:
            return
        async with self._lock:
            if not force and time.monotonic() - self._loaded_at < self._refresh_s:
                return
            sites = {s.name: s for s in await self._store.list_sites()}
            own = self.default_site
            default = None if own is None else sites.get(own.name)
            # Embedded: the data dir's own site follows the data dir (moved, restored
            # elsewhere). On a shared database it does not: the site is the directory it was
            # registered with, which other hosts cannot reach (ADR 0006).
            if own is not None and default is not None and self._follow_default:
                sites[default.name] = dataclasses.replace(default, path=own.path)
            regions = {r.name: r for r in await self._store.list_regions()}
            for name, site in sites.items():
                known = self._sites.get(name)
                if name not in self._backends or (known is not None and known.path != site.path):
                    # Only the data dir's own site is made again if missing; any other is
                    # opened as it is (see LocalSite: a disk that did not mount).
                    create = own is not None and name == own.name and site.path == own.path
                    self._backends[name] = await asyncio.to_thread(self._open_site, site, create)
            for gone in set(self._backends) - set(sites):
                del self._backends[gone]
            self._sites, self._regions = sites, regions
            self._unreachable, full = await self._probe()
            self._down = self._unreachable | full
            self._loaded_at = time.monotonic()

    async def _probe(self) -> tuple[frozenset[str], frozenset[str]]:
        """Sites that cannot be reached now, and sites with less free space than the reserve."""
        unreachable, full = set(), set()
        for name, backend in self._backends.items():
            try:
                _, free = await backend.usage()
            except OSError as exc:
                log.warning("site %s is unavailable: %s", name, exc)
                unreachable.add(name)
                continue
            if free is not None and free < self._reserve:
                log.warning("site %s is full: %d bytes free, reserve %d", name, free, self._reserve)
                full.add(name)
        return frozenset(unreachable), frozenset(full)

    @property
    def sites(self) -> dict[str, Site]:
        """Registered sites by name (as of the last refresh)."""
        return dict(self._sites)

    def physical(self) -> dict[str, SiteBackend]:
        """The backends of every registered site."""
        return dict(self._backends)

    def site_backend(self, name: str) -> SiteBackend:
        """A registered site's backend; KeyError for an unknown one."""
        return self._backends[name]

    def unavailable(self) -> frozenset[str]:
        """Sites that failed their last probe, or a write within the hold time."""
        now = time.monotonic()
        failed = {n for n, at in self._failed.items() if now - at < SITE_FAILURE_HOLD_S}
        return self._down | failed

    def unreachable(self) -> frozenset[str]:
        """Sites that could not be reached at the last probe (a full one is reachable: its
        garbage can be deleted)."""
        return self._unreachable

    def site_failed(self, name: str) -> None:
        """Leave ``name`` out of new placements for a while (a write to it failed)."""
        self._failed[name] = time.monotonic()

    def backend(self, layout: Layout) -> SiteBackend:
        """The backend for a blob's layout: its site's own, or one spread over its sites.
        KeyError when a single copy's site is not registered."""
        if not layout.framed:
            return self._backends[layout.sites[0]]
        found = self._layouts.get(layout)
        if found is None:
            found = self._sharded(
                layout, self._site_or_fail, self.unavailable, self._degraded, self.site_failed
            )
            self._layouts[layout] = found
            if len(self._layouts) > LAYOUT_CACHE:
                self._layouts.popitem(last=False)
        else:
            self._layouts.move_to_end(layout)
        return found

    def _site_or_fail(self, name: str) -> SiteBackend:
        backend = self._backends.get(name)
        if backend is None:
            raise KeyError(name)
        return backend

    def _degraded(self, blob: BlobRef) -> None:
        """A read went around a bad shard: queue the blob for repair (in the background)."""
        task = asyncio.ensure_future(self._store.queue_repairs([blob], self._clock.now()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # --- policy -------------------------------------------------------------------------------
    def region_of(self, bucket: Bucket) -> Region:
        """The residency policy of a bucket (its location's region; the default one)."""
        if not bucket.location:
            return self.default_region
        region = self._regions.get(bucket.location)
        if region is None:
            # A bucket's region cannot be removed while it exists; a stale registry can lag.
            raise errors.PlacementImpossible(f"Region {bucket.location} is not known here yet.")
        return region

    async def check_location(self, location: str) -> None:
        """CreateBucket's LocationConstraint must name a region (InvalidLocationConstraint)."""
        await self.refresh()
        if location not in self._regions:
            await self.refresh(force=True)
        if location not in self._regions:
            raise errors.InvalidLocationConstraint(LocationConstraint=location)

    def candidates(self) -> Candidates:
        """What placement may use now."""
        return Candidates(self._sites, self.unavailable())

    async def target(self, bucket: Bucket) -> Layout:
        """Where a new blob of ``bucket`` goes (its backend: :meth:`backend`).
        PlacementImpossible when the policy cannot be met with the sites available now."""
        await self.refresh()
        region = self.region_of(bucket)
        names = choose_sites(region, self.candidates())
        if region.redundancy.shards == 1:
            return Layout.single(names[0])
        return Layout(region.redundancy, names)

    # --- operator use cases -------------------------------------------------------------------
    async def add_site(
        self,
        principal: Principal,
        name: str,
        jurisdiction: str,
        failure_domain: str,
        provider: str,
        path: str,
    ) -> Site:
        """Register a site: a local directory (``path`` absolute; made if missing) or a Ceph
        pool (``path`` a ``rados:`` location, see ``core/locations.py``). The site is opened
        and written to first: a bad path, an unreachable cluster, a missing pool or a refused
        key is an InvalidArgument that names it, and nothing is registered."""
        require_operator(principal)
        check_site_name(name)
        rados = RadosLocation.parse(path)
        location = str(rados) if rados is not None else check_path(path, "A site's path")
        site = Site(name, jurisdiction, failure_domain, provider, location)
        try:
            backend = await asyncio.to_thread(self._open_site, site, True)  # makes local dirs
            check = getattr(backend, "check", None)
            if check is not None:
                await asyncio.wait_for(check(), SITE_CHECK_TIMEOUT_S)
        except OSError as exc:
            if isinstance(exc, TimeoutError) and exc.errno is None:  # ours, not the site's
                raise errors.InvalidArgument(
                    f"Site {name}: {describe(location)} did not answer within "
                    f"{SITE_CHECK_TIMEOUT_S:g} s."
                ) from exc
            what = "directory" if rados is None else "Ceph pool"
            raise errors.InvalidArgument(
                f"The site's {what} cannot be used: {exc.strerror or exc}."
            ) from exc
        except RuntimeError as exc:
            raise errors.InvalidArgument(str(exc)) from exc
        await self._store.create_site(site, self._clock.now())
        await self.refresh(force=True)
        return site

    async def list_sites(self, principal: Principal) -> list[SiteView]:
        """Sites with their state, capacity and shard counts."""
        require_operator(principal)
        await self.refresh(force=True)
        counts: dict[str, int] = collections.Counter()
        for layout, n in (await self._store.layout_counts()).items():
            for name in layout.sites:
                counts[name] += n
        progress = await self._store.site_progress()
        views = []
        for site in self._sites.values():
            used = free = problem = None
            available = True
            try:
                used, free = await self._backends[site.name].usage()
            except OSError as exc:
                available, problem = False, str(exc.strerror or exc)
                if exc.strerror and exc.filename:
                    problem = f"{exc.strerror}: {exc.filename}"
            except KeyError:
                available, problem = False, "not opened on this gateway"
            if available and site.name in self.unavailable():
                problem = "a write failed in the last seconds, or below the free-space reserve"
            views.append(
                SiteView(
                    site,
                    available and site.name not in self.unavailable(),
                    used,
                    free,
                    counts.get(site.name, 0),
                    progress.get(site.name),
                    problem,
                )
            )
        return views

    async def drain_site(self, principal: Principal, name: str) -> Site:
        """Stop placing new data on a site; the drain job moves its shards away."""
        require_operator(principal)
        await self._store.set_site_state(name, SiteState.DRAINING, DrainProgress.queued())
        await self.refresh(force=True)
        return self._sites[name]

    async def remove_site(self, principal: Principal, name: str) -> None:
        """Forget a site once nothing names it (SiteNotDrained otherwise)."""
        require_operator(principal)
        await self._store.delete_site(name)
        await self.refresh(force=True)

    async def add_region(
        self,
        principal: Principal,
        name: str,
        jurisdictions: list[str],
        redundancy: str,
        min_failure_domains: int,
    ) -> Region:
        """Register a residency policy buckets can name as their LocationConstraint."""
        require_operator(principal)
        check_region_name(name)
        codes = frozenset(j.strip() for j in jurisdictions if j.strip())
        if ANY_JURISDICTION in codes:
            raise errors.InvalidArgument("Name the jurisdictions a region allows.")
        region = Region(name, codes, Redundancy.parse(redundancy), min_failure_domains)
        await self._store.create_region(region, self._clock.now())
        await self.refresh(force=True)
        return region

    async def list_regions(self, principal: Principal) -> list[Region]:
        """Every region (any authenticated caller: regions are what buckets may name)."""
        del principal
        await self.refresh(force=True)
        return list(self._regions.values())
