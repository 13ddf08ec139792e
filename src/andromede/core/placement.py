"""Residency and redundancy rules: sites, regions, layouts, and choosing where shards go.

No I/O here: the site registry (``services/placement.py``) feeds these functions the sites it
knows and their health, and acts on what they decide.

A **layout** (:class:`Layout`) says where one blob's shards live; a ``BlobRef`` carries one.
It is one of three kinds (:class:`LayoutKind`):

* single: one whole copy on one site, in the site's own blob format (the embedded default;
  also every blob written before placement existed);
* replicas: N framed copies, shard ``i`` on the ``i``-th site;
* erasure: k data shards then m parity shards, shard ``i`` on the ``i``-th site.

A site appears at most once in a layout, so a shard file is found by (site, blob id). How a
layout is written down in the metadata store is the store's business (``metadata/codec.py``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from andromede.core import errors

SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
REGION_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
FAILURE_DOMAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
JURISDICTION = re.compile(r"^[A-Z]{2}$")
PROVIDER = re.compile(r"^[\w .&()-]{1,64}$")
_REDUNDANCY = re.compile(r"^(?:replicas:(\d{1,2})|ec:(\d{1,2})\+(\d{1,2}))$")
MAX_SHARDS = 20
# Jurisdictions of a region that accepts any site (the embedded default region).
ANY_JURISDICTION = "*"


class SiteState(StrEnum):
    """A site's life cycle: new data goes only to active sites."""

    ACTIVE = "active"
    DRAINING = "draining"  # nothing new; the drain job moves its shards away


def check_site_name(name: str) -> str:
    """A site name: 1-32 of lowercase letters, digits and '-' (InvalidArgument otherwise)."""
    if not SITE_NAME.match(name):
        raise errors.InvalidArgument(
            "A site name is 1 to 32 lowercase letters, digits or '-', starting with a "
            "letter or digit."
        )
    return name


def check_jurisdiction(code: str) -> str:
    """An ISO 3166-1 alpha-2 country code, upper case (``FR``, ``BE``)."""
    if not JURISDICTION.match(code):
        raise errors.InvalidArgument(
            f"{code!r} is not a jurisdiction: use an ISO 3166-1 alpha-2 code such as FR."
        )
    return code


def check_region_name(name: str) -> str:
    """A region name, usable as a LocationConstraint (2-63 of [a-z0-9-])."""
    if not REGION_NAME.match(name):
        raise errors.InvalidArgument(
            "A region name is 2 to 63 lowercase letters, digits or '-', starting with a "
            "letter or digit."
        )
    return name


@dataclass(frozen=True)
class Site:
    """A place data can live, as the operator registered it."""

    name: str
    jurisdiction: str
    failure_domain: str
    provider: str
    path: str  # the backend's location (a directory for a local site)
    state: SiteState = SiteState.ACTIVE

    def __post_init__(self) -> None:
        check_site_name(self.name)
        check_jurisdiction(self.jurisdiction)
        if not FAILURE_DOMAIN.match(self.failure_domain):
            raise errors.InvalidArgument(
                "A failure domain is 1 to 64 letters, digits, '.', '_' or '-'."
            )
        if not PROVIDER.match(self.provider):
            raise errors.InvalidArgument("A provider name is 1 to 64 plain characters.")


