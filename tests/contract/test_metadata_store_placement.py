"""The metadata store's placement methods, on SQLite and PostgreSQL: sites, regions, blobs by
layout, relocation (the one write that moves a live blob's shards), the repair queue."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from andromede.core import errors
from andromede.core.models import BlobRef, Manifest, ObjectVersion, Segment
from andromede.core.placement import Layout, Redundancy, Region, Site, SiteState
from andromede.core.repair import (
    DrainProgress,
    DrainState,
    OutcomeCounts,
    RepairTotals,
    ScrubState,
)
from andromede.metadata.sql import SqlMetadataStore
from support.metadata import LATER, T0, garbage, part, upload

R3 = Layout(Redundancy.replicas(3), ("fr-a", "fr-b", "fr-c"))
MOVED = R3.moved(1, "fr-d")
EC = Layout(Redundancy(True, 2, 1), ("x", "fr-a", "y"))
FR_A = Layout.single("fr-a")  # one plain copy


def site(name: str, path: str | None = None) -> Site:
    return Site(name, "FR", f"dom-{name}", "acme", path or f"/srv/{name}")


def version_on(key: str, *refs: BlobRef) -> ObjectVersion:
    manifest = Manifest(tuple(Segment(ref, 10, part_number=i + 1) for i, ref in enumerate(refs)))
    return ObjectVersion("photos", key, f"v-{key}", manifest.size, "e", T0, manifest)


async def test_sites_and_regions(store: SqlMetadataStore) -> None:
    await store.create_site(site("fr-a"), T0)
    await store.create_site(site("fr-b"), T0)
    with pytest.raises(errors.SiteAlreadyExists):
        await store.create_site(site("fr-a", "/elsewhere"), T0)
    with pytest.raises(errors.SiteAlreadyExists):  # two sites on one directory
        await store.create_site(site("fr-z", "/srv/fr-a"), T0)
    await store.set_site_state("fr-b", SiteState.DRAINING, DrainProgress.queued())
    assert [(s.name, s.state) for s in await store.list_sites()] == [
        ("fr-a", SiteState.ACTIVE),
        ("fr-b", SiteState.DRAINING),
    ]
    assert await store.site_progress() == {"fr-b": DrainProgress.queued()}
    progress = DrainProgress(DrainState.BLOCKED, 3, ("photos",), 1, 2, T0)
    await store.set_site_progress("fr-b", progress)
    assert await store.site_progress() == {"fr-b": progress}
    with pytest.raises(errors.NoSuchSite):
        await store.set_site_state("nope", SiteState.DRAINING)
    region = Region("fr-only", frozenset({"FR", "BE"}), Redundancy.parse("ec:4+2"), 3)
    await store.create_region(region, T0)
    with pytest.raises(errors.RegionAlreadyExists):
        await store.create_region(region, T0)
    assert await store.list_regions() == [region]


async def test_blobs_by_site_name_exactly(store: SqlMetadataStore, bucket: str) -> None:
    del bucket
    await store.put_object(version_on("a", BlobRef(R3, "b1")))
    await store.put_object(version_on("b", BlobRef(Layout.single("fr-ab"), "b2")))  # a longer name
    await store.put_object(version_on("c", BlobRef(FR_A, "b3")))
    await store.create_upload(upload("u1"))
    await store.put_part(dataclasses.replace(part("u1", 1, "b4"), blob=BlobRef(EC, "b4")))
    found = await store.blobs_after(None, 10, site="fr-a")
    assert found == [BlobRef(R3, "b1"), BlobRef(FR_A, "b3"), BlobRef(EC, "b4")]
    assert await store.blobs_after(BlobRef(R3, "b1"), 1, site="fr-a") == [BlobRef(FR_A, "b3")]
    assert len(await store.blobs_after(None, 10)) == 4
    # the scrubber's listing: framed layouts only, a page at a time, across both tables
    assert await store.blobs_after(None, 10, framed_only=True) == [
        BlobRef(R3, "b1"),
        BlobRef(EC, "b4"),
    ]
    assert await store.blobs_after(None, 1, framed_only=True) == [BlobRef(R3, "b1")]
    assert await store.blobs_after(BlobRef(R3, "b1"), 1, framed_only=True) == [BlobRef(EC, "b4")]
    assert await store.blobs_after(BlobRef(EC, "b4"), 1, framed_only=True) == []
    assert await store.blob_buckets(BlobRef(EC, "b4")) == {"photos"}
    counts = await store.layout_counts()
    assert counts[R3] == 1
    assert counts[Layout.single("fr-ab")] == 1
    layouts = await store.blob_layouts(["b1", "b4", "missing"])
    assert layouts == {"b1": {R3}, "b4": {EC}}
    # a resume point kept as a blob id alone
    assert await store.blobs_after(None, 10, after_id="b2") == [
        BlobRef(FR_A, "b3"),
        BlobRef(EC, "b4"),
    ]


async def test_relocate_moves_every_live_reference(store: SqlMetadataStore, bucket: str) -> None:
    del bucket
    old, new = BlobRef(R3, "b1"), BlobRef(MOVED, "b1")
    other = BlobRef(R3, "b2")
    await store.put_object(version_on("a", old, other))
    await store.create_upload(upload("u1"))
    await store.put_part(dataclasses.replace(part("u1", 1, "b1"), blob=old))
    await store.queue_repairs([old], T0)
    assert await store.relocate_blob(old, new)
    moved = await store.get_object("photos", "a")
    assert moved is not None
    assert [s.blob for s in moved.manifest.segments] == [new, other]
    assert [p.blob for p in await store.list_parts("u1")] == [new]
    assert await store.count_repairs() == 0
    assert await store.blob_layouts(["b1"]) == {"b1": {MOVED}}
    # the replaced version's blobs are garbage under their new layout
    await store.put_object(version_on("a", BlobRef(FR_A, "b9")))
    await store.abort_upload("u1")
    assert "b1" in await garbage(store)
    assert {b.layout for b in await store.due_garbage(LATER, 100) if b.blob_id == "b1"} == {MOVED}
    assert not await store.relocate_blob(new, BlobRef(MOVED.moved(0, "fr-e"), "b1"))  # not live
    with pytest.raises(ValueError, match="blob id"):
        await store.relocate_blob(new, BlobRef(MOVED, "other"))


async def test_a_site_named_by_a_live_blob_cannot_go(store: SqlMetadataStore, bucket: str) -> None:
    del bucket
    await store.create_site(site("fr-b"), T0)
    await store.create_site(site("fr-d"), T0)
    await store.put_object(version_on("a", BlobRef(R3, "b1")))
    with pytest.raises(errors.SiteNotDrained):
        await store.delete_site("fr-b")
    await store.delete_site("fr-d")
    await store.delete_object("photos", "a")  # now only the garbage queue names fr-b
    await store.delete_site("fr-b")
    assert await store.list_sites() == []
    with pytest.raises(errors.NoSuchSite):
        await store.delete_site("fr-b")


async def test_repair_queue_and_job_state(store: SqlMetadataStore) -> None:
    refs = [BlobRef(R3, f"b{i}") for i in range(3)]
    await store.queue_repairs(refs, T0)
    await store.queue_repairs(refs[:1], LATER)  # queued once
    assert await store.count_repairs() == 3
    assert await store.queued_repairs(2) == refs[:2]
    await store.forget_repairs(refs[:2])
    assert await store.queued_repairs(10) == refs[2:]
    assert await store.scrub_state() is None
    await store.set_scrub_state(ScrubState(checked=1))
    scrub = ScrubState("b2", 1, T0, 2, 1, 4096, OutcomeCounts(repaired=1))
    await store.set_scrub_state(scrub)
    assert await store.scrub_state() == scrub
    assert await store.repair_totals() is None
    await store.add_repair_totals(RepairTotals(10, OutcomeCounts(moved=2), T0))
    await asyncio.gather(
        *(
            store.add_repair_totals(RepairTotals(1, OutcomeCounts(moved=1, lost=1), LATER))
            for _ in range(5)
        )
    )
    assert await store.repair_totals() == RepairTotals(15, OutcomeCounts(moved=7, lost=5), LATER)
