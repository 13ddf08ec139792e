"""The audit sink of a gateway: a hash-chained trail of segment files, written fail-closed.

Each process has one writer thread. Requests hand it their record and wait; the thread takes
every record waiting, then, holding the trail's lock (``flock``, shared with the other worker
processes of the data dir), chains them after the shared head, writes them in one ``pwrite`` and
one ``fdatasync``, publishes the new head and wakes the requests: one sync per group, as a
database's group commit. A failed write or sync fails every request of the group (the faces
answer 503) and marks the trail unhealthy for ``retry_seconds``, during which new requests are
refused before they do anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.audit.recovery import recover
from andromede.core import errors
from andromede.core.audit import AuditRecord, parse_time

log = logging.getLogger("andromede.audit")
CHECKPOINT_RESERVE: Final = 4096
MAX_GROUP: Final = 4096


@dataclass(frozen=True)
class TrailConfig:
    """How a trail is cut and signed."""

    directory: Path
    segment_bytes: int = 16 << 20
    segment_max_age: float = 86400.0
    checkpoint_interval: float = 60.0
    retry_seconds: float = 1.0


@dataclass
class _Pending:
    body: str
    done: Future[None]


class HashChainTrail:
    """An :class:`andromede.ports.AuditSink` writing the trail under ``config.directory``."""

    def __init__(self, config: TrailConfig, signer: Ed25519PrivateKey) -> None:
        self.config = config
        self.signer = signer
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._failed_until = 0.0
        self._thread: threading.Thread | None = None
        self._lock_fd = -1
        self._shared: seg.SharedHead | None = None
        self._fd = -1
        self._fd_segment = 0
        self._touched: dict[int, int] = {}
        self._created: list[Path] = []

    # --- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        """Create the directory, check or rebuild the head, start the writer thread."""
        directory = self.config.directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._shared = seg.SharedHead(directory / "head")
        with self._locked():
            recovered = recover(directory, self._shared.load(), self.config.segment_bytes)
            self._shared.store(recovered.head)
            if recovered.discarded is not None:
                note = fmt.dumps(recovered.discarded.record().as_dict())
                self._write(recovered.head, [note], None)
        self._thread = threading.Thread(target=self._run, name="andromede-audit", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Drain, stop the writer, and sign the chain head (clean shutdown)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        try:
            await asyncio.to_thread(self._checkpoint_now, "shutdown")
        except OSError:
            log.exception("audit: no checkpoint at shutdown")
        self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._shared is not None:
            self._shared.close()
            self._shared = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # --- the sink ---------------------------------------------------------------------------
    def healthy(self) -> bool:
        """False for a while after a failed write: requests are then refused up front."""
        return time.monotonic() >= self._failed_until and not self._stopping

    async def record(self, record: AuditRecord) -> None:
        """Return once ``record`` is durable in the trail; AuditUnavailable otherwise."""
        done: Future[None] = Future()
        item = _Pending(fmt.dumps(record.as_dict()), done)
        with self._cond:
            if self._stopping:
                raise errors.AuditUnavailable()
            self._queue.append(item)
            if len(self._queue) == 1:
                self._cond.notify()
        await asyncio.wrap_future(done)

    def record_blocking(self, record: AuditRecord) -> None:
        """The same from a thread that has no event loop (tools, shutdown paths)."""
        done: Future[None] = Future()
        with self._cond:
            self._queue.append(_Pending(fmt.dumps(record.as_dict()), done))
            self._cond.notify()
        done.result()

    # --- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.config.checkpoint_interval
        while True:
            with self._cond:
                if not self._queue and not self._stopping:
                    self._cond.wait(timeout=max(interval / 2, 0.05))
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_GROUP))]
                stop = self._stopping and not self._queue
            if batch:
                self._write_group(batch)
            else:
                self._idle_checkpoint()
            if stop and not batch:
                return

    def _write_group(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            with self._locked():
                self._append([item.body for item in batch])
        except OSError as exc:
            self._failed_until = time.monotonic() + self.config.retry_seconds
            log.error("audit trail write failed, refusing requests: %s", exc)
            error = exc
        for item in batch:
            if error is None:
                item.done.set_result(None)
            else:
                failure = errors.AuditUnavailable()
                failure.__cause__ = error
                item.done.set_exception(failure)

    def _idle_checkpoint(self) -> None:
        try:
            with self._locked():
                head = self._head()
                if self._checkpoint_due(head):
                    self._write(head, [], "interval")
        except OSError as exc:
            log.error("audit checkpoint failed: %s", exc)

    def _checkpoint_now(self, reason: str) -> None:
        if self._shared is None:
            return
        with self._locked():
            self._write(self._head(), [], reason)

    # --- writing under the lock -----------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _head(self) -> seg.Head:
        assert self._shared is not None
        head = self._shared.load()
        if head is None:  # pragma: no cover - open() always stores one
            raise OSError("audit head missing")
        return head

    def _append(self, bodies: list[str]) -> None:
        head = self._head()
        reason = "interval" if self._checkpoint_due(head, extra=len(bodies)) else None
        self._write(head, bodies, reason)

    def _checkpoint_due(self, head: seg.Head, extra: int = 0) -> bool:
        pending = head.since_checkpoint + extra
        return pending > 0 and time.time() - head.last_checkpoint_time >= (
            self.config.checkpoint_interval
        )

    def _write(self, head: seg.Head, bodies: list[str], checkpoint: str | None) -> None:
        """Chain ``bodies`` (then a checkpoint if asked) after ``head``; publish the new head
        only once everything is synced."""
        new = seg.Head(**vars(head))
        self._touched = {}
        self._created = []
        try:
            self._fill(new, bodies, checkpoint)
        except OSError:
            self._forget_created()
            # What a failed attempt wrote past the published end is zeroed by the next write.
            end = self._touched.get(head.segment, 0)
            if end > head.offset:
                self._note_dirty(head.segment, end)
            raise
        assert self._shared is not None
        self._shared.store(new)

    def _fill(self, new: seg.Head, bodies: list[str], checkpoint: str | None) -> None:
        buf = bytearray()
        limit = self.config.segment_bytes - CHECKPOINT_RESERVE
        too_old = time.time() - new.segment_created >= self.config.segment_max_age
        if new.sealed or (too_old and new.since_checkpoint + len(bodies) > 0):
            self._rotate(new, buf)
        for body in bodies:
            line = fmt.entry_line(new.next_seq, new.head, body)
            if new.offset + len(buf) + len(line) > limit:
                self._rotate(new, buf)
                line = fmt.entry_line(new.next_seq, new.head, body)
            self._chain(new, buf, line)
            new.since_checkpoint += 1
        if checkpoint is not None:
            self._chain(new, buf, self._checkpoint_line(new, checkpoint))
            self._mark_checkpoint(new)
        self._flush(new, buf, sync=True)

    def _chain(self, head: seg.Head, buf: bytearray, line: bytes) -> None:
        buf += line
        head.head = fmt.line_hash(line)
        head.next_seq += 1

    def _checkpoint_line(self, head: seg.Head, reason: str) -> bytes:
        return fmt.checkpoint_line(
            self.signer,
            seq=head.next_seq,
            prev=head.head,
            time=fmt.now_text(),
            reason=reason,
            segment=head.segment,
            prev_checkpoint=head.last_checkpoint,
            origin=head.origin,
        )

    @staticmethod
    def _mark_checkpoint(head: seg.Head) -> None:
        head.last_checkpoint = head.head
        head.last_checkpoint_time = time.time()
        head.since_checkpoint = 0

    def _flush(self, head: seg.Head, buf: bytearray, *, sync: bool) -> None:
        """Write ``buf`` at the head's offset (zeroing what a failed attempt left beyond it)."""
        if not buf:
            return
        fd = self._segment_fd(head.segment)
        end = head.offset + len(buf)
        data = bytes(buf)
        if head.dirty_end > end:
            data += bytes(head.dirty_end - end)
        touched = head.offset + len(data)
        self._touched[head.segment] = max(self._touched.get(head.segment, 0), touched)
        written = os.pwrite(fd, data, head.offset)
        if written != len(data):
            raise OSError(f"short write to the audit trail ({written} of {len(data)} bytes)")
        if sync:
            os.fdatasync(fd)
        head.offset = end
        head.dirty_end = 0
        buf.clear()

    def _forget_created(self) -> None:
        """A failed group does not leave the segment its rotation created: the head still names
        the previous one, which the next attempt seals again."""
        for path in self._created:
            if self._fd >= 0 and self._fd_segment == int(path.stem):
                os.close(self._fd)
                self._fd = -1
            with contextlib.suppress(OSError):
                path.unlink()
        if self._created:
            with contextlib.suppress(OSError):
                seg.fsync_dir(self.config.directory)

    def _note_dirty(self, segment: int, end: int) -> None:
        assert self._shared is not None
        shared = self._head()
        if shared.segment == segment and end > shared.dirty_end:
            shared.dirty_end = end
            self._shared.store(shared)

    def _segment_fd(self, segment: int) -> int:
        if self._fd >= 0 and self._fd_segment == segment:
            return self._fd
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._fd = os.open(self.config.directory / seg.segment_name(segment), os.O_RDWR)
        self._fd_segment = segment
        return self._fd

    def _rotate(self, head: seg.Head, buf: bytearray) -> None:
        """Seal the current segment with a checkpoint and start the next one.

        The next file is created and zero-filled first (where ENOSPC shows up), so a failure
        leaves the current segment as it was.
        """
        directory = self.config.directory
        number = head.segment + 1
        final = directory / seg.segment_name(number)
        tmp = final.with_suffix(".tmp")
        seg.preallocate(tmp, self.config.segment_bytes)
        if not head.sealed:
            self._chain(head, buf, self._checkpoint_line(head, "segment-end"))
            self._mark_checkpoint(head)
        self._flush(head, buf, sync=True)
        old_fd, old_end = self._segment_fd(head.segment), head.offset
        os.replace(tmp, final)
        self._created.append(final)
        seg.fsync_dir(directory)
        with contextlib.suppress(OSError):  # the zero tail is valid too; this only saves space
            os.ftruncate(old_fd, old_end)
            os.fsync(old_fd)
        head.segment, head.offset, head.dirty_end, head.sealed = number, 0, 0, 0
        head.segment_created = time.time()
        self._chain(head, buf, fmt.segment_line(head.next_seq, head.head, number, fmt.now_text()))

    # --- retention ----------------------------------------------------------------------------
    def apply_retention(self, cutoff: float, shipped_seq: int | None = None) -> int:
        """Remove whole segments whose last entry is older than ``cutoff`` (a Unix time) and,
        when the trail is shipped elsewhere, was shipped (seq at most ``shipped_seq``).

        A 'retention' checkpoint naming the new origin (the first kept entry) is synced first:
        the verifier then knows the removal was the server's. The live segment is never removed.
        Returns the number of segments removed.
        """
        with self._locked():
            head = self._head()
            found = seg.list_segments(self.config.directory)
            expired: list[Path] = []
            for number, path in found:
                if number >= head.segment:
                    break
                tail = seg.last_entry(path)
                if tail is None or parse_time(tail[1]["time"]).timestamp() >= cutoff:
                    break
                if shipped_seq is not None and tail[1]["seq"] > shipped_seq:
                    break
                expired.append(path)
            if not expired:
                return 0
            kept = found[len(expired)][1]
            first = seg.first_entry(kept)
            if first is None:
                raise OSError(f"audit: {kept.name} has no readable first entry")
            head.origin_seq, head.origin_prev = first["seq"], first["prev"]
            self._write(head, [], "retention")
            for path in expired:
                path.unlink()
            seg.fsync_dir(self.config.directory)
            log.info("audit retention: removed %d segment(s) up to %s", len(expired), path.name)
            return len(expired)