@dataclass(frozen=True)
class Redundancy:
    """N whole replicas (``k`` = 1, ``m`` = N-1) or an erasure code of k data + m parity."""

    erasure: bool
    k: int
    m: int

    @classmethod
    def replicas(cls, n: int) -> Redundancy:
        """N copies."""
        return cls(False, 1, n - 1)

    @classmethod
    def parse(cls, text: str) -> Redundancy:
        """``replicas:N`` or ``ec:K+M``; InvalidArgument for anything else."""
        match = _REDUNDANCY.match(text.strip())
        if match is None:
            raise errors.InvalidArgument(
                f"Redundancy {text!r}: use replicas:N (1 to {MAX_SHARDS}) or ec:K+M "
                f"(K >= 2, M >= 1, K+M <= {MAX_SHARDS})."
            )
        if match.group(1) is not None:
            n = int(match.group(1))
            if not 1 <= n <= MAX_SHARDS:
                raise errors.InvalidArgument(f"replicas:N takes N from 1 to {MAX_SHARDS}.")
            return cls.replicas(n)
        k, m = int(match.group(2)), int(match.group(3))
        if k < 2 or m < 1 or k + m > MAX_SHARDS:
            raise errors.InvalidArgument(f"ec:K+M takes K >= 2, M >= 1, K+M <= {MAX_SHARDS}.")
        return cls(True, k, m)

    @property
    def shards(self) -> int:
        """How many shards a blob has."""
        return self.k + self.m

    @property
    def tolerates(self) -> int:
        """How many shards may be lost without losing data."""
        return self.m

    def __str__(self) -> str:
        return f"ec:{self.k}+{self.m}" if self.erasure else f"replicas:{self.shards}"


@dataclass(frozen=True)
class Region:
    """A residency policy: where a bucket's data may live and how redundantly."""

    name: str
    jurisdictions: frozenset[str]  # {ANY_JURISDICTION}: any site
    redundancy: Redundancy
    min_failure_domains: int = 1

    def __post_init__(self) -> None:
        check_region_name(self.name)
        if not self.jurisdictions:
            raise errors.InvalidArgument("A region allows at least one jurisdiction.")
        if self.jurisdictions != {ANY_JURISDICTION}:
            for code in self.jurisdictions:
                check_jurisdiction(code)
        if not 1 <= self.min_failure_domains <= self.redundancy.shards:
            raise errors.InvalidArgument(
                "min-failure-domains must be between 1 and the number of shards "
                f"({self.redundancy.shards} for {self.redundancy})."
            )

    def allows(self, site: Site) -> bool:
        """True when the site's jurisdiction is one the region allows."""
        return ANY_JURISDICTION in self.jurisdictions or site.jurisdiction in self.jurisdictions

    def jurisdiction_list(self) -> list[str]:
        """Sorted, for display and reports."""
        return sorted(self.jurisdictions)


class LayoutKind(StrEnum):
    """How a blob's bytes are spread over its layout's sites."""

    SINGLE = "single"  # one whole copy in the site's own format, no frames
    REPLICAS = "replicas"  # N framed copies
    ERASURE = "erasure"  # k data + m parity framed fragments


@dataclass(frozen=True)
class Layout:
    """Where one blob's shards are: ``sites[i]`` holds shard ``i``."""

    redundancy: Redundancy
    sites: tuple[str, ...]
    framed: bool = True  # False: a single site's own one-copy blob

    def __post_init__(self) -> None:
        if len(self.sites) != self.redundancy.shards:
            raise ValueError("a layout names one site per shard")
        if len(set(self.sites)) != len(self.sites):
            raise ValueError("a layout names each site once")
        if not self.framed and self.redundancy.shards != 1:
            raise ValueError("only a one-copy layout can be unframed")
        for name in self.sites:
            if not SITE_NAME.match(name):
                raise ValueError(f"not a site name: {name!r}")

    @classmethod
    def single(cls, site: str) -> Layout:
        """One whole copy on ``site`` in the site's own format."""
        return cls(Redundancy.replicas(1), (site,), framed=False)

    @property
    def kind(self) -> LayoutKind:
        """Single copy, replicas or erasure code."""
        if not self.framed:
            return LayoutKind.SINGLE
        return LayoutKind.ERASURE if self.redundancy.erasure else LayoutKind.REPLICAS

    def moved(self, index: int, site: str) -> Layout:
        """The same layout with shard ``index`` on ``site``."""
        sites = list(self.sites)
        sites[index] = site
        return replace(self, sites=tuple(sites))


