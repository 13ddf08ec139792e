"""Shipping the audit trail to a separate host: RFC 5424 syslog over TCP.

A trail kept only on the machine it describes can be rewritten by whoever owns that machine.
:class:`SyslogShipper` tails the trail's segments and sends **every** entry (records, segment
markers and the signed checkpoints) to a collector, so that the collector holds the whole
chain and its signed heads and can re-verify it without trusting this host.

One message per entry, framed by octet counting (RFC 6587 §3.4.1, ``MSG-LEN SP SYSLOG-MSG``)::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [andromede@32473 seq="N" type="T" ...] MSG

- PRI: facility 13 (log audit); severity 6 (informational), 5 (notice) for a failed or
  denied request (status >= 400, or an error code set);
- TIMESTAMP: the entry's own time, not the time it was shipped;
- MSGID: the record's operation (``PutObject``), or the entry type (``checkpoint``,
  ``segment``); ``-`` when it is not 1 to 32 printable ASCII characters;
- STRUCTURED-DATA: one element whose SD-ID uses enterprise number 32473, the one RFC 5612
  reserves for documentation (a deployment that wants its own registers a PEN);
- MSG: the entry's line exactly as hashed into the chain (without its newline). Lines are pure
  ASCII (the writer escapes everything else), hence valid UTF-8; they are sent as is, without
  the BOM that RFC 5424 puts before MSG-UTF8, so that the collector stores the hashed bytes.

Delivery is at least once. A cursor file holds the seq of the last entry whose bytes were
written to the socket and drained; it is replaced atomically after each batch, so a restart
resends at most the last batch. Plain TCP syslog has no acknowledgement: bytes drained into a
connection that the collector drops at that moment are lost, which the collector notices as a
gap in the chain. Entries removed by retention before they could be shipped are skipped with a
warning that names the gap.

Only what the writers have published is read: the chain head they share (``<dir>/head``, read
under the trail's lock) says where the synced data ends, so the lines of a group whose sync
failed (which the writer later overwrites, reusing their seqs) are never sent. Where there is
no head (a copy of the segments), a line counts once it ends with its newline. Files are read
in a worker thread, a bounded batch at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.audit.rfc5424 import Origin, frame, parse_address, syslog_message
from andromede.localfiles import write_private_json

log = logging.getLogger("andromede.audit.syslog")

BATCH_LINES: Final = 256
BATCH_BYTES: Final = 1 << 20
CURSOR_VERSION: Final = 1


# --- the cursor ---------------------------------------------------------------------------
class Cursor:
    """The seq of the last entry shipped, in a small file replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int:
        """The stored seq; 0 (ship everything) when there is none or it cannot be read."""
        return self.load_state()[0]

    def load_state(self) -> tuple[int, str | None]:
        """The stored seq and the hash of that entry's line (None when not stored)."""
        try:
            data = json.loads(self.path.read_bytes())
            seq = data["seq"] if data.get("v") == CURSOR_VERSION else None
        except FileNotFoundError:
            return 0, None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("syslog cursor %s unreadable (%s): shipping from the start", self.path, exc)
            return 0, None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            log.warning("syslog cursor %s invalid: shipping from the start", self.path)
            return 0, None
        line_hash = data.get("hash")
        return seq, line_hash if isinstance(line_hash, str) else None

    def store(self, seq: int, line_hash: str | None = None) -> None:
        """Write ``seq`` (and its line's hash) durably: temporary file, fsync, rename, fsync of
        the directory."""
        state: dict[str, object] = {"v": CURSOR_VERSION, "seq": seq}
        if line_hash is not None:
            state["hash"] = line_hash
        write_private_json(self.path, state)


# --- reading the trail (blocking: run in a thread) ----------------------------------------
@dataclass(frozen=True)
class Position:
    """Where reading goes on: a segment number and a byte offset in it."""

    segment: int
    offset: int


@dataclass(frozen=True)
class Item:
    """One line to ship: its seq (None when unreadable), its bytes, its parsed form."""

    seq: int | None
    raw: bytes
    entry: dict[str, Any] | None


