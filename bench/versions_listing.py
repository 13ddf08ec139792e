"""ListObjectVersions page time as a bucket's history grows (issue 15's figure).

Fills one bucket's metadata straight through SQL (rows as the store writes them: one current
row per key in ``objects``, the older versions in ``object_versions``), then times pages of
1,000 entries through the same paging code the S3 face calls (``list_versions_page``): the
first page, one from the middle (resumed with a key marker and a version-id marker, as
clients resume), and the last; with and without a delimiter. Prints the median of the
repeats, per shape of bucket. No server: what is measured is the store and the paging.

    python bench/versions_listing.py                      # 10^3 keys x 100, then 10^4 x 100
    python bench/versions_listing.py --database-url postgresql+asyncpg://...  # on PostgreSQL

Figures only, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from andromede.core.models import BlobRef, Bucket, Manifest, ObjectVersion, Segment, Tenant
from andromede.core.placement import Layout
from andromede.metadata import codec
from andromede.metadata import schema as t
from andromede.metadata.sql import SqlMetadataStore, open_store
from andromede.services.listing import list_versions_page

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BUCKET = "history"
PAGE = 1000


def _row(key: str, seq: int, n: int) -> dict[str, object]:
    manifest = Manifest((Segment(BlobRef(Layout.single("local"), f"{n:032x}"), 4096),))
    version = ObjectVersion(
        BUCKET, key, f"{n:032x}", 4096, '"e"', T0 + dt.timedelta(seconds=seq), manifest,
        owner="acme", null_version=False,
    )  # fmt: skip
    return {**codec.object_values(version), "seq": seq}


async def fill(store: SqlMetadataStore, keys: int, versions: int) -> None:
    """``keys`` keys under ``dir-NN/`` prefixes, each with ``versions`` versions."""
    await store.create_tenant(Tenant("acme", T0))
    await store.create_bucket(Bucket(BUCKET, "acme", T0))
    n = 0
    batch_current: list[dict[str, object]] = []
    batch_old: list[dict[str, object]] = []

    async def flush() -> None:
        async def op(conn: object) -> None:
            if batch_current:
                await conn.execute(t.objects.insert(), batch_current)  # type: ignore[attr-defined]
            if batch_old:
                await conn.execute(t.object_versions.insert(), batch_old)  # type: ignore[attr-defined]

        await store._tx.write(op)
        batch_current.clear()
        batch_old.clear()

    for k in range(keys):
        key = f"dir-{k % 100:02d}/object-{k:07d}"
        batch_current.append(_row(key, versions, n))
        n += 1
        for seq in range(1, versions):
            batch_old.append({**_row(key, seq, n), "noncurrent_since": T0})
            n += 1
        if len(batch_old) >= 20_000:
            await flush()
    await flush()


async def time_pages(store: SqlMetadataStore, keys: int, repeats: int) -> dict[str, float]:
    """Median seconds of a 1,000-entry page at the start, the middle and the end."""
    middle_key = f"dir-{(keys // 2) % 100:02d}/object-{keys // 2:07d}"
    ordered = sorted(f"dir-{k % 100:02d}/object-{k:07d}" for k in range(keys))
    near_end = ordered[-6]  # five keys left: half a page of versions
    starts = {"first page": ("", ""), "middle page": (middle_key, ""), "last page": (near_end, "")}
    out: dict[str, float] = {}
    for delimiter in ("", "/"):
        for name, (key_marker, version_marker) in starts.items():
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                page = await list_versions_page(
                    store, BUCKET, prefix="", delimiter=delimiter, key_marker=key_marker,
                    version_marker=version_marker, max_keys=PAGE,
                )  # fmt: skip
                samples.append(time.perf_counter() - t0)
            label = f"{name}{' (delimiter /)' if delimiter else ''}"
            out[label] = statistics.median(samples)
            out[label + " entries"] = len(page.versions) + len(page.prefixes)
    return out


async def one_shape(url: str, keys: int, versions: int, repeats: int) -> None:
    store = await open_store(url)
    try:
        t0 = time.perf_counter()
        await fill(store, keys, versions)
        filled = time.perf_counter() - t0
        figures = await time_pages(store, keys, repeats)
    finally:
        await store.close()
    print(f"\n{keys:,} keys x {versions} versions = {keys * versions:,} versions "
          f"(filled in {filled:.0f} s)")  # fmt: skip
    print("| page of 1,000 | ms (median) | entries |")
    print("|---|---:|---:|")
    for label, value in figures.items():
        if not label.endswith(" entries"):
            print(f"| {label} | {value * 1000:.1f} | {int(figures[label + ' entries'])} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shapes", default="1000x100,10000x100", help="KEYSxVERSIONS, comma list")
    a = ap.parse_args()
    for shape in a.shapes.split(","):
        keys, versions = (int(x) for x in shape.split("x"))
        with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
            url = a.database_url or f"sqlite+aiosqlite:///{tmp}/meta.db"
            asyncio.run(one_shape(url, keys, versions, a.repeats))


if __name__ == "__main__":
    main()
