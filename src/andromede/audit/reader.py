"""Reading the trail back: the records that match a query, oldest first, never the trail whole.

Scans run in a worker thread (at most :data:`MAX_SCANS` at once per process, so that a long
export leaves the default thread pool to the data plane) and read segments in 1 MiB chunks;
a query holds at most ``limit`` records.

What a scan avoids:

- **Unpublished entries.** Only what the shared head says is synced is read: a group being
  written may still fail and be zeroed, its seqs reused; a query must not have shown it.
- **Whole segments.** A record is appended after its request started, so every record of a
  segment started before the next segment's first entry was written: when that time is before
  ``since``, the segment is skipped without being opened. Record times have no lower bound (a
  request may run for hours), so ``until`` skips only segments whose bounds a previous scan
  measured (sealed segments never change). The seq range of a segment, known from the first
  entries, skips segments at or before ``after_seq``.
- **JSON parsing.** A line's seq, type and time are read with one anchored regular expression,
  and a line that lacks the exact bytes a filter needs (``"bucket":"photos"``) is dropped
  before parsing. Every filter is then checked exactly on the parsed record.
- **Rescanning for the next page.** The offset after the last record returned is remembered
  (a few dozen pages), so the next page of an export starts where the previous one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.core.audit import AuditQuery, format_time, parse_time

MAX_SCANS: Final = 2
RESUME_POINTS: Final = 64
# A record line as the writer lays it out; the time in the canonical form compares as text.
_RECORD = re.compile(
    rb'\{"seq":(\d+),"prev":"[0-9a-f]{64}","type":"(?:request|event)",'
    rb'"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"'
)
_OTHER = re.compile(rb'\{"seq":\d+,"prev":"[0-9a-f]{64}","type":"(?:segment|checkpoint)"')
_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def time_key(moment: dt.datetime) -> str:
    """A bound as comparable text: records carry whole milliseconds, so a bound is rounded up
    to the next one (``time >= since`` and ``time < until`` then hold exactly)."""
    try:
        utc = moment.astimezone(dt.UTC)
        spare = utc.microsecond % 1000
        if spare:
            utc += dt.timedelta(microseconds=1000 - spare)
    except OverflowError:  # at the ends of the calendar: before or after every record
        return "~" if moment.year > 1 else ""
    return format_time(utc)


def _entry_time_key(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    if _CANONICAL_TIME.fullmatch(text):
        return text
    try:
        return format_time(parse_time(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class _Segment:
    number: int
    path: Path
    inode: int
    start: str  # time of its segment entry; "" when unreadable
    first_seq: int  # seq of its segment entry; 0 when unreadable
    end: int | None  # bytes published so far (live segment); None: read to the zero fill

    @property
    def ident(self) -> tuple[int, int]:
        return (self.number, self.inode)


@dataclass(frozen=True)
class _Summary:
    """What a whole read of a sealed segment measured."""

    records: int
    min_time: str
    max_time: str


class _Filter:
    """A query compiled: byte tests that are necessary for a match, then the exact test."""

    def __init__(self, query: AuditQuery, slack: dt.timedelta) -> None:
        self.query = query
        self.after_seq = query.after_seq
        self.since = time_key(query.since) if query.since is not None else None
        self.until = time_key(query.until) if query.until is not None else None
        self.segment_floor: str | None = None  # segments whose successor began before: skip
        if query.since is not None:
            with contextlib.suppress(OverflowError):
                self.segment_floor = time_key(query.since - slack)
        self._all: list[bytes] = []
        self._any: list[list[bytes]] = []
        if query.tenant is not None:
            self._all.append(_field(b"tenant", query.tenant))
        if query.bucket is not None:
            self._all.append(_field(b"bucket", query.bucket))
        if query.operation is not None:
            self._all.append(_field(b"operation", query.operation))
        if query.principal is not None:
            self._any.append(
                [_field(b"access_key_id", query.principal), _field(b"kind", query.principal)]
            )
        outcome = query.outcome
        self._status: int | None = None
        if outcome is not None and outcome not in ("success", "failure"):
            if outcome.isascii() and outcome.isdigit():
                self._status = int(outcome)
                status = b'"status":' + outcome.encode()
                self._any.append([status + b",", status + b"}"])
            else:
                self._all.append(_field(b"error", outcome))

    def in_time(self, key: str) -> bool:
        """The record's time (as text) is within ``[since, until)``."""
        if self.since is not None and key < self.since:
            return False
        return self.until is None or key < self.until

    def may_match(self, raw: bytes) -> bool:
        """False when the line cannot match (it lacks bytes any match would contain)."""
        return all(needle in raw for needle in self._all) and all(
            any(needle in raw for needle in choice) for choice in self._any
        )

    def matches(self, entry: dict[str, Any]) -> bool:
        """The exact test, on a parsed record."""
        query = self.query
        principal = entry.get("principal")
        if not isinstance(principal, dict):
            principal = {}
        if query.tenant is not None and query.tenant not in (
            entry.get("tenant"),
            principal.get("tenant"),
        ):
            return False
        if query.bucket is not None and entry.get("bucket") != query.bucket:
            return False
        if query.operation is not None and entry.get("operation") != query.operation:
            return False
        if query.principal is not None and query.principal not in (
            principal.get("access_key_id"),
            principal.get("kind"),
        ):
            return False
        return query.outcome is None or self._outcome(entry)

    def _outcome(self, entry: dict[str, Any]) -> bool:
        status = entry.get("status")
        if not isinstance(status, int):
            return False
        if self.query.outcome == "success":
            return status < 400
        if self.query.outcome == "failure":
            return status >= 400
        if self._status is not None:
            return status == self._status
        return entry.get("error") == self.query.outcome


