"""`--audit-compare`: what the audit trail costs on 4 KiB requests, measured run by run.

Two fresh `andromede serve` start side by side, each on its own data dir in the workdir: one
with `ANDROMEDE_AUDIT_SINK=discard` (every record dropped: the no-op sink), one with the default
`trail` (each record hash-chained and `fdatasync`'d before the reply). Both stay up for the
whole run and every 4 KiB figure alternates between them run by run (`measure_interleaved`), so
machine noise falls on both alike. The table gives each figure's median on both, the ratio
trail / no-op (of the medians, and of each pair of neighbouring runs), whether it meets the
issue's target (>= 90%), and the server's CPU time per request on each side (all its processes,
from /proc), which tells CPU spent apart from time waited.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .figures import Figure, Plan, Result, figures
from .measure import run_async
from .report import conditions, describe_conditions, fmt_num, fmt_result, markdown_table
from .sidebyside import (
    Side,
    fmt_paired,
    measure_sides,
    open_side,
    ratios,
    sides_meta,
    start_server,
    write_json,
)

NOOP, TRAIL = "no-op", "trail"
SINKS = {NOOP: "discard", TRAIL: "trail"}  # column -> ANDROMEDE_AUDIT_SINK
TARGET_RATIO = 0.90  # issue 5: audit on keeps at least 90% of the no-op sink's req/s


# --------------------------------------------------------------------------------------------
# What the servers did: bytes in the trail, the disk's sync latency.


def trail_bytes(data_dir: Path | None) -> int:
    """Bytes of records in DATA_DIR/audit/*.log, the zero-filled tail of each segment left out."""
    if data_dir is None:
        return 0
    total = 0
    for seg in sorted(data_dir.glob("audit/*.log")):
        with contextlib.suppress(OSError):
            total += len(seg.read_bytes().rstrip(b"\0"))
    return total


def sync_latency(directory: Path, n: int = 400) -> tuple[float, float]:
    """Median and 90th percentile seconds of a 512-byte pwrite + fdatasync into a preallocated
    file in `directory`: the floor a one-client request pays for its durable record, and what
    neighbours' I/O on a shared disk moves most."""
    path = directory / "sync-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, bytes(n * 512))
        os.fsync(fd)
        line = b"x" * 511 + b"\n"
        lat = []
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, line, i * 512)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    lat.sort()
    return lat[n // 2], lat[n * 9 // 10]


# --------------------------------------------------------------------------------------------
# One side of the comparison: a server, its bucket, its bench, the trail it wrote.


@dataclasses.dataclass
class AuditSide(Side):
    trail_start: tuple[int, int] = (0, 0)  # (trail bytes, requests) after setup
    trail_end: tuple[int, int] = (0, 0)

    def snapshot(self) -> tuple[int, int]:
        return trail_bytes(self.target.data_dir), self.raw.requests

    @property
    def trail_per_request(self) -> float | None:
        nbytes = self.trail_end[0] - self.trail_start[0]
        requests = self.trail_end[1] - self.trail_start[1]
        return nbytes / requests if requests else None


async def _measure(
    sides: dict[str, AuditSide], figs: list[Figure], plan: Plan, log: Callable[[str], None]
) -> dict[str, dict[str, Result]]:
    async def setup(name: str, side: AuditSide) -> None:
        log(f"  setup {name}: {plan.small_size} B x 256 objects to read")
        await side.bench.setup(large=False)
        side.trail_start = side.snapshot()

    results = await measure_sides(sides, figs, plan, log, setup)
    for side in sides.values():
        side.trail_end = side.snapshot()
    return results


# --------------------------------------------------------------------------------------------
# The table and the notes under it.


def _cpu_us(side: Side, key: str) -> str:
    cpu = side.cpu(key)
    return f"{cpu * 1e6:,.0f}" if cpu is not None else "?"


def render(
    figs: list[Figure], results: dict[str, dict[str, Result]], sides: dict[str, AuditSide]
) -> str:
    header = [
        "figure",
        "no-op sink",
        "audit trail",
        "trail/no-op",
        "paired runs",
        f">= {TARGET_RATIO:.0%}",
        "server CPU us/req no-op -> trail",
    ]
    rows = [header]
    for f in figs:
        noop, trail = results[NOOP][f.key], results[TRAIL][f.key]
        ratio, paired = ratios(trail, noop)
        rows.append(
            [
                f"{f.label} ({f.unit})",
                fmt_result(noop),
                fmt_result(trail),
                f"{ratio:.0%}",
                fmt_paired(paired),
                "yes" if ratio >= TARGET_RATIO else "NO",
                f"{_cpu_us(sides[NOOP], f.key)} -> {_cpu_us(sides[TRAIL], f.key)}",
            ]
        )
    return markdown_table(rows)


def notes(sides: dict[str, AuditSide]) -> list[str]:
    out = []
    trail, noop = sides[TRAIL], sides[NOOP]
    per = trail.trail_per_request
    if per is not None:
        nbytes = trail.trail_end[0] - trail.trail_start[0]
        requests = trail.trail_end[1] - trail.trail_start[1]
        out.append(
            f"trail: {nbytes:,} B of records for {requests:,} requests = {fmt_num(per)} B/request "
            f"({trail.trail_end[0]:,} B in {trail.target.data_dir}/audit in all)"
        )
    if per is None or per == 0:
        out.append("WARNING: the trail server wrote no trail: are records written elsewhere?")
    noop_per = noop.trail_per_request
    if noop_per:
        out.append(
            f"WARNING: the no-op server wrote {fmt_num(noop_per)} B/request of trail: this "
            "server does not honour ANDROMEDE_AUDIT_SINK=discard, both columns measure the trail"
        )
    return out


# --------------------------------------------------------------------------------------------
# The mode.


def run_audit_compare(
    a: argparse.Namespace, plan: Plan, wd: Path, log: Callable[[str], None]
) -> int:
    """Start both servers, measure the 4 KiB figures interleaved, print the table."""
    figs = [f for f in figures(plan.large_size, plan.small_size) if not f.large]
    cond0 = conditions()
    t0 = time.perf_counter()
    syncs = [sync_latency(wd)]
    sides: dict[str, AuditSide] = {}
    with contextlib.ExitStack() as stack:
        for name in (NOOP, TRAIL):
            env = {"ANDROMEDE_AUDIT_SINK": SINKS[name]}
            server = f"andromede-{SINKS[name]}"
            t = start_server(stack, wd, a, log, label=name, name=server, env=env)
            sides[name] = open_side(stack, name, t, plan, log, cls=AuditSide)
        results = run_async(_measure(sides, figs, plan, log))
    syncs.append(sync_latency(wd))
    cond1 = conditions()

    print()
    print(render(figs, results, sides))
    order = "runs alternate no-op/trail, order reversed each run"
    print(
        f"\nmedian (min-max) of {plan.runs} runs, {plan.duration:g} s each; {order}; "
        f"paired runs = trail/no-op of neighbouring runs, median (min-max); "
        f"{describe_conditions(cond0, cond1)}; {time.perf_counter() - t0:.0f} s"
    )
    print(
        "disk: 512 B pwrite + fdatasync in the workdir, before -> after: median "
        + " -> ".join(f"{p50 * 1e6:,.0f}" for p50, _ in syncs)
        + " us, p90 "
        + " -> ".join(f"{p90 * 1e6:,.0f}" for _, p90 in syncs)
        + " us"
    )
    for note in notes(sides):
        print(note)
    if a.json:
        extra = _json_extra(figs, results, sides)
        extra["sync_latency_s"] = {"before": syncs[0], "after": syncs[1]}
        conds = (cond0, cond1)
        write_json(a.json, figs, results, sides_meta(sides), plan, conds, {"audit_compare": extra})
        log(f"wrote {a.json}")
    return 0


def _json_extra(
    figs: list[Figure], results: dict[str, dict[str, Result]], sides: dict[str, AuditSide]
) -> dict[str, Any]:
    out: dict[str, Any] = {"target_ratio": TARGET_RATIO, "figures": {}}
    for f in figs:
        ratio, paired = ratios(results[TRAIL][f.key], results[NOOP][f.key])
        out["figures"][f.key] = {
            "ratio_of_medians": ratio,
            "paired_ratios": paired,
            "meets_target": ratio >= TARGET_RATIO,
            "server_cpu_s_per_request": {n: s.server_cpu.get(f.key) for n, s in sides.items()},
        }
    out["trail_bytes_per_request"] = sides[TRAIL].trail_per_request
    out["trail_bytes"] = {n: [s.trail_start, s.trail_end] for n, s in sides.items()}
    return out
