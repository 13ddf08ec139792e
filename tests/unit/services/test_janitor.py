"""The janitor removes what nothing references (replaced, deleted and aborted data,
interrupted writes, orphans of a crash) once its grace period has passed, and never what
something references. Time moves by the fake clock, the sites' blob ages with it."""

from __future__ import annotations

import datetime as dt
import os

from andromede.core.models import BlobRef
from andromede.services.body import body_from_bytes
from andromede.services.multipart import CompletedPart
from andromede.services.objects import Integrity, ObjectAttributes
from support.multipart import PART
from support.services import (
    ALICE,
    GARBAGE_GRACE,
    ORPHAN_SCAN_INTERVAL,
    TEMP_GRACE,
    ServiceStack,
)

SECOND = dt.timedelta(seconds=1)


async def blob_of(stack: ServiceStack, bucket: str, key: str) -> BlobRef:
    version = (await stack.objects.get(ALICE, bucket, key, with_body=False)).version
    [segment] = version.manifest.segments
    return segment.blob


async def plant(stack: ServiceStack, site: str = "local") -> str:
    """A committed blob no metadata names: what a crash between the data commit and the
    metadata commit leaves."""
    blob_id = os.urandom(16).hex()
    await stack.site(site).put(blob_id, b"orphan")
    return blob_id


async def test_replaced_and_deleted_blobs_go_after_the_grace(
    stack: ServiceStack, bucket: str
) -> None:
    await stack.put(bucket, "keep", os.urandom(3 * 1024 * 1024))
    await stack.put(bucket, "overwritten", b"v1")
    await stack.put(bucket, "deleted", b"v1")
    old = {(await blob_of(stack, bucket, k)).blob_id for k in ("overwritten", "deleted")}
    await stack.put(bucket, "overwritten", b"v2")
    await stack.objects.delete(ALICE, bucket, "deleted")
    await stack.objects.delete_many(ALICE, bucket, [("never-existed", None, None)])

    stack.clock.advance(GARBAGE_GRACE - SECOND)
    assert (await stack.janitor.sweep())["garbage"] == 0  # readers in flight may need them
    assert old <= set(stack.site().blobs)

    stack.clock.advance(SECOND)
    assert (await stack.janitor.sweep())["garbage"] == 2
    live = {(await blob_of(stack, bucket, k)).blob_id for k in ("keep", "overwritten")}
    assert set(stack.site().blobs) == live
    assert await stack.get(bucket, "overwritten") == b"v2"
    stack.clock.advance(ORPHAN_SCAN_INTERVAL * 3)  # many more sweeps over the live data
    for _ in range(3):
        await stack.janitor.sweep()
    assert set(stack.site().blobs) == live
    assert await stack.store.due_garbage(stack.clock.now(), 10) == []


async def test_multipart_parts_are_collected(stack: ServiceStack, bucket: str) -> None:
    big = os.urandom(PART)
    aborted = await stack.multipart.create(ALICE, bucket, "aborted", ObjectAttributes(), None, None)
    aborted_parts = [
        (
            await stack.multipart.upload_part(
                ALICE, bucket, "aborted", aborted.upload_id, n, body_from_bytes(big), Integrity()
            )
        ).part
        for n in (1, 2)
    ]
    done = await stack.multipart.create(ALICE, bucket, "done", ObjectAttributes(), None, None)

    async def part(number: int, data: bytes) -> CompletedPart:
        stored = (
            await stack.multipart.upload_part(
                ALICE, bucket, "done", done.upload_id, number, body_from_bytes(data), Integrity()
            )
        ).part
        return CompletedPart(number, stored.etag)

    await part(1, b"replaced")
    kept = [await part(1, big), await part(2, b"tail")]
    await part(3, b"left out")
    await stack.multipart.complete(ALICE, bucket, "done", done.upload_id, kept, None, None)
    await stack.multipart.abort(ALICE, bucket, "aborted", aborted.upload_id)
    assert len(stack.site().blobs) == 6

    stack.clock.advance(GARBAGE_GRACE)
    assert (await stack.janitor.sweep())["garbage"] == 4

    version = (await stack.objects.get(ALICE, bucket, "done", with_body=False)).version
    assert set(stack.site().blobs) == {s.blob.blob_id for s in version.manifest.segments}
    assert not {p.blob.blob_id for p in aborted_parts} & set(stack.site().blobs)
    assert await stack.get(bucket, "done") == big + b"tail"


async def test_orphans_go_once_older_than_any_write_in_flight(
    stack: ServiceStack, bucket: str
) -> None:
    await stack.put(bucket, "live", b"named by metadata")
    live = (await blob_of(stack, bucket, "live")).blob_id
    old_orphan = await plant(stack)
    stack.clock.advance(TEMP_GRACE + SECOND)
    young_orphan = await plant(stack)  # a write whose metadata may still be on its way

    assert (await stack.janitor.sweep())["orphans"] == 1
    assert set(stack.site().blobs) == {live, young_orphan}

    # The orphan scan reads every blob id: it runs once per interval, not at every sweep.
    stack.clock.advance(TEMP_GRACE)
    assert (await stack.janitor.sweep())["orphans"] == 0
    assert young_orphan in stack.site().blobs
    stack.clock.advance(ORPHAN_SCAN_INTERVAL)
    assert (await stack.janitor.sweep())["orphans"] == 1
    assert set(stack.site().blobs) == {live}
    assert old_orphan not in stack.site().blobs
    assert await stack.get(bucket, "live") == b"named by metadata"