@dataclass(frozen=True)
class Candidates:
    """What placement may choose from: sites with their state and health."""

    sites: Mapping[str, Site]
    unavailable: frozenset[str] = field(default_factory=frozenset)

    def usable(self, region: Region, exclude: Iterable[str] = ()) -> list[Site]:
        """Active, available sites the region allows, minus ``exclude``."""
        skip = set(exclude) | self.unavailable
        return [
            s
            for s in self.sites.values()
            if s.state is SiteState.ACTIVE and s.name not in skip and region.allows(s)
        ]


def _spread(
    pool: Sequence[Site], count: int, taken: Mapping[str, int], rng: random.Random
) -> list[Site]:
    """Pick ``count`` sites, each time from the failure domain holding the fewest shards yet
    (``taken`` counts the ones already placed), at random within it."""
    by_domain: dict[str, list[Site]] = {}
    for site in pool:
        by_domain.setdefault(site.failure_domain, []).append(site)
    for members in by_domain.values():
        rng.shuffle(members)
    load = {d: taken.get(d, 0) for d in by_domain}
    chosen: list[Site] = []
    while len(chosen) < count:
        open_domains = [d for d in by_domain if by_domain[d]]
        if not open_domains:
            break
        fewest = min(load[d] for d in open_domains)
        domain = rng.choice(sorted(d for d in open_domains if load[d] == fewest))
        chosen.append(by_domain[domain].pop())
        load[domain] += 1
    return chosen


# Spreading load needs no cryptographic randomness: SystemRandom's getrandom(2) per draw was
# a visible share of a small PUT. Seeded from the OS at import, so processes differ.
_RNG = random.Random()


def choose_sites(
    region: Region, candidates: Candidates, rng: random.Random | None = None
) -> tuple[str, ...]:
    """Sites for a new blob's shards: distinct sites, spread over as many failure domains as
    the usable sites offer, at least ``min_failure_domains``. PlacementImpossible otherwise:
    a write is refused rather than placed outside the policy."""
    rng = rng or _RNG
    need = region.redundancy.shards
    pool = candidates.usable(region)
    chosen = _spread(pool, need, {}, rng)
    domains = {s.failure_domain for s in chosen}
    if len(chosen) < need or len(domains) < region.min_failure_domains:
        raise errors.PlacementImpossible(
            f"Region {region.name} needs {need} available sites in "
            f"{','.join(region.jurisdiction_list())} over at least "
            f"{region.min_failure_domains} failure domains; {len(pool)} sites in "
            f"{len({s.failure_domain for s in pool})} failure domains are available."
        )
    return tuple(s.name for s in chosen)


def choose_replacement(
    region: Region,
    candidates: Candidates,
    layout: Layout,
    index: int,
    rng: random.Random | None = None,
) -> str:
    """A site for shard ``index`` of ``layout`` (repair or drain): allowed by the region,
    active, not already holding a shard of the blob, preferring the failure domain with the
    fewest of the blob's other shards. PlacementImpossible when there is none."""
    rng = rng or _RNG
    others = [s for i, s in enumerate(layout.sites) if i != index]
    taken: dict[str, int] = {}
    for name in others:
        site = candidates.sites.get(name)
        if site is not None:
            taken[site.failure_domain] = taken.get(site.failure_domain, 0) + 1
    pool = candidates.usable(region, exclude=layout.sites)
    chosen = _spread(pool, 1, taken, rng)
    if not chosen:
        raise errors.PlacementImpossible(
            f"No available site in {','.join(region.jurisdiction_list())} can take a shard "
            f"of a blob already on {','.join(others) or 'no other site'}."
        )
    domains = set(taken) | {chosen[0].failure_domain}
    if len(domains) < min(region.min_failure_domains, layout.redundancy.shards):
        raise errors.PlacementImpossible(
            f"Moving a shard would leave the blob on fewer than {region.min_failure_domains} "
            "failure domains."
        )
    return chosen[0].name


def layout_allowed(region: Region, layout: Layout, sites: Mapping[str, Site]) -> bool:
    """True when every site of ``layout`` is known and in a jurisdiction the region allows."""
    return all(name in sites and region.allows(sites[name]) for name in layout.sites)
