"""The placement `--placement-compare` measures: six local sites, three regions, the admin calls.

Every site is a directory in the workdir (so on the baseline's disk), its own failure domain,
jurisdiction FR; `one` keeps one copy, `r3` three on three failure domains, `ec42` an
erasure code of 4 data + 2 parity shards over six. A site keeps each blob's shard in
SITE/blobs/xx/<blob id>, under the same blob id on every site of the layout, which is how the
checks here tell a blob's shards apart from another's.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from andromede.cli.client import AdminClient

from .common import BenchError

SITES = 6
JURISDICTION = "FR"
BASE = "one"  # the layout the others are compared with
# region name -> (redundancy, min failure domains, shards per blob)
REGIONS = {"one": ("replicas:1", 1, 1), "r3": ("replicas:3", 3, 3), "ec42": ("ec:4+2", 6, 6)}
# The background repair loop (queued repairs, drains, then 5 s of scrubbing at 50 MB/s, every
# 10 s) would read shards during the figures, and could mend the damage before the timed repair
# round: here it runs once at start, on an empty store, then once an hour.
SERVER_ENV = {"ANDROMEDE_REPAIR_INTERVAL_SECONDS": "3600"}
# placement_refresh_seconds: a worker process that did not take the admin call sees a new
# region at most this late. Writes wait that long (and a little) after the regions are made.
REFRESH_S = 2.0
REPAIR_TIMEOUT_S = 600.0


class Admin(AdminClient):
    """The server's admin API (SigV4-signed, as `andromede` CLI calls it), any timeout: one
    repair round re-reads every shard in the store."""

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        url, headers = self._signed(method, path, data, body is not None, None)
        try:
            resp = httpx.request(method, url, content=data, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise BenchError(f"admin {method} {path}: {exc!r}") from exc
        if resp.status_code >= 400:
            raise BenchError(f"admin {method} {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def repair_status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.call("GET", "/v1/repair")
        return status

    def repair_run(self) -> tuple[dict[str, Any], float]:
        """POST /v1/repair/run (queued repairs, drains, one whole scrub pass): the status it
        returns and the seconds it took."""
        t0 = time.perf_counter()
        status: dict[str, Any] = self.call("POST", "/v1/repair/run", timeout=REPAIR_TIMEOUT_S)
        return status, time.perf_counter() - t0


@dataclasses.dataclass(frozen=True)
class SiteDir:
    name: str
    path: Path

    def blob_files(self) -> dict[Path, int]:
        """Every committed blob file of the site and its size."""
        out: dict[Path, int] = {}
        for p in (self.path / "blobs").glob("*/*"):
            with contextlib.suppress(OSError):
                out[p] = p.stat().st_size
        return out


def register(admin: Admin, root: Path, log: Callable[[str], None]) -> list[SiteDir]:
    """The six sites (directories under `root`) and the three regions."""
    sites = [SiteDir(f"fr{i}", root / f"fr{i}") for i in range(SITES)]
    for i, s in enumerate(sites):
        body: dict[str, Any] = {
            "name": s.name,
            "jurisdiction": JURISDICTION,
            "failure_domain": f"fd{i}",
            "provider": "s3bench",
            "path": str(s.path),
        }
        admin.call("POST", "/v1/sites", body)
    for name, (redundancy, domains, _) in REGIONS.items():
        body = {
            "name": name,
            "jurisdictions": [JURISDICTION],
            "redundancy": redundancy,
            "min_failure_domains": domains,
        }
        admin.call("POST", "/v1/regions", body)
    log(
        f"  {SITES} sites {sites[0].name}..{sites[-1].name} under {root} (one failure domain "
        f"each, {JURISDICTION}); regions "
        + ", ".join(f"{n} ({r}, >= {d} domains)" for n, (r, d, _) in REGIONS.items())
    )
    time.sleep(REFRESH_S + 0.5)
    return sites


def snapshot(sites: list[SiteDir]) -> dict[str, dict[Path, int]]:
    """Each site's blob files now."""
    return {s.name: s.blob_files() for s in sites}


def new_blobs(
    before: dict[str, dict[Path, int]], after: dict[str, dict[Path, int]]
) -> dict[str, list[tuple[str, int]]]:
    """Blob id -> (site, bytes) of each shard written between the two snapshots."""
    out: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for site, files in after.items():
        for path, size in files.items():
            if path not in before.get(site, {}):
                out[path.name].append((site, size))
    return dict(out)


@dataclasses.dataclass
class LayoutCheck:
    """What one bucket's setup objects became on the sites."""

    region: str
    objects: int
    object_bytes: int
    shards: list[int]  # sites per blob
    stored: int  # bytes of all their shard files

    @property
    def expansion(self) -> float:
        return self.stored / self.object_bytes if self.object_bytes else 0.0

    def describe(self) -> str:
        per = sorted(set(self.shards))
        return (
            f"{self.region}: {len(self.shards)} blobs for {self.objects} objects, "
            f"{'/'.join(map(str, per))} sites each, {self.expansion:.3f} B stored per B"
        )


def check_layout(
    region: str, blobs: dict[str, list[tuple[str, int]]], objects: int, object_bytes: int
) -> LayoutCheck:
    """Stop unless every blob has one shard on each of as many distinct sites as the region
    asks (a bucket on the wrong layout would make its column meaningless)."""
    want = REGIONS[region][2]
    shards = [len({site for site, _ in parts}) for parts in blobs.values()]
    stored = sum(size for parts in blobs.values() for _, size in parts)
    check = LayoutCheck(region, objects, object_bytes, shards, stored)
    if len(shards) != objects or any(n != want for n in shards):
        raise BenchError(
            f"placement check: {check.describe()}; expected {objects} blobs of {want} shards"
        )
    return check
