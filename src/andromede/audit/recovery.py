"""Opening a trail: trust the shared head only when the segment files agree with it.

After a reboot or a crash the head file may be stale (it is never synced) and the last segment
may end with a torn group (written, not synced, never acknowledged). The head is then rebuilt
from the last segment: the chain is followed up to its last linked entry; what follows is moved
to ``quarantine/`` (never destroyed) and the chain continues with an event naming it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.core.audit import AuditRecord, parse_time
from andromede.localfiles import fsync_dir

log = logging.getLogger("andromede.audit")
DISCARDED_TAIL: Final = "audit:DiscardedTail"


@dataclass(frozen=True)
class Discarded:
    """Bytes after the chain's last linked entry that recovery moved aside."""

    segment: str
    offset: int
    size: int
    sha256: str
    checkpoints: int  # checkpoint lines among them: signed evidence, not a torn group
    quarantine: str

    def record(self) -> AuditRecord:
        """The event the trail records about it, right after recovery."""
        return AuditRecord(
            kind="event",
            time=dt.datetime.now(dt.UTC),
            face="system",
            operation=DISCARDED_TAIL,
            details=tuple((k, str(v)) for k, v in vars(self).items()),
        )


def recover(directory: Path, stored: seg.Head | None, segment_bytes: int) -> Recovered:
    """The head to continue from (creating the first segment of a new trail), and what was
    moved aside to get there."""
    if stored is not None and _consistent(directory, stored):
        return Recovered(stored, None)
    found = seg.list_segments(directory)
    if not found:
        return Recovered(_genesis(directory, segment_bytes), None)
    return _rebuild(directory, found)


@dataclass(frozen=True)
class Recovered:
    """Where the chain continues, and what recovery moved aside (None when nothing)."""

    head: seg.Head
    discarded: Discarded | None


def _consistent(directory: Path, head: seg.Head) -> bool:
    path = directory / seg.segment_name(head.segment)
    newest = seg.list_segments(directory)
    if not newest or newest[-1][0] != head.segment:
        return False
    try:
        with open(path, "rb") as fh:
            start = max(0, head.offset - fmt.MAX_LINE)
            fh.seek(start)
            before = fh.read(head.offset - start)
            after = fh.read(4096)
    except OSError:
        return False
    if head.dirty_end <= head.offset and after.strip(b"\0"):
        return False
    if head.offset == 0:
        return False  # a segment always starts with its segment entry
    if not before.endswith(b"\n"):
        return False
    last = before[:-1].rsplit(b"\n", 1)[-1]
    return fmt.line_hash(last) == head.head


def _genesis(directory: Path, segment_bytes: int) -> seg.Head:
    path = directory / seg.segment_name(1)
    tmp = path.with_suffix(".tmp")
    seg.preallocate(tmp, segment_bytes)
    now = time.time()
    line = fmt.segment_line(1, fmt.GENESIS, 1, fmt.now_text())
    _write_synced(tmp, 0, line)
    os.replace(tmp, path)
    fsync_dir(directory)
    return seg.Head(
        segment=1,
        offset=len(line),
        next_seq=2,
        head=fmt.line_hash(line),
        last_checkpoint=fmt.GENESIS,
        last_checkpoint_time=now,
        since_checkpoint=1,
        segment_created=now,
    )


def _rebuild(directory: Path, found: list[tuple[int, Path]]) -> Recovered:
    number, path = found[-1]
    head = seg.Head(segment=number)
    last: dict[str, Any] | None = None
    for line in seg.iter_lines(path):
        entry = _follow(line, head)
        if entry is None:
            break
        last = entry
        head.offset = line.offset + len(line.raw)
        if entry["type"] == fmt.CHECKPOINT:
            _take_checkpoint(head, entry, line.raw)
        else:
            head.since_checkpoint += 1
        if entry["type"] == fmt.SEGMENT:
            head.segment_created = parse_time(entry["time"]).timestamp()
    discarded = _set_aside(directory, path, head.offset)
    if last is None:
        return Recovered(_empty_segment(directory, found, path), discarded)
    if head.last_checkpoint_time == 0.0:
        _inherit_checkpoint(found, head)
    head.sealed = int(last["type"] == fmt.CHECKPOINT and last.get("reason") == "segment-end")
    return Recovered(head, discarded)


