"""Repairs: the scrubber finds missing, rotten and truncated shards that no read has met and
rebuilds them where they were; a degraded read queues its blob and the queue's repair moves
the shard of a lost site to another allowed one; and the decisions when repair cannot help
(too few fragments left, no allowed site free, the object gone)."""

from __future__ import annotations

import asyncio
import os

import pytest

from andromede.core import errors
from andromede.core.models import BlobRef
from andromede.dataplane.shard_format import HEADER_SIZE
from andromede.services.repair import SCRUB_BLOB_FLOOR, Outcome, Repairs
from support.services import ALICE, OPERATOR, ServiceStack

FR = {"fr-a", "fr-b", "fr-c", "fr-d"}


@pytest.fixture
async def fr(cluster: ServiceStack) -> ServiceStack:
    """The cluster, with an erasure-coded FR bucket (ec:2+1 over 3 domains) besides the
    replicated one."""
    await cluster.add_region("fr-ec21", ["FR"], "ec:2+1", 3)
    await cluster.buckets.create(ALICE, "coded", "fr-ec21")
    return cluster


async def fill(stack: ServiceStack, bucket: str, count: int, size: int) -> dict[str, bytes]:
    kept = {f"k{i}": os.urandom(size + i) for i in range(count)}
    for key, data in kept.items():
        await stack.put(bucket, key, data)
    return kept


async def ref_of(stack: ServiceStack, bucket: str, key: str) -> BlobRef:
    version = (await stack.objects.get(ALICE, bucket, key, with_body=False)).version
    [segment] = version.manifest.segments
    return segment.blob


async def check(stack: ServiceStack, bucket: str, kept: dict[str, bytes]) -> None:
    for key, data in kept.items():
        assert await stack.get(bucket, key) == data, (bucket, key)


async def queued(stack: ServiceStack, at_least: int = 1) -> int:
    """Repairs queued, once the degraded reads' reports (sent in the background) are in."""
    for _ in range(100):
        count = await stack.store.count_repairs()
        if count >= at_least:
            return count
        await asyncio.sleep(0.01)
    return await stack.store.count_repairs()


# --- the scrubber --------------------------------------------------------------------------------
async def test_scrub_finds_rot_truncation_and_loss_and_rebuilds_in_place(
    fr: ServiceStack,
) -> None:
    stack = fr
    replicas = await fill(stack, "fr-data", 3, 300_000)
    coded = await fill(stack, "coded", 3, 3 * 1024 * 1024)
    originals: dict[tuple[str, str], bytes] = {}
    for bucket, kept in (("fr-data", replicas), ("coded", coded)):
        for n, key in enumerate(kept):
            ref = await ref_of(stack, bucket, key)
            site = stack.site(ref.layout.sites[n % 3])
            originals[site.name, ref.blob_id] = site.data(ref.blob_id)
            if n == 0:
                site.flip(ref.blob_id, HEADER_SIZE + 1000)
            elif n == 1:
                site.truncate(ref.blob_id, len(originals[site.name, ref.blob_id]) - 777)
            else:
                site.lose(ref.blob_id)
    layouts = {
        b: {k: await ref_of(stack, b, k) for k in ("k0", "k1", "k2")} for b in ("fr-data", "coded")
    }

    state = await stack.repairs.scrub(0, full=True)

    assert state.found_bad == len(originals) == 6
    assert state.outcomes.repaired == 6
    for (name, blob_id), original in originals.items():
        assert stack.site(name).data(blob_id) == original, (name, blob_id)
    for bucket, refs in layouts.items():  # rebuilt where they were: nothing moved
        assert {k: await ref_of(stack, bucket, k) for k in refs} == refs
    await check(stack, "fr-data", replicas)
    await check(stack, "coded", coded)
    assert await stack.store.count_repairs() == 0  # those reads needed no detour
    again = await stack.repairs.scrub(0, full=True)
    assert again.found_bad == 6  # a running total: this pass found nothing new
    assert again.passes == 2


async def test_scrub_paces_small_blobs_by_count_and_skips_one_copy_blobs(
    fr: ServiceStack,
) -> None:
    """Tiny replicated blobs are paced as SCRUB_BLOB_FLOOR bytes each, not by their few
    bytes (which let the scrubber re-read thousands a second); one-copy blobs, which it does
    not verify, are not even listed."""
    stack = fr
    await stack.buckets.create(ALICE, "single", None)
    for i in range(40):
        await stack.put("fr-data", f"small{i}", b"x" * 100)
        await stack.put("single", f"one{i}", b"y" * 100)
    assert len(await stack.store.blobs_after(None, 1000, framed_only=True)) == 40
    per_second = 20
    paced = Repairs(
        stack.store, stack.placement, stack.clock, scrub_rate=per_second * SCRUB_BLOB_FLOOR
    )
    budget = 0.5
    state = await paced.scrub(budget)
    assert 1 <= state.checked <= per_second * budget + 3
    whole = await paced.scrub(0, full=True)
    assert whole.checked - state.checked == 40  # a full pass: every replicated blob
    assert whole.passes == 1


