#!/usr/bin/env python3
"""CPU per small request, split by stage: where a 4 KiB GET or PUT spends the server's CPU.

Starts `andromede serve --workers 1` on a temp data dir (every guarantee on: encryption, the
audit trail, checksums, fsync), loads it with 4 KiB GETs and PUTs at 1 and 16 clients (the raw
client of s3bench: presigned URLs, keep-alive connections), and prints for each load:

- requests per second and the server's CPU per request (user + system time of its processes,
  from /proc, over an unprofiled run): the total;
- with py-spy on PATH, a second run sampled at 100 Hz with native frames; each sample is given
  to a stage by the innermost frame that names one (HTTP, SigV4, metadata, keys, crypto, data
  path, audit, handlers, event loop). Samples waiting (a thread on a lock or a queue, the event
  loop in epoll, fsync and fdatasync) are counted apart. A stage's share of the working
  samples times the total gives its microseconds.

Sampling still sees time inside other system calls (a file write, a read), so the split
says where the time goes, CPU or kernel; the total is CPU alone. Figures are printed, never
asserted. `python3 bench/cpu_split.py [--duration 10] [--keep]`
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from s3bench_lib.client import S3Raw
from s3bench_lib.targets import bench_bucket, start_andromede

SMALL = 4096
GET_OBJECTS = 256
RATE_HZ = 100

STAGES = [
    ("audit: records, chain, signing", r"andromede/audit|s3/audit\.py|core/audit\.py"),
    ("SigV4", r"andromede/auth/"),
    ("crypto: seal, open (AES-GCM)", r"andromede/crypto/|cryptography/"),
    ("keys: unwrap, wrap", r"andromede/kms/|services/keys\.py|services/encryption\.py"),
    ("metadata (SQLite, SQLAlchemy)", r"sqlalchemy|aiosqlite|andromede/metadata/|sqlite3"),
    (
        "data path: sites, files, checksums",
        r"andromede/dataplane/|services/datapath\.py|services/placement\.py|core/checksums"
        r"|pathlib|zlib|hashlib",
    ),
    ("S3 handlers, services, XML", r"andromede/s3/|andromede/services/"),
    ("HTTP: parse, write (uvicorn, httptools)", r"uvicorn|httptools|h11|andromede/asgi"),
    ("event loop, tasks, thread hops", r"asyncio/|uvloop|concurrent/futures|threading\.py|anyio"),
]  # fmt: skip
# The ASGI app and the gateway sit on every stack: only frames below them name a stage.
_APP = re.compile(r"andromede/s3/(app|http)\.py|andromede/gateway\.py")
_STAGES = [(name, re.compile(rx)) for name, rx in STAGES]
# Waiting, not working: a thread blocked on a lock or a queue, the event loop in epoll.
_IDLE = re.compile(
    r"PyThread_acquire_lock_timed|epoll_p?wait|pthread_cond_(timed)?wait|sem_(timed)?wait"
    r"|os_waitpid|^_worker \(concurrent/futures/thread\.py:81\)|^EpollSelector\.select"
)
# Waiting for the disk: fsync and fdatasync (files, SQLite's commit, the audit trail's chain).
_SYNC = re.compile(r"^f(data)?sync\b|^os_fsync|ChainWriter\._flush")


def server_cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


async def load(raw: S3Raw, op: str, clients: int, seconds: float, run: str) -> int:
    """``clients`` loops of 4 KiB ``op`` for ``seconds``: the requests answered."""
    body = os.urandom(SMALL - 16)
    deadline = time.perf_counter() + seconds
    done = [0] * clients

    async def client(c: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            if op == "put":
                await raw.put(c, f"put/{run}/{c}/{n}", os.urandom(16), body)
            else:
                await raw.get(c, f"get/{(c * 16 + n) % GET_OBJECTS}", SMALL)
            n += 1
        done[c] = n

    await asyncio.gather(*(client(c) for c in range(clients)))
    return sum(done)


def split(raw_file: Path) -> tuple[collections.Counter[str], int, int]:
    """On-CPU samples per stage, and the samples idle and in the trail's fsync."""
    stages: collections.Counter[str] = collections.Counter()
    idle = synced = 0
    for line in raw_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n, frames = int(count), stack.split(";")
        if any(_IDLE.search(f) for f in frames[-4:]):
            idle += n
        elif _SYNC.search(frames[-1]):
            synced += n
        else:
            stages[_stage(frames)] += n
    return stages, idle, synced


def _stage(frames: list[str]) -> str:
    for frame in reversed(frames):
        if _APP.search(frame):
            return "HTTP: parse, write (uvicorn, httptools)"
        for name, rx in _STAGES:
            if rx.search(frame):
                return name
    return "other"


async def measure(
    raw: S3Raw, pid: int, op: str, clients: int, seconds: float, workdir: Path
) -> None:
    """Print one load's total and, with py-spy, its split."""
    before = server_cpu_seconds(pid)
    requests = await load(raw, op, clients, seconds, "plain")
    cpu_us = (server_cpu_seconds(pid) - before) / requests * 1e6
    print(f"\n### {op.upper()} 4 KiB x{clients}: {requests / seconds:.0f} req/s, ", end="")
    print(f"server CPU {cpu_us:.0f} us/request")
    spy = shutil.which("py-spy")
    if spy is None:
        print("(py-spy not on PATH: no split)")
        return
    out = workdir / f"{op}-{clients}.raw"
    cmd = [spy, "record", "--pid", str(pid), "--subprocesses", "--native", "--rate", str(RATE_HZ)]
    cmd += ["--duration", str(int(seconds)), "--format", "raw", "--output", str(out)]
    sampler = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    await load(raw, op, clients, seconds + 1, "sampled")
    async with asyncio.timeout(60):
        await sampler.wait()
    stages, idle, synced = split(out)
    on_cpu = sum(stages.values()) or 1
    print(f"({on_cpu} samples working, {synced} waiting for fsync, {idle} idle)\n")
    print("| stage | share | us/request |\n|---|---:|---:|")
    for name, n in stages.most_common():
        print(f"| {name} | {100 * n / on_cpu:.0f}% | {cpu_us * n / on_cpu:.0f} |")


async def run_all(raw: S3Raw, pid: int, seconds: float, workdir: Path) -> None:
    """The objects GETs read, then each load, all on one event loop (the connections')."""
    body = os.urandom(SMALL - 16)
    for i in range(GET_OBJECTS):
        await raw.put(0, f"get/{i}", os.urandom(16), body)
    try:
        for op in ("get", "put"):
            for clients in (1, 16):
                await measure(raw, pid, op, clients, seconds, workdir)
    finally:
        raw.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per load (default 10)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (samples, logs)")
    args = ap.parse_args()
    # Beside the repository, on its disk, as s3bench does.
    workdir = Path(tempfile.mkdtemp(prefix=".cpu-split-", dir=Path(__file__).resolve().parents[2]))
    target = start_andromede(workdir, ["--workers", "1"], lambda m: print(m, file=sys.stderr))
    assert target.pid is not None
    assert target.stop is not None
    try:
        with bench_bucket(target, lambda m: print(m, file=sys.stderr)) as raw:
            asyncio.run(run_all(raw, target.pid, args.duration, workdir))
    finally:
        target.stop()
        if args.keep:
            print(f"\nwork dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
