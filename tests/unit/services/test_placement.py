"""Placement: a bucket's data goes only to sites its region allows, spread over the failure
domains it asks for; a policy that cannot be met refuses the write and stores nothing; sites
that are down, full or draining take no new shards; a drain moves shards within policy, or
says which buckets block it."""

from __future__ import annotations

import os

import pytest

from andromede.core import errors
from andromede.core.conditions import Preconditions
from andromede.core.models import ObjectVersion
from andromede.core.placement import SiteState
from andromede.core.repair import DrainState
from andromede.services.body import body_from_bytes
from andromede.services.multipart import CompletedPart
from andromede.services.objects import Integrity, ObjectAttributes
from support.placement import SITES
from support.services import ALICE, OPERATOR, ServiceStack

JURISDICTION = {name: code for name, code, _ in SITES}
DOMAIN = {name: domain for name, _, domain in SITES}
FR = {name for name, code, _ in SITES if code == "FR"}
LARGE = 2 * 1024 * 1024 + 5


async def version_of(stack: ServiceStack, bucket: str, key: str) -> ObjectVersion:
    return (await stack.objects.get(ALICE, bucket, key, with_body=False)).version


async def shard_sites(stack: ServiceStack, bucket: str, key: str) -> list[tuple[str, ...]]:
    """The sites of each segment's shards."""
    version = await version_of(stack, bucket, key)
    return [list(s.blob.layout.sites) for s in version.manifest.segments]


def holdings(stack: ServiceStack, names: set[str] | None = None) -> dict[str, set[str]]:
    """Blob ids held by each site (or by those named)."""
    return {n: b for n, b in stack.stored_blobs().items() if names is None or n in names}


async def write_everything(stack: ServiceStack, bucket: str) -> dict[str, bytes]:
    """A small and a streamed object, a two-part upload and a copy; returns what was written."""
    kept = {"small": b"s" * 5000, "big": os.urandom(LARGE)}
    for key, data in kept.items():
        await stack.objects.put(
            ALICE, bucket, key, body_from_bytes(data), ObjectAttributes(), Integrity()
        )
    up = await stack.multipart.create(ALICE, bucket, "mp", ObjectAttributes(), None, None)
    part = (
        await stack.multipart.upload_part(
            ALICE, bucket, "mp", up.upload_id, 1, body_from_bytes(b"part"), Integrity()
        )
    ).part
    await stack.multipart.complete(
        ALICE, bucket, "mp", up.upload_id, [CompletedPart(1, part.etag)], None, None
    )
    kept["mp"] = b"part"
    return kept


# --- where writes go -----------------------------------------------------------------------------
async def test_an_fr_bucket_never_writes_outside_fr(cluster: ServiceStack) -> None:
    stack = cluster
    await stack.buckets.create(ALICE, "anywhere", None)
    await stack.put("anywhere", "src", b"from elsewhere" * 1000)
    outside = holdings(stack, {"be-a", "us-a", "local"})
    kept = await write_everything(stack, "fr-data")
    kept_ec = await write_everything(stack, "fr-ec-data")
    await stack.objects.copy(
        ALICE,
        ("anywhere", "src"),
        ("fr-data", "imported"),
        replace_metadata=False,
        attrs=ObjectAttributes(),
        replace_tags=False,
        source_conditions=Preconditions(),
    )
    kept["imported"] = b"from elsewhere" * 1000
    assert holdings(stack, {"be-a", "us-a", "local"}) == outside
    for bucket, objects, shards, domains in (
        ("fr-data", kept, 3, 3),
        ("fr-ec-data", kept_ec, 4, 4),
    ):
        for key, data in objects.items():
            assert await stack.get(bucket, key) == data
            for sites in await shard_sites(stack, bucket, key):
                assert len(set(sites)) == shards, (bucket, key)
                assert {JURISDICTION[s] for s in sites} == {"FR"}
                assert len({DOMAIN[s] for s in sites}) == domains


async def test_a_policy_that_cannot_be_met_refuses_and_writes_nothing(
    cluster: ServiceStack,
) -> None:
    stack = cluster
    await stack.add_region("fr-wide", ["FR"], "ec:4+2", 1)  # six FR sites; there are four
    await stack.buckets.create(ALICE, "too-wide", "fr-wide")
    before = holdings(stack)
    for data in (b"small", os.urandom(LARGE)):
        with pytest.raises(errors.PlacementImpossible, match="FR"):
            await stack.put("too-wide", "k", data)
    up = await stack.multipart.create(ALICE, "too-wide", "m", ObjectAttributes(), None, None)
    with pytest.raises(errors.PlacementImpossible):
        await stack.multipart.upload_part(
            ALICE, "too-wide", "m", up.upload_id, 1, body_from_bytes(b"p"), Integrity()
        )
    assert holdings(stack) == before
    assert all(not site.pending for site in stack.sites.values())
    with pytest.raises(errors.NoSuchKey):
        await stack.objects.get(ALICE, "too-wide", "k")