async def test_a_healthy_blob_needs_nothing(fr: ServiceStack) -> None:
    await fr.put("coded", "k", b"fine")
    ref = await ref_of(fr, "coded", "k")
    before = fr.stored_blobs()
    assert await fr.repairs.repair(ref) is Outcome.HEALTHY
    assert fr.stored_blobs() == before


# --- degraded reads and the repair queue ---------------------------------------------------------
async def test_a_lost_site_is_read_around_then_its_shards_move(fr: ServiceStack) -> None:
    stack = fr
    replicas = await fill(stack, "fr-data", 6, 200_000)
    coded = await fill(stack, "coded", 6, 2 * 1024 * 1024 + 5)
    outside = {n: set(stack.site(n).blobs) for n in ("be-a", "us-a", "local")}
    on_fr_a = 0
    for bucket, kept in (("fr-data", replicas), ("coded", coded)):
        for key in kept:
            on_fr_a += "fr-a" in list((await ref_of(stack, bucket, key)).layout.sites)
    assert on_fr_a > 0
    await stack.set_offline("fr-a")

    await check(stack, "fr-data", replicas)  # degraded reads
    await check(stack, "coded", coded)
    waiting = await queued(stack, on_fr_a)
    assert waiting == on_fr_a
    status = await stack.repairs.status(OPERATOR)
    assert status.degraded_blobs == waiting
    assert status.bytes_at_risk > 0

    done = await stack.repairs.repair_queued()

    assert done.get(Outcome.MOVED.value, 0) == waiting
    assert (await stack.repairs.status(OPERATOR)).degraded_blobs == 0
    for bucket, kept in (("fr-data", replicas), ("coded", coded)):
        for key in kept:
            sites = list((await ref_of(stack, bucket, key)).layout.sites)
            assert "fr-a" not in sites, (bucket, key)
            assert set(sites) <= FR
            assert len(set(sites)) == len(sites)
    assert {n: set(stack.site(n).blobs) for n in outside} == outside  # repair stayed in FR
    # Full redundancy again: losing one more site is still survivable.
    await stack.set_offline("fr-b")
    await check(stack, "fr-data", replicas)
    await check(stack, "coded", coded)


async def test_no_allowed_site_free_blocks_the_repair(fr: ServiceStack) -> None:
    stack = fr
    await stack.put("coded", "k", b"x" * 5000)
    ref = await ref_of(stack, "coded", "k")
    holders = ref.layout.sites
    spare = (FR - set(holders)).pop()
    await stack.set_offline(holders[0])
    await stack.set_offline(spare)  # the one FR site that could take the shard
    before = stack.stored_blobs()

    assert await stack.repairs.repair(ref) is Outcome.BLOCKED

    assert await ref_of(stack, "coded", "k") == ref
    assert stack.stored_blobs() == before  # never placed outside FR instead
    await stack.set_offline(spare, offline=False)
    assert await stack.repairs.repair(ref) is Outcome.MOVED
    moved = list((await ref_of(stack, "coded", "k")).layout.sites)
    assert set(moved) == (set(holders) - {holders[0]}) | {spare}
    assert await stack.get("coded", "k") == b"x" * 5000


async def test_too_few_fragments_left_is_lost_and_never_served(fr: ServiceStack) -> None:
    stack = fr
    data = os.urandom(100_000)
    await stack.put("coded", "k", data)
    ref = await ref_of(stack, "coded", "k")
    first, second, _ = ref.layout.sites
    stack.site(first).lose(ref.blob_id)
    stack.site(second).flip(ref.blob_id, HEADER_SIZE + 10)

    assert await stack.repairs.repair(ref) is Outcome.LOST

    state = await stack.repairs.scrub(0, full=True)
    assert state.found_bad == 1
    assert state.outcomes.lost == 1
    with pytest.raises((errors.ShardsUnavailable, errors.DataCorrupted)):
        await stack.get("coded", "k")
    assert stack.site(first).blobs.get(ref.blob_id) is None  # nothing was made up


async def test_a_blob_whose_object_went_is_left_alone(fr: ServiceStack) -> None:
    stack = fr
    await stack.put("fr-data", "k", b"soon gone")
    ref = await ref_of(stack, "fr-data", "k")
    stack.site(ref.layout.sites[0]).lose(ref.blob_id)
    await stack.objects.delete(ALICE, "fr-data", "k")
    before = stack.stored_blobs()
    assert await stack.repairs.repair(ref) is Outcome.VANISHED
    assert stack.stored_blobs() == before