def _set_aside(directory: Path, path: Path, end: int) -> Discarded | None:
    """Move what follows the last linked entry out of the segment, into ``quarantine/``.

    After a power loss that is a group that was written but never synced, hence never
    acknowledged. It may also be the work of someone who edited the trail: so nothing is
    destroyed (the bytes are kept whole), and the chain goes on with an event that names them,
    which the verifier reports.
    """
    junk_end = seg.nonzero_after(path, end)
    if junk_end <= end:
        return None
    with open(path, "rb") as fh:
        fh.seek(end)
        data = fh.read(junk_end - end)
    quarantine = directory / "quarantine"
    quarantine.mkdir(exist_ok=True, mode=0o700)
    name = f"{path.stem}-{end}.bin"
    fd = os.open(quarantine / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(quarantine)
    _write_synced(path, end, bytes(junk_end - end))
    checkpoints = sum(1 for line in data.split(b"\n")[:-1] if _is_checkpoint(line))
    log.warning(
        "audit: %s has %d bytes after its last linked entry (%d checkpoint lines); moved to %s",
        path.name,
        len(data),
        checkpoints,
        name,
    )
    return Discarded(path.name, end, len(data), hashlib.sha256(data).hexdigest(), checkpoints, name)


def _is_checkpoint(line: bytes) -> bool:
    try:
        return bool(fmt.parse_line(line)["type"] == fmt.CHECKPOINT)
    except fmt.BadEntry:
        return False


def _follow(line: seg.Line, head: seg.Head) -> dict[str, Any] | None:
    """The entry on ``line`` if it continues the chain at ``head`` (which it advances)."""
    if not line.raw.endswith(b"\n"):
        return None
    try:
        entry = fmt.parse_line(line.raw)
    except fmt.BadEntry:
        return None
    if head.offset > 0 and (entry["seq"] != head.next_seq or entry["prev"] != head.head):
        return None
    head.next_seq = entry["seq"] + 1
    head.head = fmt.line_hash(line.raw)
    return entry


def _take_checkpoint(head: seg.Head, entry: dict[str, Any], raw: bytes) -> None:
    head.last_checkpoint = fmt.line_hash(raw)
    head.last_checkpoint_time = parse_time(entry["time"]).timestamp()
    head.since_checkpoint = 0
    origin = entry.get("origin") or {}
    head.origin_seq = int(origin.get("seq", 1))
    head.origin_prev = str(origin.get("prev", fmt.GENESIS))


def _inherit_checkpoint(found: list[tuple[int, Path]], head: seg.Head) -> None:
    """No checkpoint in the last segment: the previous one ends with one (segment-end)."""
    if len(found) >= 2:
        tail = seg.last_entry(found[-2][1])
        if tail is not None and tail[1]["type"] == fmt.CHECKPOINT:
            _take_checkpoint(head, tail[1], tail[0].raw)
            head.since_checkpoint = head.next_seq - tail[1]["seq"] - 1
            return
    oldest = seg.first_entry(found[0][1])
    if oldest is not None:
        head.origin_seq, head.origin_prev = oldest["seq"], oldest["prev"]
    head.last_checkpoint_time = time.time()


def _empty_segment(directory: Path, found: list[tuple[int, Path]], path: Path) -> seg.Head:
    """The last segment was created but has no entry yet (a crash during rotation)."""
    number = found[-1][0]
    if len(found) < 2:
        size = os.path.getsize(path)
        path.unlink()
        return _genesis(directory, size)
    tail = seg.last_entry(found[-2][1])
    if tail is None:
        raise OSError(f"audit: cannot find the end of the chain before {path.name}")
    line, entry = tail
    if entry["type"] != fmt.CHECKPOINT or entry.get("reason") != "segment-end":
        # The rotation that created this file did not complete: the previous segment is
        # still the live one.
        path.unlink()
        fsync_dir(directory)
        return _rebuild(directory, found[:-1]).head
    head = seg.Head(segment=number, next_seq=entry["seq"] + 1, head=fmt.line_hash(line.raw))
    if entry["type"] == fmt.CHECKPOINT:
        _take_checkpoint(head, entry, line.raw)
    else:
        head.last_checkpoint_time = time.time()
    first = fmt.segment_line(head.next_seq, head.head, number, fmt.now_text())
    _write_synced(path, 0, first)
    head.offset = len(first)
    head.next_seq += 1
    head.head = fmt.line_hash(first)
    head.since_checkpoint += 1
    head.segment_created = time.time()
    return head


def _write_synced(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of a preallocated segment and sync it."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
        os.fdatasync(fd)
    finally:
        os.close(fd)
