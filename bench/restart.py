#!/usr/bin/env python3
"""Restart time after a crash: `kill -9` of `andromede serve` (its whole process group), then
the same command again on the same data dir, on a machine kept busy by CPU burners.

Prints figures; never asserts timing. For each source tree (`--src`, default this checkout's
src/) it starts one server, puts an object, then runs `--cycles` crash-and-restart cycles,
the trees taking turns (A B, B A, ...) so that a neighbour's burst falls on both alike:

    python3 bench/restart.py                               # this tree, 10 cycles, 2 workers
    python3 bench/restart.py --cycles 5 --src /work/main/src --src src   # before / after

Each cycle times, from the kill: `health` (GET /_andromede/health answers 200), `request`
(an authenticated ListBuckets answers 200) and `all workers` (every worker logged its startup
as complete; the next kill waits for that). Beside them, `server CPU`: the CPU time the new
server's processes had used when the request was answered (from /proc), which the machine's
load moves far less than wall time, so it compares runs made under different loads. The
supervisor's kills of workers that were slow to start are counted from the server's log.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.config
import botocore.session

from s3bench_lib.common import REGION, REPO, BenchError
from s3bench_lib.report import conditions, describe_conditions

POLL_S = 0.02
CYCLE_TIMEOUT_S = 120.0
GROUP_GONE_TIMEOUT_S = 10.0
READY_LINE = "Application startup complete."
# What uvicorn's supervisor logs when it replaces a worker (it kills those that do not answer
# its health check in time) or gives up on one that failed to start.
RESPAWN_LINE = re.compile(r"Child process \[\d+\] (died|failed to start)")
FIGURES = ("health", "request", "all workers", "server CPU")


@dataclass
class Server:
    """One `andromede serve` started here, from the tree `src`, in its own process group."""

    label: str
    src: Path
    data_dir: Path
    logs: Path
    port: int
    workers: int
    access_key: str = field(default_factory=lambda: "RESTART" + secrets.token_hex(6).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    times: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in FIGURES})
    respawns: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, cycle: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(self.src))
        env.update(ANDROMEDE_ROOT_ACCESS_KEY=self.access_key)
        env.update(ANDROMEDE_ROOT_SECRET_KEY=self.secret_key)
        argv = [sys.executable, "-m", "andromede", "serve", "--data-dir", str(self.data_dir)]
        argv += ["--address", f"127.0.0.1:{self.port}", "--workers", str(self.workers)]
        self.log_path = self.logs / f"{self.label}-{cycle:03d}.log"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, as a service manager gives it
            )

    def kill(self) -> None:
        """SIGKILL to the whole group (server, workers, audit writer); returns once it is gone."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + GROUP_GONE_TIMEOUT_S
        while _group_alive(self.proc.pid):
            if time.monotonic() > deadline:
                raise BenchError(f"{self.label}: processes of group {self.proc.pid} outlived kill")
            time.sleep(POLL_S)

    def log_text(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")

    def check_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchError(f"{self.label}: serve exited ({self.proc.returncode}):\n{self.tail()}")

    def tail(self) -> str:
        return self.log_text()[-3000:]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_cpu(pgid: int) -> float:
    """Seconds of CPU used by the processes of group ``pgid`` and their reaped children."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid:  # fields[0] is the state: pgrp, utime.. cstime follow
            total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(server: Server) -> Any:
    cfg = botocore.config.Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        connect_timeout=2,
        read_timeout=10,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=REGION,
        config=cfg,
    )


def _healthy(server: Server) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/_andromede/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _answers(client: Any) -> bool:
    try:
        client.list_buckets()
    except Exception:  # not up yet: refused, reset, timed out or an error answer alike
        return False
    return True


def _wait(server: Server, done: Callable[[], bool], t0: float, what: str) -> float:
    deadline = t0 + CYCLE_TIMEOUT_S
    while not done():
        server.check_running()
        if time.monotonic() > deadline:
            raise BenchError(f"{server.label}: no {what} {CYCLE_TIMEOUT_S:.0f} s after the kill")
        time.sleep(POLL_S)
    return time.monotonic() - t0


def _all_ready(server: Server) -> bool:
    return server.log_text().count(READY_LINE) >= server.workers


def first_start(server: Server) -> None:
    """Start on a fresh data dir, put one object, wait for every worker."""
    server.start(0)
    t0 = time.monotonic()
    _wait(server, lambda: _all_ready(server), t0, "first start")
    client = _client(server)
    client.create_bucket(Bucket="restart")
    client.put_object(Bucket="restart", Key="o", Body=b"x" * 4096)


def cycle(server: Server, n: int) -> dict[str, float]:
    """kill -9, start again, time the three figures from the kill."""
    client = _client(server)  # built before the kill: botocore's set-up is not the server's
    t0 = time.monotonic()
    server.kill()
    server.start(n)
    out = {"health": _wait(server, lambda: _healthy(server), t0, "health")}
    out["request"] = _wait(server, lambda: _answers(client), t0, "answer")
    assert server.proc is not None
    out["server CPU"] = _group_cpu(server.proc.pid)
    out["all workers"] = _wait(server, lambda: _all_ready(server), t0, "ready workers")
    server.respawns += len(RESPAWN_LINE.findall(server.log_text()))
    return out


class Burners:
    """`n` processes spinning on the CPU until stopped: the busy machine."""

    def __init__(self, n: int) -> None:
        code = "while True: pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def _p90(values: list[float]) -> float:
    ranked = sorted(values)
    return ranked[max(0, -(-9 * len(ranked) // 10) - 1)]  # nearest rank


def report(servers: list[Server], cond0: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [["tree", "figure (s)", "median", "p90", "max", "cycles"]]
    for s in servers:
        for f in FIGURES:
            v = s.times[f]
            row = [s.label, f, *(f"{x:.2f}" for x in (statistics.median(v), _p90(v), max(v)))]
            rows.append([*row, str(len(v))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        cells = [
            c.ljust(w) if j < 2 else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        print("| " + " | ".join(cells) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    for s in servers:
        each = ", ".join(f"{x:.1f}" for x in s.times["request"])
        print(f"{s.label}: request after each kill (s): {each}")
        print(f"{s.label}: workers the supervisor replaced during start-up: {s.respawns}")
    print(f"{args.workers} workers, {args.burners} CPU burners, {os.cpu_count()} CPUs; ", end="")
    print(describe_conditions(cond0, conditions()))


def _labels(srcs: list[Path]) -> list[str]:
    names = [p.parent.name or str(p) for p in srcs]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in srcs]


def run_cycles(servers: list[Server], cycles: int) -> None:
    """Kill and restart each server ``cycles`` times, alternating which goes first."""
    for n in range(1, cycles + 1):
        for s in servers if n % 2 else reversed(servers):
            figures = cycle(s, n)
            for f, v in figures.items():
                s.times[f].append(v)
            shown = ", ".join(f"{f} {v:.2f}s" for f, v in figures.items())
            print(f"cycle {n} {s.label}: {shown}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--src", type=Path, action="append", help="source tree(s) to run (src/ dir)")
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--burners", type=int, default=2, help="CPU-burning processes during cycles")
    ap.add_argument("--workdir", type=Path, help="data dirs and logs (default: a temp dir)")
    ap.add_argument("--keep-workdir", action="store_true")
    args = ap.parse_args()
    srcs = [p.resolve() for p in (args.src or [REPO / "src"])]
    for p in srcs:
        if not (p / "andromede" / "__main__.py").exists():
            raise SystemExit(f"{p}: no andromede package there")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="restart-", dir=REPO.parent))
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    servers = [
        Server(label, src, workdir / f"data-{i}", logs, _free_port(), args.workers)
        for i, (label, src) in enumerate(zip(_labels(srcs), srcs, strict=True))
    ]
    burners: Burners | None = None
    try:
        for s in servers:
            print(f"{s.label}: first start from {s.src} (data {s.data_dir})", flush=True)
            first_start(s)
        burners = Burners(args.burners)
        cond0 = conditions()
        run_cycles(servers, args.cycles)
        burners.stop()
        burners = None
        report(servers, cond0, args)
    finally:
        if burners is not None:
            burners.stop()
        for s in servers:
            if s.proc is not None:
                with contextlib.suppress(BenchError):
                    s.kill()
        if args.keep_workdir or args.workdir:
            print(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        sys.exit(f"restart: {exc}")
