"""`--compare andromede,ceph --interleave`: Andromède and its peers measured run by run.

Plain `--compare` measures one target after the other: every figure of Andromède, then every
figure of Ceph. On a shared machine a neighbour's burst then lands on one column only, and a
ratio near 1 flips from one run of the bench to the next (issue 13: GET 4 KiB x1 read 0.92 and
1.24 on the same code the same day). Here every target is up for the whole run and every figure
alternates between them run by run, the order reversed each run (`measure_interleaved`), as the
`--audit-compare` mode does with two Andromède servers. The table gives each target's median,
the ratio of each peer to the first target (of the medians, and of the neighbouring runs), and
the server CPU per request or per MB where the bench can see the server's processes (the
Andromède it started; a peer started by its own script is not its child).

No plain-file baseline: the targets are each other's baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from . import sidebyside as sbs
from .figures import Figure, Plan, Result, figures
from .measure import run_async
from .report import conditions, describe_conditions, fmt_result, markdown_table
from .sidebyside import Side
from .targets import Target, start_peer


def _cpu(side: Side, f: Figure) -> str:
    cpu = side.cpu(f.key)
    if cpu is None:
        return "?"
    return f"{cpu * 1e6:,.0f} us/req" if not f.large else f"{cpu * 1e3:,.1f} ms/MB"


def render(
    figs: list[Figure], results: dict[str, dict[str, Result]], sides: dict[str, Side]
) -> str:
    names = list(sides)
    first, peers = names[0], names[1:]
    header = ["figure", *names]
    for p in peers:
        header += [f"{first}/{p}", "paired runs"]
    header.append(f"{first} server CPU")
    rows = [header]
    for f in figs:
        row = [f"{f.label} ({f.unit})", *(fmt_result(results[n][f.key]) for n in names)]
        for p in peers:
            ratio, paired = sbs.ratios(results[first][f.key], results[p][f.key])
            row += [f"**{ratio:.2f}**", sbs.fmt_paired(paired)]
        row.append(_cpu(sides[first], f))
        rows.append(row)
    return markdown_table(rows)


def run_peer_compare(
    a: argparse.Namespace, names: list[str], plan: Plan, wd: Path, log: Callable[[str], None]
) -> int:
    """Start (or reach) every target, measure every figure interleaved, print the table."""
    figs = figures(plan.large_size, plan.small_size)
    cond0 = conditions()
    t0 = time.perf_counter()
    sides: dict[str, Side] = {}
    with contextlib.ExitStack() as stack:
        for name in names:
            if name == "andromede":
                t: Target = sbs.start_server(stack, wd, a, log, label=name, name=name, env={})
            else:
                t = start_peer(name, log)
                if t.stop is not None:
                    stack.callback(t.stop)
                log(f"  {name}: {t.endpoint}")
            sides[name] = sbs.open_side(stack, name, t, plan, log, cls=Side)

        async def setup(name: str, side: Side) -> None:
            log(f"  setup {name}: 4 large + 256 small objects to read")
            await side.bench.setup()

        results = run_async(sbs.measure_sides(sides, figs, plan, log, setup))
    cond1 = conditions()
    footer = (
        f"median (min-max) of {plan.runs} runs; MB/s = 10^6 B/s; reads hot; runs alternate "
        f"{'/'.join(names)}, the order reversed each run; paired runs = the ratio of "
        f"neighbouring runs, median (min-max); {describe_conditions(cond0, cond1)}; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(f"\n{render(figs, results, sides)}\n\n{footer}")
    if a.json:
        conds = (cond0, cond1)
        extra = {"order": names, "interleaved": True}
        sbs.write_json(
            a.json, figs, results, sbs.sides_meta(sides), plan, conds, {"peer_compare": extra}
        )
        log(f"wrote {a.json}")
    return 0
