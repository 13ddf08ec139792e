"""Shard format 1: the header and checksummed frames of one shard, and reading them back.

Inside each site's own blob:

    header (32 bytes)  b"ANDSHARD", format u16, kind u8 (0 replica, 1 erasure code),
                       code u8 (erasure backend), k u8, m u8, index u8, reserved u8,
                       data bytes per frame u32, full frame payload bytes u32, zeros
    frames             payload + CRC32C of the payload (u32 big-endian)

A frame carries ``data per frame`` bytes of the blob: a replica frame holds them as they
are; an erasure-coded frame holds shard ``index``'s fragment of a stripe (pyeclib/ISA-L:
``k`` data + ``m`` parity fragments, each with its own small header). Only the last frame is
shorter.
"""

from __future__ import annotations

import contextlib
import functools
import struct
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from awscrt import checksums as _crt

from andromede.core import errors
from andromede.core.placement import Layout
from andromede.ports import SiteBackend

MAGIC = b"ANDSHARD"
SHARD_FORMAT = 1
HEADER = struct.Struct(">8sHBBBBBBII")
HEADER_SIZE = 32
CRC = struct.Struct(">I")
# Blob bytes per replica frame, and per erasure-code fragment of a full stripe.
FRAME = 1 << 20
# Erasure backends by the code kept in shard headers (a reader decodes with the writer's).
EC_BACKENDS = {1: "isa_l_rs_cauchy", 2: "liberasurecode_rs_vand"}
# Below this, a hop to a worker thread costs more than encoding inline.
THREADED = 128 << 10


class ShardFailed(Exception):
    """One shard could not be read (missing, short, corrupt, or its site failed)."""


@dataclass(frozen=True)
class ShardHeader:
    """What a shard file says about itself."""

    erasure: bool
    code: int
    k: int
    m: int
    index: int
    data_per_frame: int
    frame_len: int

    def pack(self) -> bytes:
        """The 32 header bytes."""
        return HEADER.pack(
            MAGIC,
            SHARD_FORMAT,
            1 if self.erasure else 0,
            self.code,
            self.k,
            self.m,
            self.index,
            0,
            self.data_per_frame,
            self.frame_len,
        ).ljust(HEADER_SIZE, b"\0")

    @classmethod
    def unpack(cls, raw: bytes) -> ShardHeader:
        """Parse; ShardFailed when it is no shard header of a known format."""
        if len(raw) != HEADER_SIZE:
            raise ShardFailed("short header")
        magic, fmt, kind, code, k, m, index, _, per_frame, frame_len = HEADER.unpack(
            raw[: HEADER.size]
        )
        if magic != MAGIC or fmt != SHARD_FORMAT or kind not in (0, 1) or frame_len == 0:
            raise ShardFailed("not a shard header")
        return cls(kind == 1, code, k, m, index, per_frame, frame_len)


def crc32c(data: bytes | memoryview) -> bytes:
    """The frame checksum."""
    return CRC.pack(_crt.crc32c(data))


_drivers = threading.local()


def ec_driver(k: int, m: int, code: int) -> object:
    """A pyeclib driver for this thread (drivers are not shared between threads)."""
    from pyeclib.ec_iface import ECDriver  # noqa: PLC0415 - heavy; only erasure code needs it

    cache: dict[tuple[int, int, int], object] = getattr(_drivers, "cache", None) or {}
    _drivers.cache = cache
    driver = cache.get((k, m, code))
    if driver is None:
        driver = ECDriver(k=k, m=m, ec_type=EC_BACKENDS[code])
        cache[(k, m, code)] = driver
    return driver


@functools.cache
def preferred_code() -> int:
    """The fastest erasure backend this machine's pyeclib offers."""
    for code, name in EC_BACKENDS.items():
        try:
            from pyeclib.ec_iface import ECDriver  # noqa: PLC0415

            ECDriver(k=2, m=1, ec_type=name)
        except Exception:  # noqa: S112 - pyeclib raises its own hierarchy per backend
            continue
        return code
    raise RuntimeError("pyeclib has no usable erasure-code backend")


class Codec:
    """Turns one frame's worth of blob bytes into each shard's frame, and back."""

    def __init__(self, layout: Layout, code: int) -> None:
        r = layout.redundancy
        self.erasure, self.k, self.m, self.code = r.erasure, r.k, r.m, code
        self.shards = r.shards
        self.data_per_frame = FRAME * self.k
        self.frame_len = FRAME if not self.erasure else self._fragment_len(self.data_per_frame)

    def _fragment_len(self, size: int) -> int:
        return len(self.encode(bytes(size))[0]) - CRC.size

    def header(self, index: int) -> bytes:
        """Shard ``index``'s header."""
        return ShardHeader(
            self.erasure, self.code, self.k, self.m, index, self.data_per_frame, self.frame_len
        ).pack()

    def encode(self, data: bytes | memoryview) -> list[bytes]:
        """Each shard's frame (payload + CRC) for ``data`` (at most one frame of blob bytes)."""
        if not self.erasure:
            framed = b"".join((data, crc32c(data)))
            return [framed] * self.shards
        fragments: list[bytes] = ec_driver(self.k, self.m, self.code).encode(data)  # type: ignore[attr-defined]
        return [f + crc32c(f) for f in fragments]


