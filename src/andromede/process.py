"""Tuning of a gateway process: the GIL's switch interval, glibc's malloc, the I/O thread pool.

Each setting is process-wide, so it is applied once, by the gateway's startup, and never by
the composition root (tests and tools build runtimes in processes they do not own).
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
from concurrent.futures import ThreadPoolExecutor

# The SQLite writer thread is CPU-bound between its fsyncs; with the default 5 ms GIL switch
# interval an inline read on the event loop that gives up the GIL inside sqlite may wait that
# long to get it back.
SWITCH_INTERVAL_S = 0.0005
# Worker threads mostly wait in fsync: more of them let the filesystem journal batch
# concurrent requests' syncs (the default pool is cores + 4).
IO_THREADS = 32

# glibc serves allocations from 128 KiB up with fresh mmap()s, each unmapped again when freed,
# so a library that allocates and frees MiB-sized buffers per call pays page faults and zeroing
# every time: pyeclib's encode of a 4 MiB stripe ran at ~500 MB/s that way against ~5 GB/s
# from the heap, and it holds the GIL throughout. Buffers up to 16 MiB now come from the heap;
# two arenas keep at most 32 MiB free each (a bound on what the process keeps: a 1 GiB
# erasure-coded round trip grew RSS by ~75 MB, against ~50 MB with glibc's defaults).
MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 32 << 20
ARENA_MAX = 2
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; False where libc is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        and mallopt(_M_ARENA_MAX, ARENA_MAX)
    )


def tune_gateway_process(loop: asyncio.AbstractEventLoop) -> None:
    """Everything above, for the process that runs ``loop``."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    tune_malloc()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="andromede-io")
    )
