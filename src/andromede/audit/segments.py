"""Segment files and the chain head shared by the worker processes of one data dir.

Segments are ``<dir>/NNNNNNNNNN.log``, preallocated with zeros so that appending a group of
entries and ``fdatasync`` flushes data blocks only (no size change to journal). The head (which
segment, where its data ends, the next seq, the last hash, the last checkpoint) lives in a small
file that every process maps; it is only a cache of what the segments say, checked against them
when a process opens the trail and rebuilt from them when it does not match.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from andromede.audit import format as fmt

SEGMENT_RE: Final = re.compile(r"^(\d{10})\.log$")
READ_CHUNK: Final = 1 << 20
ZEROS: Final = bytes(READ_CHUNK)
_HEAD = struct.Struct("<8sQQQ32s32sdQQ32sdQQ")
HEAD_MAGIC: Final = b"ANDAUDH1"


def segment_name(number: int) -> str:
    """File name of segment ``number``."""
    return f"{number:010d}.log"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """Segments present, oldest first."""
    found = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        match = SEGMENT_RE.match(name)
        if match:
            found.append((int(match.group(1)), directory / name))
    return sorted(found)


@dataclass
class Head:
    """The chain's end as the writers share it."""

    segment: int = 0
    offset: int = 0
    next_seq: int = 1
    head: str = fmt.GENESIS
    last_checkpoint: str = fmt.GENESIS
    last_checkpoint_time: float = 0.0
    since_checkpoint: int = 0
    origin_seq: int = 1
    origin_prev: str = fmt.GENESIS
    segment_created: float = 0.0
    dirty_end: int = 0
    sealed: int = 0  # 1 when the segment ends with its segment-end checkpoint

    def pack(self) -> bytes:
        """Binary form for the shared map."""
        return _HEAD.pack(
            HEAD_MAGIC,
            self.segment,
            self.offset,
            self.next_seq,
            bytes.fromhex(self.head),
            bytes.fromhex(self.last_checkpoint),
            self.last_checkpoint_time,
            self.since_checkpoint,
            self.origin_seq,
            bytes.fromhex(self.origin_prev),
            self.segment_created,
            self.dirty_end,
            self.sealed,
        )

    @classmethod
    def unpack(cls, data: bytes) -> Head | None:
        """Parse the shared map; None when it was never written."""
        fields = _HEAD.unpack_from(data)
        if fields[0] != HEAD_MAGIC:
            return None
        return cls(
            segment=fields[1],
            offset=fields[2],
            next_seq=fields[3],
            head=fields[4].hex(),
            last_checkpoint=fields[5].hex(),
            last_checkpoint_time=fields[6],
            since_checkpoint=fields[7],
            origin_seq=fields[8],
            origin_prev=fields[9].hex(),
            segment_created=fields[10],
            dirty_end=fields[11],
            sealed=fields[12],
        )

    @property
    def origin(self) -> fmt.Origin:
        """Where the retained trail starts."""
        return fmt.Origin(self.origin_seq, self.origin_prev)


class SharedHead:
    """The head file, mapped; read and written only under the trail's lock."""

    SIZE: Final = 4096

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < self.SIZE:
                os.ftruncate(fd, self.SIZE)
            self._map = mmap.mmap(fd, self.SIZE)
        finally:
            os.close(fd)

    def load(self) -> Head | None:
        """The head as last stored."""
        return Head.unpack(self._map[: _HEAD.size])

    def store(self, head: Head) -> None:
        """Publish the head to the other processes."""
        self._map[: _HEAD.size] = head.pack()

    def close(self) -> None:
        """Unmap."""
        self._map.close()


@dataclass(frozen=True)
class Line:
    """One entry line found in a segment."""

    offset: int
    raw: bytes  # with its newline


def iter_lines(path: Path, start: int = 0) -> Iterator[Line]:
    """Lines of a segment from ``start`` up to the zero fill (or the end of the file).

    A final piece without a newline is yielded as is (a torn or truncated write); the caller
    decides what it means.
    """
    with open(path, "rb") as fh:
        fh.seek(start)
        pos = start
        pending = b""
        while True:
            chunk = fh.read(READ_CHUNK)
            if not chunk:
                break
            zero = chunk.find(b"\0")
            data = pending + (chunk if zero < 0 else chunk[:zero])
            lines = data.split(b"\n")
            pending = lines.pop()
            for line in lines:
                yield Line(pos, line + b"\n")
                pos += len(line) + 1
            if zero >= 0:
                break
            if len(pending) > fmt.MAX_LINE:
                break
        if pending:
            yield Line(pos, pending)


def nonzero_after(path: Path, offset: int) -> int:
    """End of the last non-zero byte at or after ``offset`` (``offset`` when all zero)."""
    end = offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        pos = offset
        while True:
            chunk = fh.read(READ_CHUNK)
            if not chunk:
                return end
            stripped = chunk.rstrip(b"\0")
            if stripped:
                end = pos + len(stripped)
            pos += len(chunk)


def last_entry(path: Path) -> tuple[Line, dict[str, Any]] | None:
    """The last well-formed entry of a segment (scans it whole)."""
    found: tuple[Line, dict[str, Any]] | None = None
    for line in iter_lines(path):
        if not line.raw.endswith(b"\n"):
            break
        try:
            found = (line, fmt.parse_line(line.raw))
        except fmt.BadEntry:
            break
    return found


def tail_entry(path: Path) -> dict[str, Any] | None:
    """The entry on a segment's last line, read from the end (a sealed segment is cut right
    after it); falls back to a whole scan when the end does not parse."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - 2 * fmt.MAX_LINE))
        tail = fh.read().rstrip(b"\0")
    lines = tail.split(b"\n")
    if len(lines) >= 2:
        try:
            return fmt.parse_line(lines[-2])
        except fmt.BadEntry:
            pass
    found = last_entry(path)
    return found[1] if found is not None else None


def first_entry(path: Path) -> dict[str, Any] | None:
    """The first entry of a segment, if it is whole and well formed (only a line's worth of
    the file is read)."""
    with open(path, "rb") as fh:
        first = fh.read(fmt.MAX_LINE).split(b"\n", 1)
    if len(first) < 2:
        return None
    try:
        return fmt.parse_line(first[0])
    except fmt.BadEntry:
        return None


def preallocate(path: Path, size: int) -> None:
    """Create ``path`` filled with ``size`` zero bytes, synced (raises OSError, e.g. ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = size
        while left > 0:
            n = os.write(fd, ZEROS[: min(left, READ_CHUNK)])
            left -= n
        os.fsync(fd)
    finally:
        os.close(fd)


def published_head(directory: Path) -> Head | None:
    """The chain head the writers published, or None where there is none (an offline copy
    of the segments). Read under the trail's lock, shared: the writers store it exclusively.
    """
    try:
        lock_fd = os.open(directory / "lock", os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_SH)
        try:
            with open(directory / "head", "rb") as fh:
                data = fh.read(SharedHead.SIZE)
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
    except FileNotFoundError:
        return None
    finally:
        os.close(lock_fd)
    return Head.unpack(data) if len(data) >= SharedHead.SIZE else None
