"""`--encryption-compare`: what encryption at rest costs on large objects, measured run by run.

Two fresh `andromede serve` start side by side, each on its own data dir in the workdir: one as
is (every object sealed in AES-256-GCM chunks under its own data key), one with
`ANDROMEDE_UNSAFE_PLAINTEXT_FOR_BENCHMARKS=true` (new writes stored in plaintext through the
same site backend and data path): the baseline. Before measuring, one object holding a marker
is written to each and the files under DATA_DIR/sites/ are searched for it: it must not be
found on the encrypted side (else the figures would not measure encryption, and the run stops)
and should be on the plaintext side. Then every large-object figure (PUT/GET, 1 and 4 clients)
alternates between them run by run (`measure_interleaved`). The table gives each figure's
median on both, the ratio encrypted / plaintext (of the medians, and of each pair of
neighbouring runs), and the server's CPU time per MB moved on each side (all its processes,
from /proc), which tells CPU spent apart from time waited.
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

from .client import S3Raw
from .common import BenchError, MiB
from .figures import Figure, Plan, Result, figures
from .measure import run_async
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

ENCRYPTED, PLAINTEXT = "encrypted", "plaintext"
PLAINTEXT_ENV = "ANDROMEDE_UNSAFE_PLAINTEXT_FOR_BENCHMARKS"
ENVS = {ENCRYPTED: {}, PLAINTEXT: {PLAINTEXT_ENV: "true"}}  # column -> environment added
MARKER_SIZE = 1 * MiB + 4321  # several 64 KiB chunks and a short last one
_SCAN = 4 * MiB
# Bytes per run unless --large-bytes-per-run: twice the main bench's, because a hot 64 MiB GET
# of plaintext runs at 1-2 GB/s here, and 128 MiB would be a run of less than 0.1 s.
BYTES_PER_RUN = {True: 256 * MiB, False: 512 * MiB}  # quick -> bytes


# --------------------------------------------------------------------------------------------
# Proof that the two sides store what they should: a marker looked for in DATA_DIR/sites/.


def files_holding(root: Path, needle: bytes) -> tuple[list[Path], int, int]:
    """Files under `root` whose bytes contain `needle`, and how many files and bytes were read.
    Read in pieces that overlap by len(needle) - 1, so a match across two pieces is found."""
    found: list[Path] = []
    nfiles = nbytes = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        nfiles += 1
        tail = b""
        with contextlib.suppress(OSError), path.open("rb") as f:
            while piece := f.read(_SCAN):
                nbytes += len(piece)
                if needle in tail + piece:
                    found.append(path)
                    break
                tail = piece[-(len(needle) - 1) :]
    return found, nfiles, nbytes


def _tree_bytes(root: Path) -> int:
    total = 0
    for p in root.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
    return total


@dataclasses.dataclass
class StorageCheck:
    holding: int  # files under sites/ holding the marker
    files: int  # files searched
    grew: int  # bytes sites/ grew by for the marker object


async def _marker_roundtrip(raw: S3Raw, key: str, body: bytes) -> None:
    try:
        await raw.put(0, key, body[:16], body[16:])
        await raw.get(0, key, len(body))
    finally:
        raw.close()  # its connection belongs to this event loop; the figures get new ones


def check_storage(side: Side, marker: bytes) -> StorageCheck:
    """PUT an object made of `marker` to `side`, read it back, search sites/ for the marker."""
    if side.target.data_dir is None:
        raise BenchError(f"{side.name}: no data dir to search")
    sites = side.target.data_dir / "sites"
    before = _tree_bytes(sites)
    body = (marker * (MARKER_SIZE // len(marker) + 1))[:MARKER_SIZE]
    run_async(_marker_roundtrip(side.raw, "marker-check", body))
    holding, nfiles, _ = files_holding(sites, marker)
    return StorageCheck(len(holding), nfiles, _tree_bytes(sites) - before)


def describe_checks(checks: dict[str, StorageCheck], marker: bytes) -> str:
    def one(name: str) -> str:
        c = checks[name]
        return f"{name} in {c.holding} of {c.files} files (sites/ +{c.grew:,} B)"

    extra = checks[ENCRYPTED].grew - checks[PLAINTEXT].grew
    return (
        f"storage check: a {MARKER_SIZE:,} B object, {marker.decode()!r} repeated, searched for "
        f"under each DATA_DIR/sites/: {one(ENCRYPTED)}, {one(PLAINTEXT)}; sealed it takes "
        f"{extra:,} B more"
    )


def verify_storage(checks: dict[str, StorageCheck], marker: bytes) -> list[str]:
    """Stop if the encrypted side stores plaintext; a warning if the baseline does not."""
    if checks[ENCRYPTED].holding:
        raise BenchError(
            f"the encrypted server stores plaintext: the marker {marker.decode()!r} is in "
            f"{checks[ENCRYPTED].holding} file(s) under its sites/; nothing to measure"
        )
    if checks[PLAINTEXT].holding:
        return []
    return [
        f"WARNING: the plaintext server's sites/ do not hold the marker: this server does not "
        f"honour {PLAINTEXT_ENV}=true, both columns measure encryption"
    ]


# --------------------------------------------------------------------------------------------
# The measurement, the table and the notes under it.


async def _measure(
    sides: dict[str, Side], figs: list[Figure], plan: Plan, log: Callable[[str], None]
) -> dict[str, dict[str, Result]]:
    async def setup(name: str, side: Side) -> None:
        log(f"  setup {name}: 4 x {plan.large_size // MiB} MiB objects to read (and small)")
        await side.bench.setup()

    return await measure_sides(sides, figs, plan, log, setup)


def cpu_ms(side: Side, key: str) -> str:
    """The server's CPU milliseconds per MB, median over the runs of figure `key`."""
    cpu = side.cpu(key)
    return f"{cpu * 1e3:.2f}" if cpu is not None else "?"


