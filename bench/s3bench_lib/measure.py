"""Running the figures: against an endpoint (asyncio, S3Raw) and against plain files (threads).

Both sides go through `_measure_all`, so they get the same warm-up and the same number of runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .client import S3Raw
from .common import SMALL_GET_OBJECTS, WARMUP, WRITE_CHUNK, BenchError
from .figures import Figure, Plan, Result, Timer, drop_caches, payload, unique_prefix
from .report import fmt_result

try:
    from uvloop import new_event_loop as _new_loop
except ImportError:  # the server depends on uvloop; plain asyncio works too, a little slower
    _new_loop = None  # type: ignore[assignment]

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Endpoint side (asyncio).


class EndpointBench:
    def __init__(self, raw: S3Raw, plan: Plan, prefix: str) -> None:
        self.raw = raw
        self.plan = plan
        self.prefix = prefix
        self.large = memoryview(payload(plan.large_size))
        self.small = payload(plan.small_size)

    async def setup(self, *, large: bool = True, small: bool = True) -> None:
        """Objects the GET figures read: 4 large (unless not `large`), SMALL_GET_OBJECTS small
        (unless not `small`)."""
        for i in range(4 if large else 0):
            key = f"{self.prefix}/large-get/{i}"
            await self.raw.put(0, key, unique_prefix(key, 0), self.large[16:])
        if not small:
            return

        async def worker(c: int) -> None:  # one connection each
            for i in range(c, SMALL_GET_OBJECTS, 16):
                key = f"{self.prefix}/small-get/{i}"
                await self.raw.put(c, key, unique_prefix(key, 0), self.small[16:])

        await asyncio.gather(*(worker(c) for c in range(16)))

    async def run(self, fig: Figure, run: str) -> tuple[float, float]:
        """One run of `fig`; returns (value, client CPU share)."""
        self.raw.signer.refresh()
        if fig.op == "get" and self.plan.drop_caches:
            drop_caches()
        if fig.large:
            return await self._large(fig, run)
        return await self._small(fig, run)

    async def _large(self, fig: Figure, run: str) -> tuple[float, float]:
        per = self.plan.large_per_client(fig.clients, run)
        size = self.plan.large_size

        async def client(c: int) -> None:
            for j in range(per):
                if fig.op == "put":
                    key = f"{self.prefix}/{fig.key}/{run}/c{c}-{j}"
                    await self.raw.put(c, key, unique_prefix(key, j), self.large[16:])
                else:
                    key = f"{self.prefix}/large-get/{(c + j) % 4}"
                    await self.raw.get(c, key, size)

        with Timer() as t:
            await asyncio.gather(*(client(c) for c in range(fig.clients)))
        return fig.clients * per * size / t.wall / 1e6, t.cpu

    async def _small(self, fig: Figure, run: str) -> tuple[float, float]:
        size = self.plan.small_size
        body = self.small[16:]
        deadline = time.perf_counter() + self.plan.small_duration(run)
        counts = [0] * fig.clients

        async def client(c: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                if fig.op == "put":
                    key = f"{self.prefix}/{fig.key}/{run}/c{c}/{n}"
                    await self.raw.put(c, key, unique_prefix(key, n), body)
                else:
                    i = (c * 16 + n) % SMALL_GET_OBJECTS
                    await self.raw.get(c, f"{self.prefix}/small-get/{i}", size)
                n += 1
            counts[c] = n

        with Timer() as t:
            await asyncio.gather(*(client(c) for c in range(fig.clients)))
        return sum(counts) / t.wall, t.cpu


async def bench_endpoint(
    raw: S3Raw, plan: Plan, prefix: str, figs: list[Figure], log: Callable[[str], None]
) -> dict[str, Result]:
    eb = EndpointBench(raw, plan, prefix)
    try:
        log(f"  setup: 4 large + {SMALL_GET_OBJECTS} small objects")
        await eb.setup()
        return await _measure_all(figs, plan, eb.run, log)
    finally:
        raw.close()


Runner = Callable[[Figure, str], Awaitable[tuple[float, float]]]


async def _measure_all(
    figs: list[Figure], plan: Plan, run: Runner, log: Callable[[str], None]
) -> dict[str, Result]:
    return (await measure_interleaved(figs, plan, {"": run}, log))[""]


async def measure_interleaved(
    figs: list[Figure], plan: Plan, runners: Mapping[str, Runner], log: Callable[[str], None]
) -> dict[str, dict[str, Result]]:
    """Every figure on every target, run by run: one warm-up each, then for each run every
    target once, the order reversed from one run to the next (A B, B A, A B, ...), so that a
    neighbour's burst or the previous run's writeback falls on all of them alike."""
    names = list(runners)
    out: dict[str, dict[str, Result]] = {n: {} for n in names}
    for fig in figs:
        for n in names:
            await runners[n](fig, WARMUP)
        res = {n: Result([], []) for n in names}
        for r in range(plan.runs):
            for n in names if r % 2 == 0 else reversed(names):
                value, cpu = await runners[n](fig, f"r{r}")
                res[n].values.append(value)
                res[n].client_cpu.append(cpu)
        for n in names:
            out[n][fig.key] = res[n]
            who = f"{n:<10} " if n else ""
            log(
                f"  {who}{fig.label:<16} {fmt_result(res[n])} {fig.unit}"
                f"  (client CPU {res[n].client_cpu[-1]:.0%})"
            )
    return out


# --------------------------------------------------------------------------------------------
# Baseline: the same bytes, sizes and concurrency as plain files on the same disk.


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (it is a dependency of the server), else asyncio."""
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(coro)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: Path, prefix: bytes, body: memoryview | bytes) -> None:
    """What a durable store must do at least: write a temp file, fsync, rename, fsync the dir."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, prefix)
        view = memoryview(body)
        for off in range(0, len(view), WRITE_CHUNK):
            chunk = view[off : off + WRITE_CHUNK]
            while chunk:
                chunk = chunk[os.write(fd, chunk) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.rename(path)
    _fsync_dir(path.parent)


def plain_read(path: Path, buf: memoryview) -> int:
    total = 0
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


class BaselineBench:
    def __init__(self, root: Path, plan: Plan) -> None:
        self.root = root
        self.plan = plan
        self.large = memoryview(payload(plan.large_size))
        self.small = payload(plan.small_size)
        self._local = threading.local()

    def _buf(self) -> memoryview:
        buf: memoryview | None = getattr(self._local, "buf", None)
        if buf is None:
            buf = memoryview(bytearray(WRITE_CHUNK))
            self._local.buf = buf
        return buf

    def setup(self) -> None:
        for d in ("large-get", "small-get"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            p = self.root / "large-get" / str(i)
            durable_write(p, unique_prefix(str(p), 0), self.large[16:])
        for i in range(SMALL_GET_OBJECTS):
            p = self.root / "small-get" / str(i)
            durable_write(p, unique_prefix(str(p), 0), self.small[16:])

    async def run(self, fig: Figure, run: str) -> tuple[float, float]:
        if fig.op == "get" and self.plan.drop_caches:
            drop_caches()
        d = self.root / fig.key / run
        d.mkdir(parents=True, exist_ok=True)
        work = self._large_worker if fig.large else self._small_worker
        counts = [0] * fig.clients
        start = threading.Barrier(fig.clients + 1)
        with concurrent.futures.ThreadPoolExecutor(fig.clients) as pool:
            futs = [pool.submit(work, fig, run, d, c, start, counts) for c in range(fig.clients)]
            with Timer() as t:
                start.wait()
                for f in futs:
                    f.result()
        shutil.rmtree(d, ignore_errors=True)
        if fig.large:
            return sum(counts) * self.plan.large_size / t.wall / 1e6, t.cpu
        return sum(counts) / t.wall, t.cpu

    def _large_worker(
        self, fig: Figure, run: str, d: Path, c: int, start: threading.Barrier, counts: list[int]
    ) -> None:
        per = self.plan.large_per_client(fig.clients, run)
        buf = self._buf()
        start.wait()
        for j in range(per):
            if fig.op == "put":
                p = d / f"c{c}-{j}"
                durable_write(p, unique_prefix(str(p), j), self.large[16:])
            else:
                n = plain_read(self.root / "large-get" / str((c + j) % 4), buf)
                if n != self.plan.large_size:
                    raise BenchError(f"baseline read {n} bytes")
            counts[c] += 1

    def _small_worker(
        self, fig: Figure, run: str, d: Path, c: int, start: threading.Barrier, counts: list[int]
    ) -> None:
        buf = self._buf()
        body = self.small[16:]
        start.wait()
        deadline = time.perf_counter() + self.plan.small_duration(run)
        n = 0
        while time.perf_counter() < deadline:
            if fig.op == "put":
                p = d / f"c{c}-{n}"
                durable_write(p, unique_prefix(str(p), n), body)
            else:
                plain_read(self.root / "small-get" / str((c * 16 + n) % SMALL_GET_OBJECTS), buf)
            n += 1
        counts[c] = n


def bench_baseline(
    root: Path, plan: Plan, figs: list[Figure], log: Callable[[str], None]
) -> dict[str, Result]:
    bb = BaselineBench(root, plan)
    log(f"  setup: files under {root}")
    bb.setup()
    try:
        return run_async(_measure_all(figs, plan, bb.run, log))
    finally:
        shutil.rmtree(root, ignore_errors=True)