def _field(name: bytes, value: str) -> bytes:
    return b'"' + name + b'":' + fmt.dumps(value).encode("ascii")


def _public(seq: int, entry: dict[str, Any]) -> dict[str, object]:
    """A record as queries return it: its seq, then its fields (the chain hash left out)."""
    out: dict[str, object] = {"seq": seq}
    out.update((k, v) for k, v in entry.items() if k not in ("seq", "prev"))
    return out


class SegmentReader:
    """An :class:`andromede.ports.AuditReader` over the segment files in ``directory``.

    ``clock_slack`` is how far a request's start time may lie after the moment its record was
    appended (a wall clock stepped back in between); segments are skipped by time only beyond it.
    """

    def __init__(self, directory: Path, clock_slack: float = 5.0) -> None:
        self.directory = directory
        self._slack = dt.timedelta(seconds=clock_slack)
        self._scans = asyncio.Semaphore(MAX_SCANS)
        self._starts: dict[tuple[int, int], tuple[str, int]] = {}
        self._summaries: dict[tuple[int, int], _Summary] = {}
        self._resume: OrderedDict[int, tuple[tuple[int, int], int]] = OrderedDict()
        self._resume_lock = threading.Lock()

    async def query(self, query: AuditQuery) -> list[dict[str, object]]:
        """Records matching ``query`` with ``seq > query.after_seq``, at most ``query.limit``,
        oldest first."""
        if query.limit <= 0:
            return []
        async with self._scans:
            return await asyncio.to_thread(self.scan, query)

    # --- in the worker thread ---------------------------------------------------------------
    def scan(self, query: AuditQuery) -> list[dict[str, object]]:
        """The blocking scan behind :meth:`query`."""
        flt = _Filter(query, self._slack)
        segments = self._segments()
        found: list[dict[str, object]] = []
        for index, segment in enumerate(segments):
            following = segments[index + 1] if index + 1 < len(segments) else None
            if self._skip(segment, following, flt):
                continue
            self._read(segment, sealed=following is not None, flt=flt, found=found)
            if len(found) >= query.limit:
                break
        return found

    def _segments(self) -> list[_Segment]:
        published = self._published()
        found: list[_Segment] = []
        for number, path in seg.list_segments(self.directory):
            end: int | None = None
            if published is not None:
                if number > published[0]:
                    break  # created by a rotation whose group is not synced yet
                if number == published[0]:
                    end = published[1]
            try:
                inode = path.stat().st_ino
            except FileNotFoundError:
                continue  # removed by retention meanwhile
            start, first_seq = self._start(number, path, inode)
            found.append(_Segment(number, path, inode, start, first_seq, end))
        alive = {s.ident for s in found}
        self._starts = {k: v for k, v in self._starts.items() if k in alive}
        self._summaries = {k: v for k, v in self._summaries.items() if k in alive}
        return found

    def _published(self) -> tuple[int, int] | None:
        """(segment, offset) of the synced end of the trail, from the writers' shared head;
        None for a trail without one (an offline copy: every whole line is read)."""
        head = seg.published_head(self.directory)
        return None if head is None else (head.segment, head.offset)

    def _start(self, number: int, path: Path, inode: int) -> tuple[str, int]:
        cached = self._starts.get((number, inode))
        if cached is not None:
            return cached
        try:
            entry = seg.first_entry(path)
        except FileNotFoundError:
            return ("", 0)
        if entry is None:
            return ("", 0)
        start = _entry_time_key(entry.get("time")) if entry["type"] == fmt.SEGMENT else None
        if start is None:
            return ("", 0)
        self._starts[(number, inode)] = (start, entry["seq"])
        return (start, entry["seq"])

    def _skip(self, segment: _Segment, following: _Segment | None, flt: _Filter) -> bool:
        if following is not None and following.first_seq:
            if following.first_seq - 1 <= flt.after_seq:
                return True  # every seq in it is at most after_seq
            if flt.segment_floor is not None and following.start < flt.segment_floor:
                return True  # every record in it started before since
        summary = self._summaries.get(segment.ident)
        if summary is None:
            return False
        if summary.records == 0:
            return True
        if flt.since is not None and summary.max_time < flt.since:
            return True
        return flt.until is not None and summary.min_time >= flt.until

    def _read(
        self, segment: _Segment, *, sealed: bool, flt: _Filter, found: list[dict[str, object]]
    ) -> None:
        start = 0
        with self._resume_lock:
            resume = self._resume.get(flt.after_seq)
        if resume is not None and resume[0] == segment.ident:
            start = resume[1]
        whole = sealed and start == 0
        count, low, high = 0, "~", ""
        limit = flt.query.limit
        try:
            for line in self._lines(segment, start):
                hit = self._consider(line.raw, flt)
                if hit is None:
                    continue
                seq, key, record = hit
                count, low, high = count + 1, min(low, key), max(high, key)
                if record is None:
                    continue
                found.append(record)
                if len(found) >= limit:
                    self._remember(seq, segment, line.offset + len(line.raw))
                    return
        except FileNotFoundError:
            return  # removed by retention while the query ran
        if whole:
            self._summaries[segment.ident] = _Summary(count, low, high)

    @staticmethod
    def _lines(segment: _Segment, start: int) -> Iterator[seg.Line]:
        for line in seg.iter_lines(segment.path, start):
            if not line.raw.endswith(b"\n"):
                return  # a torn tail: never acknowledged
            if segment.end is not None and line.offset + len(line.raw) > segment.end:
                return
            yield line

    @staticmethod
    def _consider(raw: bytes, flt: _Filter) -> tuple[int, str, dict[str, object] | None] | None:
        """None for a line that is not a record; else its seq, its time and the record when
        it matches."""
        match = _RECORD.match(raw)
        entry: dict[str, Any] | None = None
        if match is not None:
            seq, key = int(match[1]), match[2].decode("ascii")
        else:
            if _OTHER.match(raw):
                return None
            entry = _parse_record(raw)
            key_or_none = None if entry is None else _entry_time_key(entry.get("time"))
            if entry is None or key_or_none is None:
                return None
            seq, key = entry["seq"], key_or_none
        if seq <= flt.after_seq or not flt.in_time(key) or not flt.may_match(raw):
            return (seq, key, None)
        if entry is None:
            entry = _parse_record(raw)
            if entry is None:
                return None
        return (seq, key, _public(seq, entry) if flt.matches(entry) else None)

    def _remember(self, seq: int, segment: _Segment, offset: int) -> None:
        with self._resume_lock:
            self._resume[seq] = (segment.ident, offset)
            self._resume.move_to_end(seq)
            while len(self._resume) > RESUME_POINTS:
                self._resume.popitem(last=False)


def _parse_record(raw: bytes) -> dict[str, Any] | None:
    """A record entry, or None for anything else (a malformed line is not a query's business:
    ``andromede audit verify`` reports it)."""
    with contextlib.suppress(fmt.BadEntry):
        entry = fmt.parse_line(raw)
        if entry["type"] in fmt.RECORD_TYPES:
            return entry
    return None
