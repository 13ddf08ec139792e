"""`--placement-compare`, second part: how fast a repair round rebuilds a lost site's shards.

N objects go to a bucket of each redundant region (r3, ec42). Then, round by round, the same
three cases are timed in turn, the order reversed each round: a repair round with nothing
damaged (`clean`: the whole scrub pass, every shard re-read and its frames' CRCs checked), and
for each layout, a round after the shard files of that layout's objects on one site were
deleted (as a lost disk would). A round is one POST /v1/repair/run, timed from here. The bytes
rebuilt are the sizes of the deleted files found again, rewritten in place, after the round.
At the end every object is read back and its SHA-256 compared with what was written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import WARMUP, BenchError, MiB
from .figures import drop_caches, payload, unique_prefix
from .placesetup import REGIONS, Admin, SiteDir, new_blobs, snapshot
from .report import fmt_num, markdown_table
from .targets import Target, botocore_client

CLEAN = "clean"
REDUNDANT = [r for r, (_, _, shards) in REGIONS.items() if shards > 1]
_READ = 8 * MiB


@dataclasses.dataclass
class Round:
    case: str  # CLEAN or a region
    site: str  # the site whose shards were deleted ("" for CLEAN)
    deleted: int  # shard files deleted
    deleted_bytes: int
    rebuilt_bytes: int  # bytes of the deleted files back after the round
    missing: int  # deleted files not back, or back with another size
    seconds: float  # POST /v1/repair/run
    scrub: dict[str, int]  # the scrub counters' growth (checked, found_bad, repaired, ...)
    status_rebuilt: int  # status()["repair"]["bytes_rebuilt"] the round returned


@dataclasses.dataclass
class RepairReport:
    objects: int  # per layout
    object_bytes: int
    rounds: dict[str, list[Round]]
    verified: int  # objects read back intact
    bad: list[str]  # objects read back wrong
    status_rebuilt: tuple[int, int]  # status()["repair"]["bytes_rebuilt"] before, after
    cold: bool  # the page cache was dropped before each round
    first: Round  # the unrecorded first clean round, over shards not yet in the page cache


_COUNTERS = ("checked", "found_bad", "repaired", "lost", "blocked", "unavailable", "bytes_checked")


def _status_rebuilt(status: dict[str, Any]) -> int:
    return int(status.get("repair", {}).get("bytes_rebuilt", 0))


def _counters(status: dict[str, Any]) -> dict[str, int]:
    scrub = status.get("scrub", {})
    return {k: int(scrub.get(k, 0)) for k in _COUNTERS}


def _pick_site(files: dict[str, dict[Path, int]], sites: list[SiteDir], r: int) -> SiteDir:
    """The site holding the most shards of the layout, rotating among ties round by round."""
    return min(enumerate(sites), key=lambda e: (-len(files[e[1].name]), (e[0] - r) % len(sites)))[1]


class RepairBench:
    def __init__(
        self,
        target: Target,
        admin: Admin,
        sites: list[SiteDir],
        log: Callable[[str], None],
        *,
        cold: bool = False,
    ) -> None:
        self.target = target
        self.cold = cold  # drop the page cache before each round (--drop-caches)
        self.admin = admin
        self.sites = sites
        self.log = log
        self.client = botocore_client(target)
        self.buckets: dict[str, str] = {}
        self.digests: dict[tuple[str, str], bytes] = {}  # (region, key) -> SHA-256
        self.files: dict[str, dict[str, dict[Path, int]]] = {}  # region -> site -> path -> size

    def fill(self, n: int, size: int, tag: str) -> None:
        """N objects of `size` in a fresh bucket of each redundant region; note their shards."""
        body = memoryview(payload(size))
        for region in REDUNDANT:
            bucket = f"s3bench-repair-{region}-{tag}"
            conf = {"LocationConstraint": region}
            self.client.create_bucket(Bucket=bucket, CreateBucketConfiguration=conf)
            self.buckets[region] = bucket
            before = snapshot(self.sites)
            for i in range(n):
                key = f"repair/{i}"
                data = unique_prefix(f"{bucket}/{key}", i) + body[16:]
                self.client.put_object(Bucket=bucket, Key=key, Body=data)
                self.digests[(region, key)] = hashlib.sha256(data).digest()
            after = snapshot(self.sites)
            blobs = new_blobs(before, after)
            if len(blobs) != n:
                raise BenchError(f"repair setup: {n} objects in {region} made {len(blobs)} blobs")
            self.files[region] = {
                s.name: {p: sz for p, sz in after[s.name].items() if p not in before[s.name]}
                for s in self.sites
            }
            per_site = ", ".join(f"{s}: {len(f)}" for s, f in self.files[region].items())
            self.log(
                f"  repair setup {region}: {n} x {size // MiB} MiB; shards per site {per_site}"
            )

    def wipe(self, case: str, r: int) -> tuple[str, dict[Path, int]]:
        """Delete the shard files of `case`'s objects on one site (none for CLEAN): the site,
        and the files with their sizes."""
        if case == CLEAN:
            return "", {}
        site = _pick_site(self.files[case], self.sites, r).name
        deleted = {}
        for path in self.files[case][site]:
            deleted[path] = path.stat().st_size
            path.unlink()
        return site, deleted

    def one_round(self, case: str, r: int) -> Round:
        """Wipe, then one timed repair round; what it rebuilt and what the counters say."""
        site, deleted = self.wipe(case, r)
        if self.cold:
            drop_caches()
        before = _counters(self.admin.repair_status())
        status, seconds = self.admin.repair_run()
        after = _counters(status)
        back = {p: p.stat().st_size for p in deleted if p.exists()}
        rebuilt = sum(size for p, size in deleted.items() if back.get(p) == size)
        missing = sum(1 for p, size in deleted.items() if back.get(p) != size)
        growth = {k: after[k] - before[k] for k in _COUNTERS}
        rnd = Round(
            case,
            site,
            len(deleted),
            sum(deleted.values()),
            rebuilt,
            missing,
            seconds,
            growth,
            _status_rebuilt(status),
        )
        name = f"r{r}" if r >= 0 else WARMUP
        self.log(
            f"  repair round {name} {case:<5} {site or '-':<4} deleted {len(deleted)} shards "
            f"({rnd.deleted_bytes / 1e6:,.0f} MB), {seconds:.2f} s, rebuilt "
            f"{rebuilt / 1e6:,.0f} MB; scrub {growth['checked']} checked, "
            f"{growth['found_bad']} bad, {growth['repaired']} repaired, "
            f"{growth['bytes_checked'] / 1e6:,.0f} MB read; status repair.bytes_rebuilt "
            f"{rnd.status_rebuilt:,}"
        )
        return rnd

    def verify(self) -> tuple[int, list[str]]:
        """GET every object, compare its SHA-256 with what was written."""
        good, bad = 0, []
        for (region, key), digest in self.digests.items():
            body = self.client.get_object(Bucket=self.buckets[region], Key=key)["Body"]
            h = hashlib.sha256()
            while piece := body.read(_READ):
                h.update(piece)
            if h.digest() == digest:
                good += 1
            else:
                bad.append(f"{self.buckets[region]}/{key}")
        return good, bad


def run_repair_rounds(bench: RepairBench, n: int, size: int, runs: int, tag: str) -> RepairReport:
    """Fill, one unrecorded clean round (the first pass over freshly written shards is
    slower), then `runs` rounds of (clean, each layout), order reversed each round; verify."""
    rebuilt0 = _status_rebuilt(bench.admin.repair_status())
    bench.fill(n, size, tag)
    first = bench.one_round(CLEAN, -1)
    cases = [CLEAN, *REDUNDANT]
    rounds: dict[str, list[Round]] = {c: [] for c in cases}
    for r in range(runs):
        for case in cases if r % 2 == 0 else reversed(cases):
            rounds[case].append(bench.one_round(case, r))
    rebuilt1 = _status_rebuilt(bench.admin.repair_status())
    good, bad = bench.verify()
    bench.log(f"  read back {good} of {good + len(bad)} objects intact")
    status = (rebuilt0, rebuilt1)
    return RepairReport(n, size, rounds, good, bad, status, bench.cold, first)


# --------------------------------------------------------------------------------------------
# The table and the notes under it.


def _mmm(values: list[float], fmt: Callable[[float], str] = fmt_num) -> str:
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def render_repair(rep: RepairReport) -> str:
    header = [
        f"repair round ({rep.objects} x {rep.object_bytes // MiB} MiB per layout)",
        "shards deleted",
        "MB rebuilt",
        "seconds",
        "MB/s rebuilt",
        "MB/s net of clean pass",
        "MB re-read (scrub)",
    ]
    rows = [header]
    clean = rep.rounds[CLEAN]
    for case, rounds in rep.rounds.items():
        secs = [x.seconds for x in rounds]
        read = [x.scrub["bytes_checked"] / 1e6 for x in rounds]
        if case == CLEAN:
            rows.append(
                ["clean (nothing deleted)", "0", "0", _mmm(secs, _secs), "-", "-", _mmm(read)]
            )
            continue
        mb = [x.rebuilt_bytes / 1e6 for x in rounds]
        rate = [m / s for m, s in zip(mb, secs, strict=True)]
        # Of the medians: a difference of two noisy times, pair by pair, swings too far.
        extra = statistics.median(secs) - statistics.median(x.seconds for x in clean)
        rows.append(
            [
                f"{case}: one site's shards deleted",
                _mmm([float(x.deleted) for x in rounds]),
                _mmm(mb),
                _mmm(secs, _secs),
                _mmm(rate),
                fmt_num(statistics.median(mb) / extra) if extra > 0 else "-",
                _mmm(read),
            ]
        )
    return markdown_table(rows)


def _secs(v: float) -> str:
    return f"{v:.2f}"


def repair_notes(rep: RepairReport) -> list[str]:
    out = []
    nobj = rep.verified + len(rep.bad)
    first = rep.first
    after = "dropped before each round" if rep.cold else "the recorded rounds read it"
    out.append(
        f"first clean round, unrecorded: {first.seconds:.2f} s for "
        f"{first.scrub['bytes_checked'] / 1e6:,.0f} MB re-read (large blobs are written with "
        f"O_DIRECT, so that pass reads the disk, not the page cache; {after})"
    )
    if rep.bad:
        out.append(
            f"FAILED: {len(rep.bad)} of {nobj} objects read back wrong after the repair "
            f"rounds: {', '.join(rep.bad[:5])}"
        )
    else:
        out.append(f"read back after all rounds: {rep.verified} of {nobj} objects intact")
    for case, rounds in rep.rounds.items():
        lost = sum(x.missing for x in rounds)
        if lost:
            out.append(f"WARNING: {case}: {lost} deleted shard file(s) not rebuilt in place")
        for x in rounds:
            if case != CLEAN and x.scrub["found_bad"] != x.deleted:
                out.append(
                    f"WARNING: {case} round on {x.site}: {x.deleted} blobs damaged, the scrub "
                    f"found {x.scrub['found_bad']} bad and repaired {x.scrub['repaired']}"
                )
    moved = rep.status_rebuilt[1] - rep.status_rebuilt[0]
    measured = sum(x.rebuilt_bytes for rs in rep.rounds.values() for x in rs)
    out.append(
        f"status repair.bytes_rebuilt moved by {moved:,} B over the rounds; the deleted shard "
        f"files rewritten on disk hold {measured:,} B"
    )
    return out


def repair_json(rep: RepairReport) -> dict[str, Any]:
    return {
        "objects_per_layout": rep.objects,
        "object_bytes": rep.object_bytes,
        "rounds": {c: [dataclasses.asdict(x) for x in rs] for c, rs in rep.rounds.items()},
        "verified": rep.verified,
        "bad": rep.bad,
        "status_bytes_rebuilt": rep.status_rebuilt,
        "cold": rep.cold,
        "first_clean_round": dataclasses.asdict(rep.first),
    }
