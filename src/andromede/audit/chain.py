"""The trail's writing core: chains groups of records after the head that every writer of a
data dir shares, in one ``pwrite`` and one ``fdatasync`` per group, under the trail's lock.

It is synchronous and single-threaded: the in-process sink (``trail.py``) drives it from a
thread, the writer process (``writer.py``) from its loop. Several writers, in several
processes, may work on one directory: ``flock`` orders them and the shared head (a mapped
file) tells each where the chain ends. With a mirror (``mirror.py``, a cluster's gateways),
every group is also in a Ceph pool before it is published.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.audit.keys import public_pem
from andromede.audit.recovery import recover
from andromede.core.audit import parse_time
from andromede.localfiles import fsync_dir

if TYPE_CHECKING:
    from andromede.audit.mirror import RadosMirror

log = logging.getLogger("andromede.audit")
CHECKPOINT_RESERVE: Final = 4096


@dataclass(frozen=True)
class TrailConfig:
    """How a trail is cut and signed."""

    directory: Path
    segment_bytes: int = 16 << 20
    segment_max_age: float = 86400.0
    checkpoint_interval: float = 60.0
    retry_seconds: float = 1.0
    # Where every group also goes before it counts as durable (a cluster's gateways).
    mirror: RadosMirror | None = None


class ChainWriter:
    """Appends to the trail under ``config.directory`` (see the module docstring)."""

    def __init__(self, config: TrailConfig, signer: Ed25519PrivateKey) -> None:
        self.config = config
        self.signer = signer
        self._lock_fd = -1
        self._shared: seg.SharedHead | None = None
        self._fd = -1
        self._fd_segment = 0
        self._touched: dict[int, int] = {}
        self._created: list[Path] = []
        self._mirror = config.mirror
        self.chain_id = ""

    def open(self) -> None:
        """Create the directory, check or rebuild the head (recording what recovery set
        aside); with a mirror, bring it up to what the disk holds first."""
        directory = self.config.directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._shared = seg.SharedHead(directory / "head")
        with self._locked():
            self.chain_id = _chain_id(directory)
            recovered = recover(directory, self._shared.load(), self.config.segment_bytes)
            self._shared.store(recovered.head)
            if self._mirror is not None:
                self._catch_up(recovered.head)
            if recovered.discarded is not None:
                note = fmt.dumps(recovered.discarded.record().as_dict())
                self._write(recovered.head, [note], None)

    def close(self) -> None:
        """Release the files (no checkpoint: call :meth:`checkpoint` first for that)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._shared is not None:
            self._shared.close()
            self._shared = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def append(self, bodies: list[str]) -> None:
        """Chain and sync ``bodies`` (JSON objects), with an interval checkpoint if one is
        due. Raises OSError, having published nothing, when the write or the sync fails."""
        with self._locked():
            head = self._head()
            reason = "interval" if self._checkpoint_due(head, extra=len(bodies)) else None
            self._write(head, bodies, reason)

    def tick(self) -> None:
        """Write the interval checkpoint if one is due (call it when idle)."""
        with self._locked():
            head = self._head()
            if self._checkpoint_due(head):
                self._write(head, [], "interval")

    def checkpoint(self, reason: str) -> None:
        """Sign the chain head now (``shutdown``: always, even with nothing new)."""
        if self._shared is None:
            return
        with self._locked():
            self._write(self._head(), [], reason)

    # --- under the lock ----------------------------------------------------------------------
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
        if self._mirror is not None:
            self._mirror.write(self.chain_id, seg.segment_name(head.segment), head.offset, data)
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
                fsync_dir(self.config.directory)

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
        fsync_dir(directory)
        with contextlib.suppress(OSError):  # the zero tail is valid too; this only saves space
            os.ftruncate(old_fd, old_end)
            os.fsync(old_fd)
        head.segment, head.offset, head.dirty_end, head.sealed = number, 0, 0, 0
        head.segment_created = time.time()
        self._chain(head, buf, fmt.segment_line(head.next_seq, head.head, number, fmt.now_text()))

    def _catch_up(self, head: seg.Head) -> None:
        """Copy to the mirror what the disk holds and the mirror lacks: a gateway that died
        between its local sync and the mirror's write kept those bytes, and recovery keeps
        them in the chain. Also (re)writes the chain's public key.

        Every writer does this as it opens, under the trail's lock, before its first append:
        the mirror then never has a hole, which is what lets its size say what it holds.
        (The workers' inline appenders and the writer process start in no fixed order.)"""
        assert self._mirror is not None
        self._mirror.put_key(self.chain_id, public_pem(self.signer))
        for number, path in seg.list_segments(self.config.directory):
            length = head.offset if number == head.segment else path.stat().st_size
            held = self._mirror.size(self.chain_id, path.name)
            if held >= length:
                continue
            with path.open("rb") as fh:
                fh.seek(held)
                data = fh.read(length - held)
            self._mirror.write(self.chain_id, path.name, held, data)
            log.info("audit: mirrored %d byte(s) of %s the mirror lacked", len(data), path.name)

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
                tail = seg.tail_entry(path)
                if tail is None or parse_time(tail["time"]).timestamp() >= cutoff:
                    break
                if shipped_seq is not None and tail["seq"] > shipped_seq:
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
                if self._mirror is not None:
                    self._mirror.remove(self.chain_id, path.name)
            fsync_dir(self.config.directory)
            log.info("audit retention: removed %d segment(s) up to %s", len(expired), path.name)
            return len(expired)


def _chain_id(directory: Path) -> str:
    """The trail's chain id (``chain-id``), made at its first start: 32 random hex digits,
    which name the chain in a mirror."""
    path = directory / "chain-id"
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="ascii").strip()
    tmp = directory / f".chain-id.{os.getpid()}.tmp"
    tmp.write_text(os.urandom(16).hex() + "\n", encoding="ascii")
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)
    tmp.unlink()
    fsync_dir(directory)
    return path.read_text(encoding="ascii").strip()
