"""How fast the lifecycle job deletes expired noncurrent versions (issue 15's figure).

Builds a gateway's services on a fresh data dir (SQLite, its local site), fills one bucket's
history straight through SQL (``versions_listing.fill``: KEYS keys x VERSIONS versions, blobs
that are never read), gives it a rule that expires every noncurrent version, and times one
pass of the job: versions deleted per second. Each deletion is one transaction (the version's
row, its blob references, its blobs queued for the sweeper) and one audit event.

Its cost on requests served meanwhile: the same process (as in a gateway, where the job runs
between requests) reads a 4 KiB object through the services in a loop, one read at a time,
for a while before the pass and during it: reads per second, idle against during.

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

from andromede.bootstrap import Runtime, build_runtime
from andromede.core.lifecycle import (
    LifecycleConfig,
    LifecycleFilter,
    LifecycleRule,
    NoncurrentExpiration,
)
from andromede.core.models import Principal
from andromede.services.body import body_from_bytes
from andromede.services.objects import Integrity, ObjectAttributes
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
            reader = Reader(runtime)
            await reader.setup()
            idle = await reader.rate(5.0)
            t0 = time.perf_counter()
            pass_task = asyncio.create_task(runtime.services.lifecycle.run_once())
            during = await reader.rate_until(pass_task)
            done = await pass_task
            elapsed = time.perf_counter() - t0
        finally:
            await runtime.close()
    deleted = done["noncurrent_deleted"]
    print(f"{keys:,} keys x {versions} versions: {deleted:,} noncurrent versions deleted in "
          f"{elapsed:.1f} s = {deleted / elapsed:,.0f} versions/s (one pass, SQLite)")  # fmt: skip
    print(f"4 KiB reads in the same process, one at a time: {idle:,.0f}/s idle, "
          f"{during:,.0f}/s during the pass ({during / idle:.0%})")  # fmt: skip


class Reader:
    """Reads one 4 KiB object through the services, in a loop."""

    def __init__(self, runtime: Runtime) -> None:
        self.services = runtime.services
        self.principal = Principal("bench", "acme", False)

    async def setup(self) -> None:
        await self.services.buckets.create(self.principal, "foreground", None)
        await self.services.objects.put(
            self.principal, "foreground", "k", body_from_bytes(bytes(4096)),
            ObjectAttributes(), Integrity(),
        )  # fmt: skip

    async def _read(self) -> None:
        got = await self.services.objects.get(self.principal, "foreground", "k")
        assert got.body is not None
        async for _ in got.body:
            pass

    async def rate(self, seconds: float) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await self._read()
            n += 1
        return n / (time.perf_counter() - t0)

    async def rate_until(self, task: asyncio.Task[dict[str, int]]) -> float:
        n, t0 = 0, time.perf_counter()
        while not task.done():
            await self._read()
            n += 1
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--versions", type=int, default=10)
    a = ap.parse_args()
    asyncio.run(measure(a.keys, a.versions))


if __name__ == "__main__":
    main()