async def test_too_few_failure_domains_is_refused(stack: ServiceStack) -> None:
    for name in ("fr-a", "fr-b", "fr-c"):
        await stack.add_site(name, "FR", "one-building")
    await stack.add_region("fr-spread", ["FR"], "replicas:3", 2)
    await stack.buckets.create(ALICE, "spread", "fr-spread")
    with pytest.raises(errors.PlacementImpossible, match="2 failure domains"):
        await stack.put("spread", "k", b"x")
    await stack.add_site("fr-d", "FR", "another-building")
    await stack.put("spread", "k", b"x")
    [sites] = await shard_sites(stack, "spread", "k")
    assert "fr-d" in sites


async def test_an_unknown_region_is_no_location(cluster: ServiceStack) -> None:
    with pytest.raises(errors.InvalidLocationConstraint):
        await cluster.buckets.create(ALICE, "nowhere", "mars")


# --- sites that cannot take shards ---------------------------------------------------------------
async def test_sites_that_are_down_take_no_shards(cluster: ServiceStack) -> None:
    stack = cluster
    await stack.set_offline("fr-a")
    for i in range(8):
        await stack.put("fr-data", f"k{i}", b"x" * 1000)
        [sites] = await shard_sites(stack, "fr-data", f"k{i}")
        assert "fr-a" not in sites
    views = {v.site.name: v for v in await stack.placement.list_sites(OPERATOR)}
    assert views["fr-a"].available is False
    assert views["fr-b"].available is True
    await stack.set_offline("fr-b")  # two FR domains left: replicas:3 over 3 cannot be met
    before = holdings(stack, {"fr-c", "fr-d"})
    with pytest.raises(errors.PlacementImpossible):
        await stack.put("fr-data", "refused", os.urandom(LARGE))
    assert holdings(stack, {"fr-c", "fr-d"}) == before
    await stack.set_offline("fr-a", offline=False)
    await stack.set_offline("fr-b", offline=False)
    await stack.put("fr-data", "again", b"y")


async def test_a_full_site_fails_the_write_whole_and_is_then_avoided(
    cluster: ServiceStack,
) -> None:
    stack = cluster
    full = stack.site("fr-d")
    full.capacity = full.used()
    refusals = 0
    for i in range(30):
        before = holdings(stack)
        try:
            await stack.put("fr-data", f"k{i}", os.urandom(300_000 + i))
        except errors.StorageFull:
            refusals += 1
            assert holdings(stack) == before  # nothing half-written anywhere
            assert all(not site.pending for site in stack.sites.values())
            continue
        [sites] = await shard_sites(stack, "fr-data", f"k{i}")
        assert "fr-d" not in sites
    assert refusals == 1  # the site failed once, then was left out


async def test_a_draining_site_takes_no_new_shards(cluster: ServiceStack) -> None:
    stack = cluster
    drained = await stack.placement.drain_site(OPERATOR, "fr-a")
    assert drained.state is SiteState.DRAINING
    for i in range(8):
        await stack.put("fr-data", f"k{i}", b"x")
        [sites] = await shard_sites(stack, "fr-data", f"k{i}")
        assert set(sites) == {"fr-b", "fr-c", "fr-d"}


