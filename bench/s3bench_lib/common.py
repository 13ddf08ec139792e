"""Constants shared by the whole benchmark, and the one error that stops it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
MiB = 1024 * 1024
KiB = 1024
REGION = "us-east-1"
SMALL_GET_OBJECTS = 256
WRITE_CHUNK = 1 * MiB
REQUEST_TIMEOUT_S = 120.0
WARMUP = "warmup"  # name of the unrecorded run before each figure: 1 object per client, 0.5 s
CLIENT_BOUND_CPU = 0.85  # share of one core above which a figure may be client-bound


class BenchError(RuntimeError):
    """Something made the figures meaningless (an error answer, a short read, a dead server)."""
