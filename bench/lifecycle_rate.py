"""How fast the lifecycle job deletes expired noncurrent versions (issue 15's figure).

Builds a gateway's services on a fresh data dir (SQLite, its local site), fills one bucket's
history straight through SQL (``versions_listing.fill``: KEYS keys x VERSIONS versions, blobs
that are never read), gives it a rule that expires every noncurrent version, and times one
pass of the job: versions deleted per second. Each deletion is one transaction (the version's
row, its blob references, its blobs queued for the sweeper) and one audit event.

    python bench/lifecycle_rate.py                 # 2,000 keys x 10 versions
    python bench/lifecycle_rate.py --keys 10000    # 10^5 versions

Figures only, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from andromede.bootstrap import build_runtime
from andromede.core.lifecycle import (
    LifecycleConfig,
    LifecycleFilter,
    LifecycleRule,
    NoncurrentExpiration,
)
from andromede.settings import Settings
from versions_listing import BUCKET, fill

REPO = Path(__file__).resolve().parent.parent


async def measure(keys: int, versions: int) -> None:
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        settings = Settings(data_dir=data, lifecycle_day_seconds=0.001)
        runtime = await build_runtime(settings)
        try:
            store = runtime.store
            await fill(store, keys, versions)
            rule = LifecycleRule("old", True, LifecycleFilter(), noncurrent=NoncurrentExpiration(1))
            await store.set_bucket_lifecycle(BUCKET, LifecycleConfig((rule,)))
            await asyncio.sleep(0.05)  # every version is a "day" (1 ms) old
            t0 = time.perf_counter()
            done = await runtime.services.lifecycle.run_once()
            elapsed = time.perf_counter() - t0
        finally:
            await runtime.close()
    deleted = done["noncurrent_deleted"]
    print(f"{keys:,} keys x {versions} versions: {deleted:,} noncurrent versions deleted in "
          f"{elapsed:.1f} s = {deleted / elapsed:,.0f} versions/s (one pass, SQLite)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--versions", type=int, default=10)
    a = ap.parse_args()
    asyncio.run(measure(a.keys, a.versions))


if __name__ == "__main__":
    main()
