"""What the benchmark prints and writes: the table, the run's conditions, the JSON document."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from .common import CLIENT_BOUND_CPU, REPO
from .figures import Figure, Plan, Result


def fmt_num(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def _fmt_ratio(r: float) -> str:
    return f"{r:.2f}" if r >= 0.1 else f"{r:.3f}" if r >= 0.01 else f"{r:.4f}"


def fmt_result(r: Result) -> str:
    return f"{fmt_num(r.median)} ({fmt_num(min(r.values))}-{fmt_num(max(r.values))})"


def render_table(
    figs: list[Figure], results: dict[str, dict[str, Result]], baseline: dict[str, Result] | None
) -> str:
    names = list(results)
    header = ["figure", *names]
    if baseline is not None:
        header += ["baseline", *(f"{n}/baseline" for n in names)]
    rows = [header]
    for f in figs:
        row = [f"{f.label} ({f.unit})"] + [fmt_result(results[n][f.key]) for n in names]
        if baseline is not None:
            b = baseline[f.key]
            row.append(fmt_result(b))
            row += [_fmt_ratio(results[n][f.key].median / b.median) for n in names]
        rows.append(row)
    return markdown_table(rows)


def markdown_table(rows: list[list[str]]) -> str:
    """A Markdown table: the first row is the header; the first column left-aligned, the
    figures right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r: list[str]) -> str:
        cells = [r[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        return "| " + " | ".join(cells) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), sep, *(line(r) for r in rows[1:])])


def _psi_total(kind: str) -> float | None:
    """Microseconds some task waited for `kind` (cpu, io) since boot, from /proc/pressure."""
    try:
        text = Path(f"/proc/pressure/{kind}").read_text()
    except OSError:
        return None
    m = re.search(r"^some .*total=(\d+)", text, flags=re.MULTILINE)
    return float(m[1]) if m else None


def conditions() -> dict[str, Any]:
    """Load and pressure now; others may share this machine, so figures carry them."""
    return {
        "time": time.monotonic(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "psi_cpu_us": _psi_total("cpu"),
        "psi_io_us": _psi_total("io"),
    }


def describe_conditions(start: dict[str, Any], end: dict[str, Any]) -> str:
    out = f"load {start['loadavg'][0]} -> {end['loadavg'][0]} on {start['cpus']} CPUs"
    wall = (end["time"] - start["time"]) * 1e6
    for kind in ("cpu", "io"):
        a, b = start[f"psi_{kind}_us"], end[f"psi_{kind}_us"]
        if a is not None and b is not None and wall > 0:
            out += f"; PSI {kind} {100 * (b - a) / wall:.0f}%"
    return out


def client_bound_notes(figs: list[Figure], results: dict[str, dict[str, Result]]) -> list[str]:
    notes = []
    for name, res in results.items():
        for f in figs:
            cpu = statistics.median(res[f.key].client_cpu)
            if cpu > CLIENT_BOUND_CPU:
                notes.append(f"{name} {f.label}: the client used {cpu:.0%} of a core")
    return notes


def print_summary(
    figs: list[Figure],
    results: dict[str, dict[str, Result]],
    baseline: dict[str, Result] | None,
    plan: Plan,
    cond0: dict[str, Any],
    cond1: dict[str, Any],
    t0: float,
    failed: dict[str, str],
) -> None:
    """The table on stdout, then how it was measured, possibly client-bound figures, failures."""
    print()
    if results:
        print(render_table(figs, results, baseline))
    print(
        f"\nmedian (min-max) of {plan.runs} runs; MB/s = 10^6 B/s; "
        f"{'page cache dropped before reads' if plan.drop_caches else 'reads hot'}; "
        f"{describe_conditions(cond0, cond1)}; {time.perf_counter() - t0:.0f} s"
    )
    for note in client_bound_notes(figs, results):
        print(f"note: {note}: that figure may be limited by the client")
    for name, err in failed.items():
        print(f"FAILED: {name}: {err.splitlines()[0] if err else ''}")


def json_document(
    figs: list[Figure],
    results: dict[str, dict[str, Result]],
    meta: dict[str, dict[str, Any]],
    baseline: dict[str, Result] | None,
    plan: Plan,
    cond0: dict[str, Any],
    cond1: dict[str, Any],
) -> dict[str, Any]:
    """Every run of every figure, with the plan, the conditions and the commit measured."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "commit": git_describe(),
        "plan": dataclasses.asdict(plan),
        "conditions": {"start": cond0, "end": cond1},
        "figures": {f.key: {"label": f.label, "unit": f.unit} for f in figs},
        "baseline": {k: r.as_json() for k, r in (baseline or {}).items()},
        "endpoints": {
            n: {"meta": meta.get(n, {}), "results": {k: r.as_json() for k, r in res.items()}}
            for n, res in results.items()
        },
    }


def git_describe() -> str | None:
    """The commit of this checkout, with "-dirty" when it has local changes."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
