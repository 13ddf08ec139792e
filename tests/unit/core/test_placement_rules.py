"""Residency rules: redundancy, layouts, and how sites are chosen (no I/O)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from andromede.core import errors
from andromede.core.placement import (
    ANY_JURISDICTION,
    Candidates,
    Layout,
    Redundancy,
    Region,
    Site,
    SiteState,
    choose_replacement,
    choose_sites,
    layout_allowed,
)


def site(name: str, jurisdiction: str, domain: str, state: SiteState = SiteState.ACTIVE) -> Site:
    return Site(name, jurisdiction, domain, "acme", f"/srv/{name}", state)


SITES = {
    s.name: s
    for s in [
        site("fr-a", "FR", "paris-1"),
        site("fr-b", "FR", "paris-1"),
        site("fr-c", "FR", "lyon-1"),
        site("fr-d", "FR", "marseille-1"),
        site("be-a", "BE", "brussels-1"),
        site("us-a", "US", "virginia-1"),
    ]
}


def region(redundancy: str, *jurisdictions: str, domains: int = 1) -> Region:
    return Region("r1", frozenset(jurisdictions), Redundancy.parse(redundancy), domains)


@pytest.mark.parametrize(
    ("text", "erasure", "k", "m", "shards"),
    [("replicas:1", False, 1, 0, 1), ("replicas:3", False, 1, 2, 3), ("ec:4+2", True, 4, 2, 6)],
)
def test_redundancy_parses(text: str, erasure: bool, k: int, m: int, shards: int) -> None:
    r = Redundancy.parse(text)
    assert (r.erasure, r.k, r.m, r.shards) == (erasure, k, m, shards)
    assert str(r) == text


@pytest.mark.parametrize(
    "text", ["raid5", "replicas:0", "replicas:21", "ec:1+1", "ec:4+0", "ec:18+3", "x", ""]
)
def test_bad_redundancy_is_invalid_argument(text: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        Redundancy.parse(text)


def test_region_checks_its_own_rules() -> None:
    with pytest.raises(errors.InvalidArgument):
        region("replicas:2", "fr")  # lower case is no ISO code
    with pytest.raises(errors.InvalidArgument):
        region("replicas:2", "FR", domains=3)  # more domains than shards
    with pytest.raises(errors.InvalidArgument):
        Region("x", frozenset(), Redundancy.replicas(1))
    assert region("replicas:1", ANY_JURISDICTION).allows(SITES["us-a"])


@pytest.mark.parametrize(
    ("layout", "problem"),
    [
        (lambda: Layout(Redundancy.replicas(3), ("a", "b")), "one site per shard"),
        (lambda: Layout(Redundancy.replicas(2), ("a", "a")), "each site once"),
        (lambda: Layout(Redundancy.replicas(2), ("a", "B")), "not a site name"),
        (lambda: Layout(Redundancy.replicas(2), ("a", "b"), framed=False), "unframed"),
    ],
)
def test_a_layout_checks_its_own_shape(layout: Callable[[], Layout], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        layout()


def test_replicas_spread_over_failure_domains_and_stay_in_jurisdiction() -> None:
    rng = random.Random(7)
    policy = region("replicas:3", "FR", domains=3)
    seen: Counter[str] = Counter()
    for _ in range(200):
        names = choose_sites(policy, Candidates(SITES), rng)
        assert len(set(names)) == 3
        assert {SITES[n].jurisdiction for n in names} == {"FR"}
        assert len({SITES[n].failure_domain for n in names}) == 3
        seen.update(names)
    assert set(seen) == {"fr-a", "fr-b", "fr-c", "fr-d"}  # both paris sites get used


def test_too_few_allowed_sites_is_refused_never_placed_elsewhere() -> None:
    policy = region("ec:4+2", "FR", "BE")  # 5 allowed sites, 6 shards
    with pytest.raises(errors.PlacementImpossible) as info:
        choose_sites(policy, Candidates(SITES))
    assert "FR" in info.value.message
    policy = region("replicas:3", "FR", domains=3)
    down = frozenset({"fr-c"})
    with pytest.raises(errors.PlacementImpossible):  # paris, marseille: two domains left
        choose_sites(policy, Candidates(SITES, down))


def test_draining_and_unavailable_sites_get_nothing_new() -> None:
    sites = dict(SITES)
    sites["fr-d"] = site("fr-d", "FR", "marseille-1", SiteState.DRAINING)
    policy = region("replicas:2", "FR")
    for _ in range(50):
        names = choose_sites(policy, Candidates(sites, frozenset({"fr-a"})))
        assert not {"fr-a", "fr-d"} & set(names)


def test_replacement_avoids_the_blobs_sites_and_keeps_domains_apart() -> None:
    policy = region("replicas:3", "FR", domains=3)
    layout = Layout(Redundancy.replicas(3), ("fr-a", "fr-c", "fr-d"))
    for _ in range(50):
        # shard 2 leaves marseille: fr-b is the only FR site left, in paris with fr-a
        with pytest.raises(errors.PlacementImpossible):
            choose_replacement(policy, Candidates(SITES), layout, 2)
    loose = region("replicas:3", "FR", domains=2)
    assert choose_replacement(loose, Candidates(SITES), layout, 2) == "fr-b"
    assert choose_replacement(loose, Candidates(SITES), layout.moved(0, "fr-b"), 0) == "fr-a"


def test_layout_allowed_checks_every_site() -> None:
    policy = region("replicas:2", "FR")
    assert layout_allowed(policy, Layout(Redundancy.replicas(2), ("fr-a", "fr-c")), SITES)
    assert not layout_allowed(policy, Layout(Redundancy.replicas(2), ("fr-a", "be-a")), SITES)
    assert not layout_allowed(policy, Layout(Redundancy.replicas(2), ("fr-a", "zz")), SITES)


def test_site_fields_are_validated() -> None:
    with pytest.raises(errors.InvalidArgument):
        site("Bad_Name", "FR", "d")
    with pytest.raises(errors.InvalidArgument):
        site("ok", "FRA", "d")
    with pytest.raises(errors.InvalidArgument):
        site("ok", "FR", "../etc")