# --- drain ---------------------------------------------------------------------------------------
async def test_drain_moves_shards_within_policy_then_the_site_can_go(
    cluster: ServiceStack,
) -> None:
    stack = cluster
    await stack.buckets.create(ALICE, "anywhere", None)  # the default region: one copy
    await stack.put("anywhere", "one-copy", b"z" * 100_000)
    kept = {f"drain-{i}": os.urandom(70_000 + i) for i in range(6)}
    for key, data in kept.items():
        await stack.put("fr-data", key, data)
    # The one-copy blob may be drained anywhere (its region allows any site); fr-data's
    # blobs must stay in FR: only theirs are compared outside FR.
    fr_blobs = set()
    for key in kept:
        fr_blobs |= {
            s.blob.blob_id for s in (await version_of(stack, "fr-data", key)).manifest.segments
        }
    outside = {n: b & fr_blobs for n, b in holdings(stack, {"be-a", "us-a"}).items()}

    await stack.placement.drain_site(OPERATOR, "fr-a")
    await stack.repairs.run_now(OPERATOR)

    progress = (await stack.repairs.status(OPERATOR)).drains["fr-a"]
    assert progress.state is DrainState.DONE, progress
    assert progress.remaining == 0
    views = {v.site.name: v for v in await stack.placement.list_sites(OPERATOR)}
    assert views["fr-a"].shards == 0
    assert stack.site("fr-a").blobs == {}
    for key, data in kept.items():
        assert await stack.get("fr-data", key) == data
        [sites] = await shard_sites(stack, "fr-data", key)
        assert "fr-a" not in sites
        assert {JURISDICTION[s] for s in sites} == {"FR"}
    assert {n: b & fr_blobs for n, b in holdings(stack, {"be-a", "us-a"}).items()} == outside

    # A second FR site cannot go: three FR domains are needed and only two would remain.
    await stack.placement.drain_site(OPERATOR, "fr-b")
    progress = await stack.repairs.drain("fr-b")
    assert progress.state is DrainState.BLOCKED
    assert progress.blocked == ("fr-data",)
    with pytest.raises(errors.SiteNotDrained):
        await stack.placement.remove_site(OPERATOR, "fr-b")
    await stack.placement.remove_site(OPERATOR, "fr-a")
    assert "fr-a" not in stack.placement.sites
    for key, data in kept.items():
        assert await stack.get("fr-data", key) == data


async def test_a_one_copy_blob_moves_whole(cluster: ServiceStack) -> None:
    stack = cluster
    await stack.buckets.create(ALICE, "anywhere", None)
    await stack.put("anywhere", "one-copy", b"z" * 100_000)
    [[holder]] = await shard_sites(stack, "anywhere", "one-copy")
    await stack.placement.drain_site(OPERATOR, holder)
    await stack.repairs.drain_all()
    [[now]] = await shard_sites(stack, "anywhere", "one-copy")
    assert now != holder
    assert stack.site(holder).blobs == {}
    assert await stack.get("anywhere", "one-copy") == b"z" * 100_000


async def test_a_site_holding_shards_cannot_be_removed(cluster: ServiceStack) -> None:
    stack = cluster
    await stack.put("fr-ec-data", "k", b"x")
    [sites] = await shard_sites(stack, "fr-ec-data", "k")
    with pytest.raises(errors.SiteNotDrained):
        await stack.placement.remove_site(OPERATOR, sites[0])
    await stack.placement.remove_site(OPERATOR, "us-a")  # holds nothing


# --- the operator's input ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "code", "path"),
    [
        ("x1", "fr", "/memory/x1"),
        ("Bad Name", "FR", "/memory/x2"),
        ("x3", "FR", "relative/dir"),
    ],
)
async def test_bad_sites_are_refused(
    cluster: ServiceStack, name: str, code: str, path: str
) -> None:
    with pytest.raises(errors.InvalidArgument):
        await cluster.placement.add_site(OPERATOR, name, code, "d", "acme", path)


async def test_a_site_name_or_path_is_taken_once(cluster: ServiceStack) -> None:
    with pytest.raises(errors.SiteAlreadyExists):
        await cluster.placement.add_site(OPERATOR, "fr-a", "FR", "d", "acme", "/memory/new")
    with pytest.raises(errors.SiteAlreadyExists):
        await cluster.placement.add_site(OPERATOR, "x4", "FR", "d", "acme", "/memory/fr-c")


@pytest.mark.parametrize(
    ("name", "redundancy", "domains"),
    [("r", "replicas:2", 1), ("rr", "raid5", 1), ("rr", "replicas:2", 3)],
)
async def test_bad_regions_are_refused(
    cluster: ServiceStack, name: str, redundancy: str, domains: int
) -> None:
    with pytest.raises(errors.InvalidArgument):
        await cluster.add_region(name, ["FR"], redundancy, domains)


async def test_a_region_name_is_taken_once(cluster: ServiceStack) -> None:
    with pytest.raises(errors.RegionAlreadyExists):
        await cluster.add_region("fr-only", ["FR"], "replicas:2")


async def test_sites_are_for_operators(cluster: ServiceStack) -> None:
    placement = cluster.placement
    with pytest.raises(errors.AccessDenied):
        await placement.list_sites(ALICE)
    with pytest.raises(errors.AccessDenied):
        await placement.add_site(ALICE, "x5", "FR", "d", "acme", "/memory/x5")
    with pytest.raises(errors.AccessDenied):
        await placement.drain_site(ALICE, "fr-a")
    with pytest.raises(errors.AccessDenied):
        await placement.add_region(ALICE, "mine", ["FR"], "replicas:1", 1)
    with pytest.raises(errors.AccessDenied):
        await cluster.repairs.run_now(ALICE)
    assert {r.name for r in await placement.list_regions(ALICE)} >= {"fr-only"}
