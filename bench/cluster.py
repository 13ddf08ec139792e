#!/usr/bin/env python3
"""4 KiB PUT and GET through HAProxy with one, two and three gateways (``scripts/cluster``),
and what each request costs PostgreSQL: statements (``pg_stat_statements``) and commits
(``pg_stat_database``) per request. Figures are printed, never asserted.

    python bench/cluster.py [--gateways 1,2,3] [--workers 2] [--runs 3] [--duration 3]

Each gateway count gets a fresh cluster (PostgreSQL, Ceph RADOS on memstore, the gateways,
HAProxy), stopped and deleted after. On a 2-core machine every gateway shares the same two
cores with PostgreSQL, Ceph, HAProxy and the client: the figures show the cost per request and
how it spreads, not how far more hosts would carry it (docs/deploy.md has the model).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from s3bench_lib.figures import Figure, Plan  # noqa: E402
from s3bench_lib.measure import EndpointBench, run_async  # noqa: E402
from s3bench_lib.targets import Target, bench_bucket  # noqa: E402

FIGURES = [
    Figure("put_small_x16", "PUT 4 KiB x16", "req/s", "put", False, 16),
    Figure("get_small_x16", "GET 4 KiB x16", "req/s", "get", False, 16),
    Figure("put_small_x1", "PUT 4 KiB x1", "req/s", "put", False, 1),
    Figure("get_small_x1", "GET 4 KiB x1", "req/s", "get", False, 1),
]


def cluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cluster"), *args],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def pg_counters(engine: sa.Engine) -> tuple[int, int]:
    """(statements run by the gateways so far, commits so far) in the database."""
    with engine.connect() as conn:
        calls = conn.execute(
            sa.text(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
                "AND s.query NOT ILIKE '%pg_stat%'"
            )
        ).scalar_one()
        commits = conn.execute(
            sa.text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()
    return int(calls), int(commits)


def pg_cpu(state: dict[str, Any]) -> float:
    """CPU seconds PostgreSQL's processes (the postmaster and its children) have used."""
    pid = int((Path(state["postgres"]["root"]) / "data" / "postmaster.pid").read_text().split()[0])
    main = psutil.Process(pid)
    total = 0.0
    for proc in [main, *main.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def measure(state: dict[str, Any], plan: Plan, log: Any) -> dict[str, tuple[float, ...]]:
    """Each figure: (median req/s, statements, commits and PostgreSQL CPU µs per request)."""
    target = Target("cluster", state["endpoint"], state["access_key"], state["secret_key"])
    url = sa.engine.make_url(state["postgres"]["url"]).set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))

    async def figures(eb: EndpointBench) -> dict[str, tuple[float, ...]]:
        # One event loop for the whole measurement: the client's connections belong to it.
        out = {}
        await eb.setup(large=False)
        for fig in FIGURES:
            rates, statements, commits, cpu = [], [], [], []
            for n in range(plan.runs + 1):
                await asyncio.sleep(0.3)  # let the statistics settle
                before = await asyncio.to_thread(pg_counters, engine)
                cpu0 = pg_cpu(state)
                rate, _ = await eb.run(fig, "warmup" if n == 0 else f"r{n}")
                cpu1 = pg_cpu(state)
                after = await asyncio.to_thread(pg_counters, engine)
                if n == 0:
                    continue
                done = rate * plan.duration
                rates.append(rate)
                statements.append((after[0] - before[0]) / done)
                commits.append((after[1] - before[1]) / done)
                cpu.append((cpu1 - cpu0) / done * 1e6)
            out[fig.key] = tuple(statistics.median(v) for v in (rates, statements, commits, cpu))
            log(f"    {fig.label}: {out[fig.key][0]:,.0f} req/s")
        return out

    try:
        with bench_bucket(target, log, cleanup=False) as raw:
            return run_async(figures(EndpointBench(raw, plan, "c")))
    finally:
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateways", default="1,2,3")
    ap.add_argument("--workers", type=int, default=2, help="per gateway")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    a = ap.parse_args()
    counts = [int(n) for n in a.gateways.split(",")]
    plan = Plan(a.runs, a.duration, 1 << 20, 4096, 1 << 20, False)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results: dict[int, dict[str, tuple[float, ...]]] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="andromede-cluster-bench-", dir=ROOT.parent) as wd:
        for n in counts:
            d = Path(wd) / f"g{n}"
            log(f"== {n} gateway(s): scripts/cluster start --dir {d}")
            started = cluster("start", "--dir", str(d), "--gateways", str(n),
                              "--workers", str(a.workers), "--ceph-store", "memstore")  # fmt: skip
            try:
                if started.returncode != 0:
                    raise SystemExit(f"cluster start failed:\n{started.stderr[-3000:]}")
                state = json.loads(cluster("status", "--dir", str(d), "--json").stdout)
                results[n] = measure(state, plan, log)
            finally:
                cluster("stop", "--dir", str(d), "--reset")
    header = ["figure", *(f"{n} gw" for n in counts), "statements/req", "commits/req"]
    header.append("PostgreSQL CPU/req")
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for fig in FIGURES:
        cells = [f"{fig.label} (req/s)"]
        cells += [f"{results[n][fig.key][0]:,.0f}" for n in counts]
        first = results[counts[0]][fig.key]
        cells += [f"{first[1]:.1f}", f"{first[2]:.2f}", f"{first[3]:,.0f} µs"]
        print("| " + " | ".join(cells) + " |")
    print(
        f"\nmedian of {a.runs} runs of {a.duration:g} s; {a.workers} workers per gateway; "
        f"statements and commits per request with {counts[0]} gateway(s); "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