async def test_interrupted_writes_go_after_the_temporary_grace(stack: ServiceStack) -> None:
    site = stack.site()
    stale = await site.create(os.urandom(16).hex())
    await stale.write(b"a client that went away")
    stack.clock.advance(TEMP_GRACE)
    fresh = await site.create(os.urandom(16).hex())
    await fresh.write(b"still arriving")
    stack.clock.advance(SECOND)

    assert (await stack.janitor.sweep())["temporary"] == 1

    assert len(site.pending) == 1
    await fresh.commit()  # the write in progress was spared
    assert len(site.blobs) == 1


async def test_a_slow_body_is_aged_from_its_commit(stack: ServiceStack) -> None:
    """Regression (resilience/test_sweeper.py): a blob whose last byte came long before its
    commit is not taken for an old orphan while its metadata commits: its age counts from
    the data commit."""
    site = stack.site()
    writer = await site.create(os.urandom(16).hex())
    await writer.write(b"the whole body, then a long pause before its end")
    stack.clock.advance(2 * TEMP_GRACE)
    await writer.commit()
    assert (await stack.janitor.sweep())["orphans"] == 0
    assert len(site.blobs) == 1


async def test_everything_unreferenced_goes_at_start(stack: ServiceStack, bucket: str) -> None:
    live = {f"k{i}": os.urandom(1000 * i) for i in range(4)}
    for key, data in live.items():
        await stack.put(bucket, key, data)
    orphan = await plant(stack)
    interrupted = await stack.site().create(os.urandom(16).hex())
    await interrupted.write(b"cut by a crash")
    stack.clock.advance(SECOND)  # the restart

    result = await stack.janitor.sweep(at_start=True)  # no write can be in flight

    assert (result["orphans"], result["temporary"]) == (1, 1)
    assert orphan not in stack.site().blobs
    assert stack.site().pending == {}
    for key, data in live.items():
        assert await stack.get(bucket, key) == data


async def test_shards_of_a_layout(cluster: ServiceStack) -> None:
    """Garbage of a layout goes from every site it names; a shard file is live where its
    layout names its site, an orphan on any other site."""
    stack = cluster
    await stack.put("fr-ec-data", "k", b"sharded" * 1000)
    ref = await blob_of(stack, "fr-ec-data", "k")
    holders = set(ref.layout.sites)
    other = ({"fr-a", "fr-b", "fr-c", "fr-d", "be-a", "us-a"} - holders).pop()
    await stack.site(other).put(ref.blob_id, b"stale shard")  # e.g. left by a moved repair
    stack.clock.advance(TEMP_GRACE + SECOND)

    assert (await stack.janitor.sweep())["orphans"] == 1
    assert {n for n, blobs in stack.stored_blobs().items() if ref.blob_id in blobs} == holders

    await stack.objects.delete(ALICE, "fr-ec-data", "k")
    stack.clock.advance(GARBAGE_GRACE)
    assert (await stack.janitor.sweep())["garbage"] == 1
    assert all(ref.blob_id not in blobs for blobs in stack.stored_blobs().values())


async def test_garbage_on_a_site_out_of_reach_waits_for_it(stack: ServiceStack) -> None:
    """A single-copy blob whose site is away stays queued (deleting it is not possible, and
    dropping its entry would leak it); the other sites' garbage goes meanwhile; once the site is
    back, its garbage goes too."""
    for site, code in (("fr-away", "FR"), ("be-near", "BE")):
        await stack.add_site(site, code)
        await stack.add_region(f"{site}-only", [code], "replicas:1")
    await stack.buckets.create(ALICE, "far", "fr-away-only")
    await stack.buckets.create(ALICE, "near", "be-near-only")
    for bucket in ("far", "near"):
        await stack.put(bucket, "k", b"old " + bucket.encode())
    far = await blob_of(stack, "far", "k")
    near = await blob_of(stack, "near", "k")
    assert far.layout.sites != near.layout.sites
    far_site = far.layout.sites[0]
    for bucket in ("far", "near"):
        await stack.objects.delete(ALICE, bucket, "k")
    stack.clock.advance(GARBAGE_GRACE)

    await stack.set_offline(far_site)
    assert (await stack.janitor.sweep())["garbage"] == 1
    assert near.blob_id not in stack.site(near.layout.sites[0]).blobs
    assert await stack.store.due_garbage(stack.clock.now(), 10) == [far]
    # Back, and seen back by the registry: its garbage goes.
    await stack.set_offline(far_site, False)
    assert (await stack.janitor.sweep())["garbage"] == 1
    assert far.blob_id not in stack.site(far_site).blobs
    assert await stack.store.due_garbage(stack.clock.now(), 10) == []


async def test_a_delete_that_fails_keeps_the_entry_and_spares_the_rest(
    stack: ServiceStack,
) -> None:
    """A site lost between the registry's last look and the delete: the delete fails, the entry
    stays, the pass goes on with the other sites' garbage."""
    for site, code in (("fr-flaky", "FR"), ("be-steady", "BE")):
        await stack.add_site(site, code)
        await stack.add_region(f"{site}-only", [code], "replicas:1")
    await stack.buckets.create(ALICE, "flaky", "fr-flaky-only")
    await stack.buckets.create(ALICE, "steady", "be-steady-only")
    refs = {}
    for bucket in ("flaky", "steady"):
        await stack.put(bucket, "k", b"x")
        refs[bucket] = await blob_of(stack, bucket, "k")
        await stack.objects.delete(ALICE, bucket, "k")
    stack.clock.advance(GARBAGE_GRACE)
    stack.site(refs["flaky"].layout.sites[0]).offline = True  # the registry has not seen it
    assert (await stack.janitor.sweep())["garbage"] == 1
    assert await stack.store.due_garbage(stack.clock.now(), 10) == [refs["flaky"]]
