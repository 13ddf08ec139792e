"""The command line: arguments, the workdir, and the order of the measurements."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .auditcmp import run_audit_compare
from .common import REPO, BenchError, KiB, MiB
from .enccmp import run_encryption_compare
from .figures import Figure, Plan, Result, figures
from .measure import bench_baseline
from .peercmp import run_peer_compare
from .placecmp import run_placement_compare
from .report import conditions, describe_conditions, json_document, print_summary
from .targets import PEER_PORTS, Target, bench_target, start_andromede, start_peer
from .verscmp import run_versioning_compare


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="S3 throughput benchmark with a same-run plain-file baseline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tg = ap.add_mutually_exclusive_group(required=True)
    tg.add_argument("--endpoint", help="any S3 endpoint, e.g. http://127.0.0.1:9000")
    tg.add_argument("--start-andromede", action="store_true", help="start `andromede serve`")
    tg.add_argument("--peer", choices=["swift", "ceph"], help="start a peer from shared/peers")
    tg.add_argument(
        "--compare",
        help=(
            "comma list of andromede, swift, ceph, run one by one; andromede-rados: "
            "Andromede whose only site is the ceph peer's RADOS pool (with --interleave)"
        ),
    )
    tg.add_argument(
        "--audit-compare",
        action="store_true",
        help="4 KiB figures on two fresh andromede, audit trail vs no-op sink, run by run",
    )
    tg.add_argument(
        "--encryption-compare",
        action="store_true",
        help="large figures on two fresh andromede, encrypted vs plaintext storage, run by run",
    )
    tg.add_argument(
        "--versioning-compare",
        action="store_true",
        help="4 KiB figures on one fresh andromede, a versioned bucket vs an unversioned one, "
        "run by run",
    )
    tg.add_argument(
        "--placement-compare",
        action="store_true",
        help="large figures on one fresh andromede, one copy vs 3 replicas vs EC 4+2 over six "
        "local sites, run by run; then repair rounds after a site's shards are deleted",
    )
    ap.add_argument("--access-key", default=os.environ.get("S3_ACCESS_KEY"))
    ap.add_argument("--secret-key", default=os.environ.get("S3_SECRET_KEY"))
    ap.add_argument("--name", default="endpoint", help="column name for --endpoint")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the baseline files and andromede's data dir go (default: a temp dir "
        "beside the repository, on its filesystem)",
    )
    ap.add_argument("--keep-workdir", action="store_true")
    ap.add_argument("--andromede-arg", action="append", default=[], help="extra serve argument")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (default 5, quick 3)")
    ap.add_argument(
        "--duration", type=float, default=None, help="seconds per 4 KiB run (default 2, quick 1)"
    )
    ap.add_argument("--large-mib", type=int, default=64)
    ap.add_argument("--small-kib", type=int, default=4)
    ap.add_argument(
        "--large-bytes-per-run",
        type=int,
        default=None,
        help="move at least this many bytes per large run (default 256 MiB, quick 128 MiB)",
    )
    ap.add_argument(
        "--repair-objects",
        type=int,
        default=None,
        help="--placement-compare: objects per redundant layout for the repair rounds "
        "(default 8, quick 2)",
    )
    ap.add_argument("--quick", action="store_true", help="about a minute: fewer, shorter runs")
    ap.add_argument(
        "--drop-caches",
        action="store_true",
        help="drop the page cache before each GET/read run (root); default reads hot",
    )
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="--compare: every target up at once, each figure alternating between them run by "
        "run (ratios fair on a noisy machine; no plain-file baseline)",
    )
    ap.add_argument("--json", type=Path, help="also write all runs as JSON here")
    a = ap.parse_args(argv)
    if a.endpoint and not (a.access_key and a.secret_key):
        ap.error("--endpoint needs --access-key and --secret-key (or S3_ACCESS_KEY/SECRET_KEY)")
    if a.interleave and not a.compare:
        ap.error("--interleave goes with --compare")
    if a.drop_caches and not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        ap.error("--drop-caches needs root")
    return a


@contextlib.contextmanager
def make_workdir(a: argparse.Namespace, log: Callable[[str], None]) -> Iterator[Path]:
    parent = a.workdir or REPO.parent
    parent.mkdir(parents=True, exist_ok=True)
    wd = Path(tempfile.mkdtemp(prefix=".s3bench-", dir=parent))
    try:
        yield wd
    finally:
        if a.keep_workdir:
            log(f"kept {wd}")
        else:
            shutil.rmtree(wd, ignore_errors=True)


def _same_disk(a: Path, b: Path | None) -> bool:
    return b is None or not b.exists() or a.stat().st_dev == b.stat().st_dev


def make_plan(a: argparse.Namespace) -> Plan:
    return Plan(
        runs=a.runs or (3 if a.quick else 5),
        duration=a.duration or (1.0 if a.quick else 2.0),
        large_size=a.large_mib * MiB,
        small_size=a.small_kib * KiB,
        large_bytes_per_run=a.large_bytes_per_run or ((128 if a.quick else 256) * MiB),
        drop_caches=a.drop_caches,
    )


def target_names(a: argparse.Namespace) -> list[str]:
    """The column names, in the order the targets are measured."""
    if a.compare:
        names = [n.strip() for n in a.compare.split(",") if n.strip()]
    elif a.start_andromede:
        names = ["andromede"]
    elif a.peer:
        names = [a.peer]
    else:
        names = [a.name]
    for n in names:
        if a.compare and n not in ("andromede", "andromede-rados", "swift", "ceph"):
            raise SystemExit(f"--compare: unknown {n!r} (andromede, andromede-rados, swift, ceph)")
    if "andromede-rados" in names and not (a.interleave and "ceph" in names):
        raise SystemExit("--compare andromede-rados goes with ceph and --interleave")
    return names


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    log = _log
    plan = make_plan(a)
    figs = figures(plan.large_size, plan.small_size)
    names = target_names(a)

    modes = {
        "audit_compare": run_audit_compare,
        "encryption_compare": run_encryption_compare,
        "versioning_compare": run_versioning_compare,
        "placement_compare": run_placement_compare,
    }
    for flag, run_mode in modes.items():
        if getattr(a, flag):
            with make_workdir(a, log) as wd:
                log(f"workdir {wd}; plan {plan}")
                return run_mode(a, plan, wd, log)

    if a.interleave:
        with make_workdir(a, log) as wd:
            log(f"workdir {wd}; plan {plan}")
            return run_peer_compare(a, names, plan, wd, log)

    cond0 = conditions()
    t0 = time.perf_counter()
    results: dict[str, dict[str, Result]] = {}
    meta: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    with make_workdir(a, log) as wd:
        log(f"workdir {wd} ({shutil.disk_usage(wd).free / 1e9:.0f} GB free); plan {plan}")
        for name in names:
            log(f"== {name}")
            try:
                results[name], meta[name] = bench_one(name, a, wd, plan, figs, log)
            except BenchError as exc:
                if not a.compare:
                    raise
                failed[name] = str(exc)
                log(f"  {name} failed, going on with the others: {exc}")
        baseline = None
        if not a.skip_baseline:
            log("== baseline (plain files: write+fsync+rename+dir fsync; read)")
            c0 = conditions()
            baseline = bench_baseline(wd / "baseline", plan, figs, log)
            log(f"  {describe_conditions(c0, conditions())}")
    cond1 = conditions()

    print_summary(figs, results, baseline, plan, cond0, cond1, t0, failed)
    if a.json:
        doc = json_document(figs, results, meta, baseline, plan, cond0, cond1)
        a.json.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {a.json}")
    return 1 if failed else 0


def bench_one(
    name: str,
    a: argparse.Namespace,
    wd: Path,
    plan: Plan,
    figs: list[Figure],
    log: Callable[[str], None],
) -> tuple[dict[str, Result], dict[str, Any]]:
    """Start (or reach) one target, measure it, stop it if we started it."""
    if name == "andromede":
        target = start_andromede(wd, a.andromede_arg, log)
    elif name in PEER_PORTS and not a.endpoint:
        target = start_peer(name, log)
    else:
        target = Target(name, a.endpoint, a.access_key, a.secret_key)
    try:
        log(f"  endpoint {target.endpoint}")
        if not _same_disk(wd, target.data_dir):
            log(f"  warning: {target.data_dir} is not on the baseline's disk ({wd})")
        c0 = conditions()
        results = bench_target(target, plan, figs, log)
        during = describe_conditions(c0, conditions())
        log(f"  {during}")
        meta: dict[str, Any] = {
            "endpoint": target.endpoint,
            "data_dir": str(target.data_dir),
            "conditions": during,
        }
        meta.update({k: v for k, v in target.info.items() if "SECRET" not in k})
        return results, meta
    finally:
        if target.stop is not None:
            target.stop()


def _terminate(signum: int, frame: object) -> None:
    # Unwind through the `finally` blocks: stop the servers we started, remove the workdir.
    raise SystemExit(128 + signum)


def entry() -> None:
    """`python3 bench/s3bench.py ...`: main() with SIGTERM unwinding and errors as one line."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"s3bench: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
