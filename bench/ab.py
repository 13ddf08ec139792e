#!/usr/bin/env python3
"""A/B of two source trees on the small-request figures: which commit serves 4 KiB GETs and
PUTs faster, and for how much CPU, measured side by side in the same minutes.

    git worktree add ../ab-base <commit>
    python3 bench/ab.py ../ab-base .                 # base (A) against this tree (B)
    python3 bench/ab.py A_TREE B_TREE --figures get1,put16 --runs 5 --seconds 3

Each tree's ``src`` goes first on the server's PYTHONPATH, so both run the installed
dependencies with their own code. Both servers (``andromede serve --workers N``, every
guarantee on) stay up for the whole run; every figure alternates between them run by run, the
order reversed each run, as ``s3bench.py --audit-compare`` does: a neighbour's burst falls on
both alike. Printed per figure: each side's median req/s and server CPU per request (all its
processes, from /proc), and B/A of both. Timing is printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

from cpu_split import GET_OBJECTS, SMALL, load, server_cpu_seconds
from s3bench_lib.client import S3Raw
from s3bench_lib.targets import bench_bucket, start_andromede

FIGURES = ("get16", "put16", "get1", "put1")


def _figure(text: str) -> tuple[str, int]:
    op, clients = text[:3], text[3:]
    if op not in ("get", "put") or not clients.isdigit() or int(clients) < 1:
        raise argparse.ArgumentTypeError(f"not a figure: {text!r} (e.g. get16, put1)")
    return op, int(clients)


async def _measure(
    raws: dict[str, S3Raw], pids: dict[str, int], figures: list[str], runs: int, seconds: float
) -> None:
    body = os.urandom(SMALL - 16)
    for raw in raws.values():
        for i in range(GET_OBJECTS):
            await raw.put(0, f"get/{i}", os.urandom(16), body)
    for name in figures:
        op, clients = _figure(name)
        for side, raw in raws.items():  # unrecorded warm-up
            await load(raw, op, clients, 1, f"warm-{side}")
        rate: dict[str, list[float]] = {side: [] for side in raws}
        cpu: dict[str, list[float]] = {side: [] for side in raws}
        for run in range(runs):
            order = list(raws) if run % 2 == 0 else list(reversed(list(raws)))
            for side in order:
                before = server_cpu_seconds(pids[side])
                done = await load(raws[side], op, clients, seconds, f"{run}-{side}")
                used = server_cpu_seconds(pids[side]) - before
                rate[side].append(done / seconds)
                cpu[side].append(used / max(done, 1) * 1e6)
        a_rate, b_rate = (statistics.median(rate[s]) for s in ("A", "B"))
        a_cpu, b_cpu = (statistics.median(cpu[s]) for s in ("A", "B"))
        print(
            f"{name:>6}: A {a_rate:8,.0f} req/s {a_cpu:6,.0f} us | "
            f"B {b_rate:8,.0f} req/s {b_cpu:6,.0f} us | "
            f"B/A {b_rate / a_rate:5.2f} req/s, {b_cpu / a_cpu:5.2f} CPU",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a_tree", type=Path, help="source tree A (a checkout: its src/ is used)")
    parser.add_argument("b_tree", type=Path, help="source tree B")
    parser.add_argument("--figures", default=",".join(FIGURES), help="e.g. get16,put1")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per run")
    parser.add_argument("--workers", type=int, default=1, help="andromede serve --workers")
    args = parser.parse_args()
    figures = [f for f in args.figures.split(",") if f]
    for figure in figures:
        _figure(figure)
    for tree in (args.a_tree, args.b_tree):
        if not (tree / "src" / "andromede").is_dir():
            parser.error(f"{tree} has no src/andromede")
    beside = Path(__file__).resolve().parents[2]  # beside the repository, on its disk
    scratch = tempfile.TemporaryDirectory(prefix=".ab-", dir=beside)
    with scratch as workdir, contextlib.ExitStack() as stack:
        raws: dict[str, S3Raw] = {}
        pids: dict[str, int] = {}
        for side, tree in (("A", args.a_tree), ("B", args.b_tree)):
            target = start_andromede(
                Path(workdir),
                ["--workers", str(args.workers)],
                lambda m: print(m, file=sys.stderr),
                name=side,
                env={"PYTHONPATH": str(tree.resolve() / "src")},
            )
            assert target.stop is not None  # started here
            assert target.pid is not None
            stack.callback(target.stop)
            raws[side] = stack.enter_context(bench_bucket(target, lambda m: None, cleanup=False))
            pids[side] = target.pid
        asyncio.run(_measure(raws, pids, figures, args.runs, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