@dataclass
class Batch:
    """Lines read in one go and the position after them."""

    items: list[Item] = field(default_factory=list)
    end: Position | None = None
    size: int = 0


def locate(segments: list[tuple[int, Path]], after_seq: int) -> Position | None:
    """Where the entry after ``after_seq`` is: the start of the last segment beginning at or
    before it, else of the oldest one (the rest was removed). Segments begin with increasing
    seqs, so a binary search reads the first line of a few of them only."""
    low, high = 0, len(segments)
    while low < high:  # first segment that begins after the wanted entry
        middle = (low + high) // 2
        first = _first_seq(segments[middle][1])
        if first is not None and first <= after_seq + 1:
            low = middle + 1
        else:
            high = middle
    found = low - 1 if low > 0 else 0
    return Position(segments[found][0], 0) if segments else None


def _first_seq(path: Path) -> int | None:
    """The seq a segment begins with; None when it has no readable entry (yet)."""
    try:
        first = seg.first_entry(path)
    except FileNotFoundError:
        return None
    return None if first is None else int(first["seq"])


def read_batch(
    directory: Path, start: Position | None, after_seq: int, max_lines: int = BATCH_LINES
) -> Batch:
    """Up to ``max_lines`` published lines from ``start`` (located by ``after_seq`` when None
    or gone), skipping entries whose seq is ``after_seq`` or less."""
    if start is None or not (directory / seg.segment_name(start.segment)).exists():
        start = locate(seg.list_segments(directory), after_seq)
        if start is None:
            return Batch()
    gate = seg.published_head(directory)
    batch = Batch(end=start)
    while True:
        pos = batch.end
        assert pos is not None
        if gate is not None and pos.segment > gate.segment:
            return batch
        limit = gate.offset if gate is not None and pos.segment == gate.segment else None
        sealed, later = _sealed(directory, pos.segment, gate)
        try:
            whole = _read_segment(directory, pos, limit, after_seq, batch, max_lines, sealed)
        except FileNotFoundError:  # removed by retention under our feet
            return Batch(items=batch.items, end=None, size=batch.size)
        if not (whole and sealed):
            return batch
        if later is None:
            later = _next_segment(directory, pos.segment)
            if later is None:
                return batch
        batch.end = Position(later, 0)


def _sealed(directory: Path, segment: int, gate: seg.Head | None) -> tuple[bool, int | None]:
    """Whether ``segment`` is whole, and the next segment's number when already seen."""
    if gate is not None:
        return segment < gate.segment, None
    # Without a head, a segment is whole once a newer one exists: the writer seals a segment
    # before it renames the next one into place. Look before reading.
    if (directory / seg.segment_name(segment + 1)).exists():
        return True, segment + 1
    return False, None


def _next_segment(directory: Path, number: int) -> int | None:
    """The segment after ``number`` (numbers are consecutive; a listing covers any hole)."""
    if (directory / seg.segment_name(number + 1)).exists():
        return number + 1
    return next((n for n, _ in seg.list_segments(directory) if n > number), None)


def _read_segment(
    directory: Path,
    pos: Position,
    limit: int | None,
    after_seq: int,
    batch: Batch,
    cap: int,
    sealed: bool,
) -> bool:
    """Add the lines of one segment to ``batch`` (up to ``limit`` bytes when the head gives
    one); True when the segment's end was reached."""
    path = directory / seg.segment_name(pos.segment)
    offset, whole = pos.offset, True
    for line in seg.iter_lines(path, pos.offset):
        end = line.offset + len(line.raw)
        if not line.raw.endswith(b"\n"):  # still being written, or torn
            whole = limit is None and sealed
            if whole:  # a sealed segment's torn line never completes
                log.warning("audit %s: skipping a torn line at offset %d", path.name, line.offset)
            break
        if limit is not None and end > limit:
            break
        if len(batch.items) >= cap or batch.size >= BATCH_BYTES:
            whole = False
            break
        offset = end
        item = _item(path, line)
        if item.seq is None or item.seq > after_seq:
            batch.items.append(item)
            batch.size += len(line.raw)
    batch.end = Position(pos.segment, offset)
    return whole and (limit is None or offset >= limit)