def render(
    figs: list[Figure], results: dict[str, dict[str, Result]], sides: dict[str, Side]
) -> str:
    header = [
        "figure",
        "plaintext",
        "encrypted",
        "encrypted/plaintext",
        "paired runs",
        "server CPU ms/MB plaintext -> encrypted",
    ]
    rows = [header]
    for f in figs:
        plain, enc = results[PLAINTEXT][f.key], results[ENCRYPTED][f.key]
        ratio, paired = ratios(enc, plain)
        rows.append(
            [
                f"{f.label} ({f.unit})",
                fmt_result(plain),
                fmt_result(enc),
                f"{ratio:.0%}",
                fmt_paired(paired),
                f"{cpu_ms(sides[PLAINTEXT], f.key)} -> {cpu_ms(sides[ENCRYPTED], f.key)}",
            ]
        )
    return markdown_table(rows)


# --------------------------------------------------------------------------------------------
# The mode.


def run_encryption_compare(
    a: argparse.Namespace, plan: Plan, wd: Path, log: Callable[[str], None]
) -> int:
    """Start both servers, check what each stores, measure the large figures interleaved."""
    if a.large_bytes_per_run is None:
        plan = dataclasses.replace(plan, large_bytes_per_run=BYTES_PER_RUN[bool(a.quick)])
        log(f"  {plan.large_bytes_per_run // MiB} MiB per run (--large-bytes-per-run to change)")
    figs = [f for f in figures(plan.large_size, plan.small_size) if f.large]
    cond0 = conditions()
    t0 = time.perf_counter()
    marker = f"ANDROMEDE-BENCH-MARKER-{secrets.token_hex(8)}|".encode()
    sides: dict[str, Side] = {}
    with contextlib.ExitStack() as stack:
        for name in (ENCRYPTED, PLAINTEXT):
            server = f"andromede-{name}"
            t = start_server(stack, wd, a, log, label=name, name=server, env=ENVS[name])
            sides[name] = open_side(stack, name, t, plan, log, cls=Side)
        checks = {name: check_storage(side, marker) for name, side in sides.items()}
        check_line = describe_checks(checks, marker)
        log(f"  {check_line}")
        warnings = verify_storage(checks, marker)
        for w in warnings:
            log(f"  {w}")
        results = run_async(_measure(sides, figs, plan, log))
    cond1 = conditions()

    print()
    print(render(figs, results, sides))
    print(
        f"\nmedian (min-max) of {plan.runs} runs, at least {plan.large_bytes_per_run // MiB} "
        f"MiB moved per run; MB/s = 10^6 B/s; runs alternate encrypted/plaintext, order "
        f"reversed each run; paired runs = encrypted/plaintext of neighbouring runs, median "
        f"(min-max); reads hot; {describe_conditions(cond0, cond1)}; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(check_line)
    for note in [*warnings, *client_notes(figs, results)]:
        print(note)
    if a.json:
        extra = {"encryption_compare": _json_extra(figs, results, sides, checks)}
        write_json(a.json, figs, results, sides_meta(sides), plan, (cond0, cond1), extra)
        log(f"wrote {a.json}")
    return 0


def _json_extra(
    figs: list[Figure],
    results: dict[str, dict[str, Result]],
    sides: dict[str, Side],
    checks: dict[str, StorageCheck],
) -> dict[str, Any]:
    out: dict[str, Any] = {"figures": {}}
    for f in figs:
        ratio, paired = ratios(results[ENCRYPTED][f.key], results[PLAINTEXT][f.key])
        out["figures"][f.key] = {
            "ratio_of_medians": ratio,
            "paired_ratios": paired,
            "server_cpu_s_per_mb": {n: s.server_cpu.get(f.key) for n, s in sides.items()},
        }
    out["storage_check"] = {n: dataclasses.asdict(c) for n, c in checks.items()}
    return out
