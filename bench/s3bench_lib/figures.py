"""What is measured: the figures, the plan of runs, their results, and the bytes moved."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

from .common import WARMUP, KiB, MiB


@dataclasses.dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str  # "MB/s" (10^6 B/s) or "req/s"
    op: str  # "put" | "get"
    large: bool
    clients: int


def figures(large_size: int, small_size: int) -> list[Figure]:
    lg, sm = _size_label(large_size), _size_label(small_size)
    return [
        Figure("put_large_x1", f"PUT {lg} x1", "MB/s", "put", True, 1),
        Figure("put_large_x4", f"PUT {lg} x4", "MB/s", "put", True, 4),
        Figure("get_large_x1", f"GET {lg} x1", "MB/s", "get", True, 1),
        Figure("get_large_x4", f"GET {lg} x4", "MB/s", "get", True, 4),
        Figure("put_small_x1", f"PUT {sm} x1", "req/s", "put", False, 1),
        Figure("put_small_x16", f"PUT {sm} x16", "req/s", "put", False, 16),
        Figure("get_small_x1", f"GET {sm} x1", "req/s", "get", False, 1),
        Figure("get_small_x16", f"GET {sm} x16", "req/s", "get", False, 16),
    ]


def _size_label(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n // KiB} KiB"


@dataclasses.dataclass
class Result:
    values: list[float]
    client_cpu: list[float]  # client CPU seconds / wall seconds, per run

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def as_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": min(self.values),
            "max": max(self.values),
            "runs": self.values,
            "client_cpu_median": statistics.median(self.client_cpu),
        }


@dataclasses.dataclass(frozen=True)
class Plan:
    runs: int
    duration: float  # seconds per small-object run
    large_size: int
    small_size: int
    large_bytes_per_run: int  # at least this much is moved per large-object run
    drop_caches: bool

    def large_per_client(self, clients: int, run: str) -> int:
        if run == WARMUP:
            return 1
        return max(1, -(-self.large_bytes_per_run // (clients * self.large_size)))

    def small_duration(self, run: str) -> float:
        return min(0.5, self.duration) if run == WARMUP else self.duration


class Timer:
    """Wall and process-CPU time of one run."""

    def __enter__(self) -> Timer:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = (time.process_time() - self.c0) / self.wall if self.wall > 0 else 0.0


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def payload(size: int) -> bytes:
    # Random so that neither a compressing nor a deduplicating store gets an easy ride; each
    # object also gets a unique 16-byte prefix.
    return os.urandom(size)


def unique_prefix(tag: str, n: int) -> bytes:
    return hashlib.md5(f"{tag}/{n}".encode(), usedforsecurity=False).digest()