def _item(path: Path, line: seg.Line) -> Item:
    try:
        entry = fmt.parse_line(line.raw)
    except fmt.BadEntry as exc:
        log.warning(
            "audit %s: unreadable line at %d shipped as is: %s", path.name, line.offset, exc
        )
        return Item(None, line.raw, None)
    return Item(int(entry["seq"]), line.raw, entry)


# --- the shipper --------------------------------------------------------------------------
class SyslogShipper:
    """Tails the trail in ``directory`` and ships each entry to the collector at ``address``.

    Run :meth:`run_forever` in the one process of a data dir that runs background jobs.
    """

    def __init__(
        self,
        directory: Path,
        address: str,
        cursor_path: Path,
        hostname: str,
        app_name: str = "andromede",
        *,
        connect_timeout: float = 10.0,
        send_timeout: float = 30.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        batch_lines: int = BATCH_LINES,
    ) -> None:
        self.directory = directory
        self.host, self.port = parse_address(address)
        self.cursor = Cursor(cursor_path)
        self.origin = Origin.of(hostname, app_name, str(os.getpid()))
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.batch_lines = batch_lines
        self._shipped_seq: int | None = None  # loaded from the cursor on first use
        self._shipped_hash: str | None = None
        self._position: Position | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def run_forever(self, poll_interval: float = 0.5) -> None:
        """Ship, then poll every ``poll_interval`` seconds, until cancelled. Failures (collector
        unreachable, files unreadable) are retried with capped exponential backoff."""
        failures = 0
        try:
            while True:
                try:
                    await self.ship_once()
                except OSError as exc:
                    failures += 1
                    delay = self._backoff(failures)
                    log.warning(
                        "audit shipping to %s:%d failed (%s); retry in %.1fs",
                        self.host,
                        self.port,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                except Exception:
                    # A background task that dies stops shipping for good: log and go on.
                    failures += 1
                    log.exception("audit shipping failed")
                    await asyncio.sleep(self._backoff(failures))
                    continue
                if failures:
                    log.info("audit shipping to %s:%d resumed", self.host, self.port)
                failures = 0
                await asyncio.sleep(poll_interval)
        finally:
            await self.close()

    async def ship_once(self) -> int:
        """Ship every published entry not shipped yet; the number of entries sent. Raises
        OSError when the collector cannot be reached (what was sent before stays shipped)."""
        if self._shipped_seq is None:
            self._shipped_seq, self._shipped_hash = await asyncio.to_thread(self.cursor.load_state)
        shipped_seq = self._shipped_seq or 0
        head = await asyncio.to_thread(seg.published_head, self.directory)
        if head is not None and head.next_seq - 1 < shipped_seq:
            shipped_seq = await asyncio.to_thread(self._rewind)  # the chain went back
        sent = 0
        while True:
            batch = await asyncio.to_thread(
                read_batch, self.directory, self._position, shipped_seq, self.batch_lines
            )
            if batch.items and self._rewritten(batch.items[0]):
                shipped_seq = await asyncio.to_thread(self._rewind)
                continue
            if batch.items:
                await self._send(b"".join(self._frames(batch.items)))
                last, last_hash = self._note_gaps(batch.items)
                if last > shipped_seq:
                    await asyncio.to_thread(self.cursor.store, last, last_hash)
                    self._shipped_seq, self._shipped_hash = last, last_hash
                    shipped_seq = last
                sent += len(batch.items)
            self._position = batch.end
            if not batch.items:
                return sent

    def _rewritten(self, item: Item) -> bool:
        """The entry after the last one shipped no longer links to it: the chain was rebuilt
        from an earlier point (a recovery set entries aside, see recovery.py)."""
        if item.entry is None or self._shipped_hash is None:
            return False
        return item.seq == (self._shipped_seq or 0) + 1 and item.entry.get("prev") != (
            self._shipped_hash
        )

    def _rewind(self) -> int:
        """Ship again from the start of the segment that held the last entry shipped: only
        the live segment is ever rebuilt, and the collector then gets what replaced it (the
        recovery's event first). Entries before the break arrive twice."""
        shipped = self._shipped_seq or 0
        segments = seg.list_segments(self.directory)
        start = locate(segments, max(shipped - 1, 0))
        first = _first_seq(self.directory / seg.segment_name(start.segment)) if start else None
        restart = max((first or 1) - 1, 0)
        log.warning(
            "audit trail changed after entry %d (a recovery set entries aside): shipping again "
            "from entry %d",
            shipped,
            restart + 1,
        )
        self._shipped_seq, self._shipped_hash, self._position = restart, None, None
        return restart

    async def close(self) -> None:
        """Close the connection (the next shipment reconnects)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # --- helpers ----------------------------------------------------------------------------
    def _frames(self, items: list[Item]) -> list[bytes]:
        return [frame(syslog_message(self.origin, item.raw, item.entry)) for item in items]

    def _note_gaps(self, items: list[Item]) -> tuple[int, str | None]:
        """The highest seq among ``items`` (at least the shipped one) and its line's hash;
        warns about gaps."""
        last = self._shipped_seq or 0
        last_hash = self._shipped_hash
        for item in items:
            if item.seq is None:
                continue
            if item.seq > last + 1:
                log.warning(
                    "audit entries %d to %d were never shipped to syslog (no longer in the "
                    "trail, most likely removed by retention)",
                    last + 1,
                    item.seq - 1,
                )
            if item.seq > last:
                last, last_hash = item.seq, fmt.line_hash(item.raw)
        return last, last_hash

    def _backoff(self, failures: int) -> float:
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** min(failures - 1, 30))
        return ceiling * random.uniform(0.5, 1.0)

    async def _send(self, payload: bytes) -> None:
        """Write ``payload`` and wait until it drained into the kernel; on any failure the
        connection is dropped and the error raised."""
        try:
            writer = await self._connected()
            writer.write(payload)
            await asyncio.wait_for(writer.drain(), self.send_timeout)
        except OSError:
            await self.close()
            raise

    async def _connected(self) -> asyncio.StreamWriter:
        reader, writer = self._reader, self._writer
        # A collector never talks back: end of stream means it closed the connection, and
        # writing into it would lose the batch.
        if (
            writer is not None
            and reader is not None
            and not (reader.at_eof() or writer.is_closing())
        ):
            return writer
        await self.close()
        opened = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.connect_timeout
        )
        self._reader, self._writer = opened
        # drain() then returns only once every byte has left for the kernel: a batch that
        # sits in our buffer when the process dies must not count as shipped.
        opened[1].transport.set_write_buffer_limits(high=0)
        log.info("audit shipping connected to %s:%d", self.host, self.port)
        return opened[1]


class ShipperThread:
    """A shipper on its own thread and event loop, for a process whose main loop is not
    asyncio (the audit writer process)."""

    def __init__(self, shipper: SyslogShipper) -> None:
        self.shipper = shipper
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="audit-shipper", daemon=True)

    def start(self) -> None:
        """Start shipping."""
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self.shipper.run_forever())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)

    def stop(self, final_wait_s: float) -> None:
        """Stop, then ship what is left (the shutdown checkpoint) if the collector answers
        within ``final_wait_s``."""
        if self._thread.is_alive():
            # Looked up in the loop: the task exists by the time the loop runs callbacks.
            self._loop.call_soon_threadsafe(lambda: self._task and self._task.cancel())
        self._thread.join()
        try:
            self._loop.run_until_complete(asyncio.wait_for(self.shipper.ship_once(), final_wait_s))
        except (OSError, TimeoutError):
            log.warning("audit: the last entries were not shipped; the next start will")
        finally:
            self._loop.close()