def frame_count(size: int, header: ShardHeader) -> int:
    """How many frames a shard of ``size`` bytes holds."""
    step = header.frame_len + CRC.size
    return max(0, -(-(size - HEADER_SIZE) // step))


# liberasurecode's fragment header (``fragment_header_t``, little-endian, packed): index u32,
# data size u32, backend metadata size u32, stripe size u64, ... 80 bytes in all. The same
# on-disk format Swift's erasure-coded objects rely on.
FRAGMENT_HEADER = 80
_FRAGMENT_SIZES = struct.Struct("<III Q")


def fragment_info(fragment: bytes | memoryview) -> tuple[int, int, int]:
    """(index, data bytes in this fragment, bytes in the whole stripe) of a fragment."""
    index, size, _, stripe = _FRAGMENT_SIZES.unpack_from(fragment, 0)
    return index, size, stripe


def decode(header: ShardHeader, fragments: Sequence[bytes | memoryview]) -> bytes:
    """A stripe's blob bytes from at least ``k`` verified fragments.

    The codes are systematic: when the ``k`` data fragments are all there, the stripe is
    their data laid end to end (one copy, no decoding); otherwise liberasurecode decodes."""
    k = header.k
    if len(fragments) >= k and all(
        len(f) > FRAGMENT_HEADER and fragment_info(f)[0] == i for i, f in enumerate(fragments[:k])
    ):
        stripe = fragment_info(fragments[0])[2]
        parts = []
        for f in fragments[:k]:
            _, size, _ = fragment_info(f)
            parts.append(memoryview(f)[FRAGMENT_HEADER : FRAGMENT_HEADER + size])
        data = b"".join(parts)
        if len(data) >= stripe:
            return data[:stripe] if len(data) > stripe else data
    driver = ec_driver(header.k, header.m, header.code)
    out: bytes = driver.decode([bytes(f) for f in fragments])  # type: ignore[attr-defined]
    return out


def reconstruct(
    header: ShardHeader, fragments: dict[int, memoryview], missing: Sequence[int]
) -> dict[int, bytes]:
    """Fragments ``missing`` of a stripe, rebuilt from ``k`` others (no full decode)."""
    wanted = sorted(missing)
    driver = ec_driver(header.k, header.m, header.code)
    # pyeclib sorts the list it is given and answers in that order.
    out: list[bytes] = driver.reconstruct(  # type: ignore[attr-defined]
        [bytes(f) for f in fragments.values()], list(wanted)
    )
    rebuilt = dict(zip(wanted, out, strict=True))
    for index, fragment in rebuilt.items():
        if fragment_info(fragment)[0] != index:
            raise ShardFailed(f"erasure code rebuilt fragment {index} with another index")
    return rebuilt


class FrameReader:
    """Verified frames ``[first, last]`` of one shard, in order."""

    def __init__(self, site: SiteBackend, blob_id: str, index: int, layout: Layout) -> None:
        self.site = site
        self.blob_id = blob_id
        self.index = index
        self.layout = layout
        self.header: ShardHeader | None = None
        self._frames: AsyncGenerator[bytes, None] | None = None

    async def open(self, first: int, last: int) -> ShardHeader:
        """Read and check the header; position at frame ``first``."""
        try:
            size = await self.site.size(self.blob_id)
            raw = b"".join([p async for p in self.site.read(self.blob_id, 0, HEADER_SIZE)])
        except (errors.AndromedeError, OSError, ValueError) as exc:
            raise ShardFailed(f"{self.site.name}: {exc}") from exc
        header = ShardHeader.unpack(raw)
        r = self.layout.redundancy
        if (
            header.erasure != r.erasure
            or header.index != self.index
            or (header.erasure and (header.k, header.m) != (r.k, r.m))
        ):
            raise ShardFailed(f"{self.site.name}: shard header does not match the layout")
        self.header = header
        step = header.frame_len + CRC.size
        start = HEADER_SIZE + first * step
        end = min(size, HEADER_SIZE + (last + 1) * step)
        if end <= start:
            raise ShardFailed(f"{self.site.name}: shard is short")
        self._frames = self.site.read(self.blob_id, start, end - start, piece=step)
        return header

    async def next(self) -> memoryview:
        """The next frame's verified payload (a view of the frame read: no copy)."""
        assert self._frames is not None
        try:
            frame = await anext(self._frames)
        except StopAsyncIteration:
            raise ShardFailed(f"{self.site.name}: shard is short") from None
        except (errors.AndromedeError, OSError) as exc:
            raise ShardFailed(f"{self.site.name}: {exc}") from exc
        if len(frame) <= CRC.size:
            raise ShardFailed(f"{self.site.name}: empty frame")
        payload = memoryview(frame)[: -CRC.size]
        if crc32c(payload) != frame[-CRC.size :]:
            raise ShardFailed(f"{self.site.name}: frame checksum mismatch")
        return payload

    async def close(self) -> None:
        """Release the underlying read."""
        if self._frames is not None:
            frames, self._frames = self._frames, None
            with contextlib.suppress(Exception):
                await frames.aclose()
