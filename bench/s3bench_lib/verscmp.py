"""`--versioning-compare`: what versioning costs on 4 KiB requests, measured run by run.

One fresh `andromede serve`, two buckets side by side: one whose versioning was never enabled,
one with versioning enabled. Every 4 KiB figure alternates between them run by run
(`measure_interleaved`), so machine noise falls on both alike. In the versioned bucket every
PUT keeps the version it replaces (a row moved to ``object_versions``), where the other drops
it and queues its blob for deletion; a GET reads the current row either way. The table gives
each figure's median on both, the ratio versioned / unversioned (of the medians, and of each
pair of neighbouring runs), and whether it meets issue 15's target (>= 90%). The server's CPU
per request is the same process tree for both columns, measured around each run.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from .figures import Figure, Plan, Result, figures
from .measure import run_async
from .report import conditions, describe_conditions, fmt_result, markdown_table
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
from .targets import botocore_client

PLAIN, VERSIONED = "unversioned", "versioned"
TARGET_RATIO = 0.90  # issue 15: a versioned bucket keeps at least 90% of an unversioned one


def _cpu_us(side: Side, key: str) -> str:
    cpu = side.cpu(key)
    return f"{cpu * 1e6:,.0f}" if cpu is not None else "?"


def render(
    figs: list[Figure], results: dict[str, dict[str, Result]], sides: dict[str, Side]
) -> str:
    header = ["figure", PLAIN, VERSIONED, "versioned/unversioned", "paired runs",
              f">= {TARGET_RATIO:.0%}", "server CPU us/req unversioned -> versioned"]  # fmt: skip
    rows = [header]
    for f in figs:
        plain, versioned = results[PLAIN][f.key], results[VERSIONED][f.key]
        ratio, paired = ratios(versioned, plain)
        rows.append(
            [
                f"{f.label} ({f.unit})",
                fmt_result(plain),
                fmt_result(versioned),
                f"{ratio:.0%}",
                fmt_paired(paired),
                "yes" if ratio >= TARGET_RATIO else "NO",
                f"{_cpu_us(sides[PLAIN], f.key)} -> {_cpu_us(sides[VERSIONED], f.key)}",
            ]
        )
    return markdown_table(rows)


def run_versioning_compare(
    a: argparse.Namespace, plan: Plan, wd: Path, log: Callable[[str], None]
) -> int:
    """Start one server, make both buckets, measure the 4 KiB figures interleaved."""
    figs = [f for f in figures(plan.large_size, plan.small_size) if not f.large]
    cond0 = conditions()
    t0 = time.perf_counter()
    sides: dict[str, Side] = {}
    with contextlib.ExitStack() as stack:
        t = start_server(stack, wd, a, log, label="andromede", name="andromede", env={})
        for name in (PLAIN, VERSIONED):
            sides[name] = open_side(stack, name, t, plan, log, cls=Side)
        versioning = {"Status": "Enabled"}
        bucket = sides[VERSIONED].raw.bucket
        botocore_client(t).put_bucket_versioning(Bucket=bucket, VersioningConfiguration=versioning)
        log(f"  {VERSIONED}: versioning enabled on {bucket}")

        async def setup(name: str, side: Side) -> None:
            log(f"  setup {name}: {plan.small_size} B x 256 objects to read")
            await side.bench.setup(large=False)

        results = run_async(measure_sides(sides, figs, plan, log, setup))
    cond1 = conditions()
    print()
    print(render(figs, results, sides))
    print(
        f"\nmedian (min-max) of {plan.runs} runs, {plan.duration:g} s each; runs alternate "
        f"unversioned/versioned, order reversed each run; paired runs = versioned/unversioned "
        f"of neighbouring runs, median (min-max); {describe_conditions(cond0, cond1)}; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    if a.json:
        extra = {
            "target_ratio": TARGET_RATIO,
            "ratios": {
                f.key: ratios(results[VERSIONED][f.key], results[PLAIN][f.key])[0] for f in figs
            },
        }
        conds = (cond0, cond1)
        write_json(
            a.json, figs, results, sides_meta(sides), plan, conds, {"versioning_compare": extra}
        )
        log(f"wrote {a.json}")
    return 0
