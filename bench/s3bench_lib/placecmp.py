"""`--placement-compare`: what each layout costs, one copy against three replicas and EC 4+2.

One fresh `andromede serve` in the workdir; six local sites and three regions on it
(`placesetup`); one bucket per region. First every large-object figure (PUT/GET 64 MiB, 1 and
4 clients) alternates between the three buckets run by run (`measure_interleaved`), so the
ratios to `one` are same-run. Then the throughput buckets go, and `repaircmp` times repair
rounds after a site's shards were deleted, and reads every object back.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import MiB
from .figures import Figure, Plan, Result, figures
from .measure import run_async
from .placesetup import (
    BASE,
    REGIONS,
    SERVER_ENV,
    Admin,
    LayoutCheck,
    SiteDir,
    check_layout,
    new_blobs,
    register,
    snapshot,
)
from .repaircmp import (
    RepairBench,
    RepairReport,
    render_repair,
    repair_json,
    repair_notes,
    run_repair_rounds,
)
from .report import conditions, describe_conditions, fmt_result, markdown_table
from .sidebyside import (
    Side,
    client_notes,
    fmt_paired,
    measure_sides,
    open_side,
    ratios,
    sides_meta,
    start_server,
    write_json,
)
from .targets import botocore_client, empty_and_delete

# Bytes per run unless --large-bytes-per-run. Full: as for --encryption-compare, since a hot
# GET of 64 MiB runs at 1-2 GB/s here. Quick: the main bench's, or the slow layouts' PUTs take
# the run past a minute.
BYTES_PER_RUN = {True: 128 * MiB, False: 512 * MiB}  # quick -> bytes
REPAIR_OBJECTS = {True: 2, False: 8}  # quick -> objects per redundant layout
SETUP_OBJECTS = 4  # large objects EndpointBench.setup writes for the GET figures


async def _measure(
    sides: dict[str, Side],
    sites: list[SiteDir],
    figs: list[Figure],
    plan: Plan,
    log: Callable[[str], None],
) -> tuple[dict[str, dict[str, Result]], dict[str, LayoutCheck]]:
    checks: dict[str, LayoutCheck] = {}

    async def setup(name: str, side: Side) -> None:
        log(f"  setup {name}: {SETUP_OBJECTS} x {plan.large_size // MiB} MiB objects to read")
        before = snapshot(sites)
        await side.bench.setup(small=False)
        blobs = new_blobs(before, snapshot(sites))
        checks[name] = check_layout(name, blobs, SETUP_OBJECTS, SETUP_OBJECTS * plan.large_size)
        log(f"  placement check {checks[name].describe()}")
        # Large blobs are written with O_DIRECT, so not cached; the GET x1 warm-up reads only
        # the first object, and the first recorded run would read the others from the disk.
        for i in range(SETUP_OBJECTS):
            await side.raw.get(0, f"{side.bench.prefix}/large-get/{i}", plan.large_size)

    return await measure_sides(sides, figs, plan, log, setup), checks


def _cpu_ms(side: Side, key: str) -> str:
    cpu = side.cpu(key)
    return f"{cpu * 1e3:.2f}" if cpu is not None else "?"


def render(
    figs: list[Figure], results: dict[str, dict[str, Result]], sides: dict[str, Side]
) -> str:
    others = [n for n in REGIONS if n != BASE]
    header = ["figure", *REGIONS]
    for n in others:
        header += [f"{n}/{BASE}", "paired runs"]
    header.append("server CPU ms/MB " + " / ".join(REGIONS))
    rows = [header]
    for f in figs:
        row = [f"{f.label} ({f.unit})", *(fmt_result(results[n][f.key]) for n in REGIONS)]
        for n in others:
            ratio, paired = ratios(results[n][f.key], results[BASE][f.key])
            row += [f"{ratio:.0%}", fmt_paired(paired)]
        row.append(" / ".join(_cpu_ms(sides[n], f.key) for n in REGIONS))
        rows.append(row)
    return markdown_table(rows)


def run_placement_compare(
    a: argparse.Namespace, plan: Plan, wd: Path, log: Callable[[str], None]
) -> int:
    """Start the server, register the placement, measure the layouts interleaved, then the
    repair rounds; print both tables."""
    if a.large_bytes_per_run is None:
        plan = dataclasses.replace(plan, large_bytes_per_run=BYTES_PER_RUN[bool(a.quick)])
        log(f"  {plan.large_bytes_per_run // MiB} MiB per run (--large-bytes-per-run to change)")
    figs = [f for f in figures(plan.large_size, plan.small_size) if f.large]
    nrepair = a.repair_objects if a.repair_objects is not None else REPAIR_OBJECTS[bool(a.quick)]
    cond0 = conditions()
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        env = SERVER_ENV
        t = start_server(stack, wd, a, log, label="andromede", name="andromede", env=env)
        admin = Admin(t.endpoint, t.access_key, t.secret_key)
        sites = register(admin, wd / "sites", log)
        sides = {n: open_side(stack, n, t, plan, log, cls=Side, location=n) for n in REGIONS}
        results, checks = run_async(_measure(sides, sites, figs, plan, log))
        cond_mid = conditions()
        log(f"  figures done at {time.perf_counter() - t0:.0f} s")
        client = botocore_client(t)
        for side in sides.values():
            empty_and_delete(client, side.raw.bucket, log)
        bench = RepairBench(t, admin, sites, log, cold=plan.drop_caches)
        tag = secrets.token_hex(4)
        repair = run_repair_rounds(bench, nrepair, plan.large_size, plan.runs, tag)
    cond1 = conditions()

    conds = (cond0, cond_mid, cond1)
    _print(figs, results, sides, checks, repair, plan, conds, time.perf_counter() - t0)
    if a.json:
        extra = {"placement_compare": _json_extra(figs, results, sides, checks, repair)}
        write_json(a.json, figs, results, sides_meta(sides), plan, (cond0, cond1), extra)
        log(f"wrote {a.json}")
    return 1 if repair.bad else 0


def _print(
    figs: list[Figure],
    results: dict[str, dict[str, Result]],
    sides: dict[str, Side],
    checks: dict[str, LayoutCheck],
    repair: RepairReport,
    plan: Plan,
    conds: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
    seconds: float,
) -> None:
    """Both tables on stdout, each with how it was measured and its notes."""
    reads = "page cache dropped before reads" if plan.drop_caches else "reads hot"
    print()
    print(render(figs, results, sides))
    print(
        f"\nmedian (min-max) of {plan.runs} runs, at least {plan.large_bytes_per_run // MiB} "
        f"MiB moved per run; MB/s = 10^6 B/s; one server, one bucket per region, runs "
        f"alternate {'/'.join(REGIONS)}, order reversed each run; paired runs = layout/{BASE} "
        f"of the same run, median (min-max); {reads}; {describe_conditions(conds[0], conds[1])}"
    )
    print("placement check: " + "; ".join(c.describe() for c in checks.values()))
    for note in client_notes(figs, results):
        print(note)
    print()
    print(render_repair(repair))
    print(
        f"\nmedian (min-max) of {plan.runs} rounds; a round = one POST /v1/repair/run, timed "
        "by the client; MB/s rebuilt = bytes of the deleted shard files found rewritten after "
        "the round / its seconds; net of clean pass = median MB rebuilt / (median seconds - "
        f"median seconds of the clean rounds); {reads}; "
        f"{describe_conditions(conds[1], conds[2])}; {seconds:.0f} s in all"
    )
    for note in repair_notes(repair):
        print(note)


def _json_extra(
    figs: list[Figure],
    results: dict[str, dict[str, Result]],
    sides: dict[str, Side],
    checks: dict[str, LayoutCheck],
    repair: RepairReport,
) -> dict[str, Any]:
    out: dict[str, Any] = {"regions": REGIONS, "figures": {}}
    for f in figs:
        fig: dict[str, Any] = {
            "server_cpu_s_per_mb": {n: s.server_cpu.get(f.key) for n, s in sides.items()}
        }
        for n in REGIONS:
            if n != BASE:
                ratio, paired = ratios(results[n][f.key], results[BASE][f.key])
                fig[f"{n}/{BASE}"] = {"ratio_of_medians": ratio, "paired_ratios": paired}
        out["figures"][f.key] = fig
    out["buckets"] = {n: s.raw.bucket for n, s in sides.items()}
    out["placement_check"] = {n: dataclasses.asdict(c) for n, c in checks.items()}
    out["repair"] = repair_json(repair)
    return out
