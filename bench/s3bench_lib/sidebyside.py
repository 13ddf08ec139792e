"""Side by side: several buckets (on one server or on several) measured run by run.

`--audit-compare`, `--encryption-compare` and `--placement-compare` share this. A side is a
bucket on an andromede started here, with its own raw client and bench; every figure
alternates between the sides run by run (`measure_interleaved`), so machine noise falls on all
alike. Around each run the server's CPU time is taken (all its processes, from /proc): per
request for 4 KiB figures, per MB moved for large ones. The ratio of two sides is given of the
medians and of each pair of runs with the same index (neighbouring runs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .client import S3Raw
from .common import WARMUP
from .figures import Figure, Plan, Result
from .measure import EndpointBench, measure_interleaved
from .report import client_bound_notes, json_document
from .targets import Target, bench_bucket, start_andromede

_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int | None) -> float | None:
    """User + system CPU seconds of `root` and all its descendants now (None off Linux)."""
    if root is None:
        return None
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ... utime stime": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    if root not in ticks:
        return None
    total = 0
    for pid, t in ticks.items():
        p = pid
        while p > 1 and p != root:
            p = parent.get(p, 0)
        if p == root:
            total += t
    return total / _TICK


@dataclasses.dataclass
class Side:
    """One column: a bucket on a server, its bench, and the server's CPU around each run."""

    name: str
    target: Target
    raw: S3Raw
    bench: EndpointBench
    plan: Plan
    # CPU seconds per request (4 KiB figures) or per MB moved (large figures), run by run
    server_cpu: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    async def run(self, fig: Figure, run: str) -> tuple[float, float]:
        c0, n0 = tree_cpu_seconds(self.target.pid), self.raw.requests
        value, cpu = await self.bench.run(fig, run)
        c1, n1 = tree_cpu_seconds(self.target.pid), self.raw.requests
        if run != WARMUP and c0 is not None and c1 is not None:
            work = self._work(fig, run, n1 - n0)
            if work > 0:
                self.server_cpu.setdefault(fig.key, []).append((c1 - c0) / work)
        return value, cpu

    def _work(self, fig: Figure, run: str, requests: int) -> float:
        if not fig.large:
            return requests
        per = self.plan.large_per_client(fig.clients, run)
        return fig.clients * per * self.plan.large_size / 1e6

    def cpu(self, key: str) -> float | None:
        """The median over the runs of the server CPU seconds per request or per MB."""
        runs = self.server_cpu.get(key)
        return statistics.median(runs) if runs else None


S = TypeVar("S", bound=Side)


def start_server(
    stack: contextlib.ExitStack,
    wd: Path,
    a: argparse.Namespace,
    log: Callable[[str], None],
    *,
    label: str,
    name: str,
    env: dict[str, str],
) -> Target:
    """`andromede serve` on WORKDIR/NAME-data, stopped when `stack` closes."""
    t = start_andromede(wd, a.andromede_arg, log, name=name, env=env)
    if t.stop is not None:
        stack.callback(t.stop)
    log(f"  {label}: {t.endpoint}, pid {t.pid}, data {t.data_dir}")
    return t


def open_side(
    stack: contextlib.ExitStack,
    name: str,
    target: Target,
    plan: Plan,
    log: Callable[[str], None],
    *,
    cls: type[S],
    location: str | None = None,
) -> S:
    """A fresh bucket on `target` (in region `location`) and its bench, as a side `cls`. The
    bucket is left as it is: the workdir holds the data and goes at the end."""
    raw = stack.enter_context(bench_bucket(target, log, cleanup=False, location=location))
    return cls(name, target, raw, EndpointBench(raw, plan, "b"), plan)


async def measure_sides(
    sides: Mapping[str, S],
    figs: list[Figure],
    plan: Plan,
    log: Callable[[str], None],
    setup: Callable[[str, S], Awaitable[None]],
) -> dict[str, dict[str, Result]]:
    """`setup` each side, then every figure on every side run by run; connections closed."""
    try:
        for name, side in sides.items():
            await setup(name, side)
        runners = {name: side.run for name, side in sides.items()}
        return await measure_interleaved(figs, plan, runners, log)
    finally:
        for side in sides.values():
            side.raw.close()


def ratios(a: Result, b: Result) -> tuple[float, list[float]]:
    """a / b: of the medians, and of each pair of runs with the same index."""
    paired = [x / y for x, y in zip(a.values, b.values, strict=True) if y > 0]
    return a.median / b.median, paired


def fmt_paired(paired: list[float]) -> str:
    """Paired ratios as `median (min-max)`, in percent."""
    return f"{statistics.median(paired):.0%} ({min(paired):.0%}-{max(paired):.0%})"


def client_notes(figs: list[Figure], results: dict[str, dict[str, Result]]) -> list[str]:
    """A note for each figure whose client used more than CLIENT_BOUND_CPU of a core."""
    return [
        f"note: {n}: that figure may be limited by the client"
        for n in client_bound_notes(figs, results)
    ]


def sides_meta(sides: Mapping[str, Side]) -> dict[str, dict[str, Any]]:
    """Each side's endpoint, data dir and the environment its server got, for the JSON."""
    return {
        n: {"endpoint": s.target.endpoint, "data_dir": str(s.target.data_dir), **s.target.info}
        for n, s in sides.items()
    }


def write_json(
    path: Path,
    figs: list[Figure],
    results: dict[str, dict[str, Result]],
    meta: dict[str, dict[str, Any]],
    plan: Plan,
    conds: tuple[dict[str, Any], dict[str, Any]],
    extra: dict[str, Any],
) -> None:
    """The common JSON document, with the mode's own figures added (`extra`)."""
    doc = json_document(figs, results, meta, None, plan, *conds)
    doc.update(extra)
    path.write_text(json.dumps(doc, indent=2) + "\n")
