"""The verifier's view of the segment files: one stream of entries and segment ends, read in
1 MiB chunks, with a bounded look-ahead for telling a reordering from a deletion.

Nothing here judges the chain; it only says what lies where (file, line, byte offset) and what
follows the last line of each segment (a torn piece, zero fill, junk).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from andromede.audit import format as fmt
from andromede.audit import segments as seg

LOOKAHEAD: Final = 1024


@dataclass(frozen=True)
class Spot:
    """A place in the trail: segment file, 1-based line number, byte offset of the line."""

    file: str
    segment: int
    line: int
    offset: int


@dataclass(frozen=True)
class Entry:
    """A whole line (newline included) and what it holds; ``body`` is None when it is not a
    well-formed entry, ``error`` then says why."""

    spot: Spot
    hash: str
    size: int
    body: dict[str, Any] | None
    error: str | None = None

    @property
    def seq(self) -> int:
        """The entry's seq (only for a well-formed entry)."""
        assert self.body is not None
        return int(self.body["seq"])

    @property
    def prev(self) -> str:
        """The hash of the line before, as this entry records it."""
        assert self.body is not None
        return str(self.body["prev"])

    @property
    def type(self) -> str:
        """The entry's type."""
        assert self.body is not None
        return str(self.body["type"])


@dataclass(frozen=True)
class SegmentEnd:
    """What follows the last whole line of a segment."""

    file: str
    segment: int
    last: bool  # the newest segment present
    lines: int  # whole lines read
    end: int  # offset after the last whole line
    torn: Spot | None  # a final piece without its newline
    junk: int | None  # offset of the first non-zero byte after the zero fill


Item = Entry | SegmentEnd


def read_entry(spot: Spot, raw: bytes) -> Entry:
    """Parse one whole line found at ``spot``."""
    try:
        body = fmt.parse_line(raw)
    except fmt.BadEntry as exc:
        return Entry(spot, fmt.line_hash(raw), len(raw), None, str(exc))
    return Entry(spot, fmt.line_hash(raw), len(raw), body)


def first_nonzero(path: Path, offset: int) -> int | None:
    """Offset of the first non-zero byte at or after ``offset``; None when there is none."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        pos = offset
        while chunk := fh.read(seg.READ_CHUNK):
            stripped = chunk.lstrip(b"\0")
            if stripped:
                return pos + len(chunk) - len(stripped)
            pos += len(chunk)
    return None


def read_segment(
    number: int, path: Path, *, last: bool, limit: int | None = None
) -> Iterator[Item]:
    """The whole lines of one segment, then its :class:`SegmentEnd`. With ``limit`` (a live
    trail's published end), what lies beyond it is not read: the writer may be adding to it."""
    lines, end, after, torn = 0, 0, 0, None
    for line in seg.iter_lines(path):
        if limit is not None and line.offset + len(line.raw) > limit:
            break
        spot = Spot(path.name, number, lines + 1, line.offset)
        after = line.offset + len(line.raw)
        if not line.raw.endswith(b"\n"):
            torn = spot
            break
        lines, end = lines + 1, after
        yield read_entry(spot, line.raw)
    junk = None if limit is not None else first_nonzero(path, after)
    yield SegmentEnd(path.name, number, last, lines, end, torn, junk)


def read_trail(
    segments: list[tuple[int, Path]], published: tuple[int, int] | None = None
) -> Iterator[Item]:
    """Every segment in order, as one stream; with ``published`` (segment, offset), the live
    segment up to that offset only."""
    for index, (number, path) in enumerate(segments):
        limit = published[1] if published is not None and number == published[0] else None
        yield from read_segment(number, path, last=index == len(segments) - 1, limit=limit)


class Stream:
    """An item iterator that can look ahead (at most :data:`LOOKAHEAD` items kept)."""

    def __init__(self, items: Iterator[Item]) -> None:
        self._items = items
        self._ahead: deque[Item] = deque()

    def __iter__(self) -> Iterator[Item]:
        return self

    def __next__(self) -> Item:
        if self._ahead:
            return self._ahead.popleft()
        return next(self._items)

    def entries_ahead(self) -> Iterator[Entry]:
        """The next well-formed entries, not consumed (stops at the look-ahead limit)."""
        index = 0
        while index < LOOKAHEAD:
            if index == len(self._ahead):
                item = next(self._items, None)
                if item is None:
                    return
                self._ahead.append(item)
            item = self._ahead[index]
            index += 1
            if isinstance(item, Entry) and item.body is not None:
                yield item

    def next_entry(self) -> Entry | None:
        """The next well-formed entry, not consumed."""
        return next(self.entries_ahead(), None)


def newest_checkpoint(segments: list[tuple[int, Path]]) -> dict[str, Any] | None:
    """The last well-formed checkpoint entry of the trail (its signature unchecked)."""
    for _number, path in reversed(segments):
        found: dict[str, Any] | None = None
        for line in seg.iter_lines(path):
            if not line.raw.endswith(b"\n"):
                break
            try:
                entry = fmt.parse_line(line.raw)
            except fmt.BadEntry:
                continue
            if entry["type"] == fmt.CHECKPOINT:
                found = entry
        if found is not None:
            return found
    return None
