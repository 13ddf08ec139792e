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

`andromede-rados` is an Andromède whose only site is the Ceph peer's RADOS pool (the pool
`start.sh` makes for librados, on the same OSDs as RGW's pools): `--compare
andromede-rados,ceph --interleave` puts Andromède and RGW on the same cluster, encryption and
the audit trail on (issue 14's figure).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import sidebyside as sbs
from .common import BenchError
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


def start_on_rados(
    stack: contextlib.ExitStack,
    wd: Path,
    a: argparse.Namespace,
    log: Callable[[str], None],
    ceph: Target,
) -> Target:
    """`andromede serve` without its data dir's site, then the ceph peer's RADOS pool added
    as its one site (client.admin, whose key ring the peer's ceph.conf names), in a RADOS
    namespace of this run's own, emptied when the run ends (otherwise each run would leave
    its blobs in the peer's pool until its OSD fills)."""
    conf, pool = ceph.info.get("CEPH_CONF"), ceph.info.get("CEPH_RADOS_POOL", "andromede")
    if not conf:
        raise BenchError("the ceph peer printed no CEPH_CONF")
    env = {"ANDROMEDE_DATA_DIR_SITE": "false"}
    t = sbs.start_server(stack, wd, a, log, label="andromede-rados", name="andromede-rados",
                         env=env)  # fmt: skip
    assert t.data_dir is not None
    namespace = f"s3bench-{secrets.token_hex(4)}"
    # Registered before the server's stop, so it runs after it (ExitStack unwinds in reverse).
    stack.callback(_empty_namespace, conf, pool, namespace, log)
    argv = [sys.executable, "-m", "andromede", "admin", "site", "add", "ceph-bench",
            "--jurisdiction", "FR", "--failure-domain", "bench", "--backend", "rados",
            "--ceph-conf", conf, "--pool", pool, "--ceph-user", "admin",
            "--namespace", namespace, "--data-dir", str(t.data_dir)]  # fmt: skip
    log("  " + " ".join(argv[2:]))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise BenchError(f"site add failed: {done.stderr.strip()}")
    time.sleep(2.5)  # the registry's refresh (placement_refresh_seconds) in every worker
    return t


def _empty_namespace(conf: str, pool: str, namespace: str, log: Callable[[str], None]) -> None:
    """Remove every object the run left in its namespace of the peer's pool."""
    import rados  # noqa: PLC0415 - Debian's binding, linked in by scripts/install-deps

    cluster = rados.Rados(conffile=conf)
    cluster.connect(timeout=10)
    try:
        io = cluster.open_ioctx(pool)
        io.set_namespace(namespace)
        removed = 0
        for obj in list(io.list_objects()):
            io.remove_object(obj.key)
            removed += 1
        io.close()
        log(f"  removed the {removed} RADOS objects of namespace {namespace}")
    finally:
        cluster.shutdown()


def run_peer_compare(
    a: argparse.Namespace, names: list[str], plan: Plan, wd: Path, log: Callable[[str], None]
) -> int:
    """Start (or reach) every target, measure every figure interleaved, print the table."""
    figs = figures(plan.large_size, plan.small_size)
    cond0 = conditions()
    t0 = time.perf_counter()
    sides: dict[str, Side] = {}
    targets: dict[str, Target] = {}
    with contextlib.ExitStack() as stack:
        # Peers first: andromede-rados stores in the ceph peer's cluster.
        for name in sorted(names, key=lambda n: n.startswith("andromede")):
            if name == "andromede":
                t: Target = sbs.start_server(stack, wd, a, log, label=name, name=name, env={})
            elif name == "andromede-rados":
                t = start_on_rados(stack, wd, a, log, targets["ceph"])
            else:
                t = start_peer(name, log)
                if t.stop is not None:
                    stack.callback(t.stop)
                log(f"  {name}: {t.endpoint}")
            targets[name] = t
        for name in names:
            sides[name] = sbs.open_side(stack, name, targets[name], plan, log, cls=Side)

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
