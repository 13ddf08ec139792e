"""Offline verification of an audit trail: does not trust the server, only its public key.

One pass over the segment files, oldest first, streamed (a bounded look-ahead aside, nothing
is held but the chain head). Each entry must carry the next seq and the hash of the line
before it; each segment must start with its segment entry and, unless it is the newest, end
with its segment-end checkpoint followed by nothing but zero bytes; each checkpoint must verify
under the public key and agree with the chain (count, previous checkpoint, segment, key id).
The first entry present must be the genesis entry or the origin that the newest checkpoint
names (what retention left). Entries after the last checkpoint are an unsigned tail: chained,
not signed yet, reported as a warning.

Verification stops at the first problem: what follows a broken link cannot be vouched for, and
a precise first spot is what an auditor needs. See :mod:`andromede.audit.verify_report` for
what a report holds.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.audit import verify_report as vr
from andromede.audit.recovery import DISCARDED_TAIL
from andromede.audit.verify_chain import at, broken_link, entries, origin_of, start_problem
from andromede.audit.verify_checkpoint import Expected, check_checkpoint
from andromede.audit.verify_read import (
    Entry,
    Item,
    SegmentEnd,
    Spot,
    Stream,
    newest_checkpoint,
    read_trail,
)
from andromede.audit.verify_report import Facts, Finding, Report
from andromede.core.audit import parse_time

__all__ = ["Facts", "Finding", "Report", "verify_trail"]

SEGMENT_END: Final = "segment-end"


def verify_trail(directory: Path, public_key: Ed25519PublicKey, *, live: bool = False) -> Report:
    """Verify the trail in ``directory`` (segment files ``NNNNNNNNNN.log``) against
    ``public_key``; raises FileNotFoundError when the directory does not exist.

    The report's problems hold at most one finding, the first problem in trail order, named
    by segment file, line, byte offset and seq; reading stops there (``facts.complete`` is then
    False). Warnings (unsigned tail, no shutdown checkpoint, clock going back) never make the
    trail fail.

    ``live`` (a server's own trail, in place): the chain is read up to the head the writers
    published, as a snapshot; what a running writer appended after it is left out, and reported
    as a warning when present. A copy is verified with ``live`` False: every byte counts.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"no audit trail directory {directory}")
    segments = seg.list_segments(directory)
    head = seg.published_head(directory) if live else None
    if head is not None:
        segments = [(n, p) for n, p in segments if n <= head.segment]
    facts = Facts(key_id=fmt.key_id(public_key), segments=len(segments))
    report = Report(directory, facts)
    if not segments:
        report.problems.append(
            Finding(vr.EMPTY, f"no segment file (NNNNNNNNNN.log) in {directory}")
        )
        return report
    facts.first_segment, facts.last_segment = segments[0][1].name, segments[-1][1].name
    walker = _Walker(public_key, report, newest_checkpoint(segments))
    published = (head.segment, head.offset) if head is not None else None
    walker.run(Stream(read_trail(segments, published)))
    if head is not None and segments:
        _beyond_published(report, segments[-1][1], head.offset)
    return report


def _beyond_published(report: Report, path: Path, offset: int) -> None:
    beyond = seg.nonzero_after(path, offset) - offset
    if beyond > 0:
        report.warnings.append(
            Finding(
                vr.BEYOND_HEAD,
                f"{beyond} bytes after the published head in {path.name}: a write in progress "
                "if the server runs; verify a copy of a stopped server's trail to check them",
                segment=path.name,
                offset=offset,
            )
        )


class _Walker:
    """The chain walk: state between entries, one check per method."""

    def __init__(
        self, public: Ed25519PublicKey, report: Report, newest: dict[str, Any] | None
    ) -> None:
        self.public = public
        self.key_id = fmt.key_id(public)
        self.report = report
        self.facts = report.facts
        self.newest = newest
        self.stream = Stream(iter(()))
        self.previous: Entry | None = None  # the chain head: last entry accepted
        self.previous_signed = False  # the chain head is a checkpoint that verified
        self.segment: int | None = None
        self.in_segment = 0  # entries accepted in the current segment
        self.sealed = False  # the current segment's segment-end checkpoint was seen
        self.genesis = False  # the trail starts at seq 1
        self.checkpoint_hash: str | None = None
        self.origin_seq = 0
        self.pending_origin: tuple[int, str] | None = None
        self.last_time: dt.datetime | None = None
        self.tail_start: Entry | None = None

    # --- the walk ---------------------------------------------------------------------------
    def run(self, stream: Stream) -> None:
        """Check every item; stop at the first problem."""
        self.stream = stream
        for item in stream:
            problem = self._check(item)
            if problem is not None:
                self.report.problems.append(problem)
                return
        self.facts.complete = True
        self._finish()

    def _check(self, item: Item) -> Finding | None:
        number = item.segment if isinstance(item, SegmentEnd) else item.spot.segment
        if number != self.segment:
            problem = self._enter(number, item)
            if problem is not None:
                return problem
        if isinstance(item, SegmentEnd):
            return self._end(item)
        if item.body is None:
            return Finding(vr.MALFORMED, f"not a well-formed entry: {item.error}", **at(item.spot))
        problem = self._link(item) or self._place(item)
        if problem is None and item.type == fmt.CHECKPOINT:
            problem = self._checkpoint(item)
        if problem is None and item.body.get("operation") == DISCARDED_TAIL:
            problem = self._discarded(item, item.body)
        if problem is None:
            self._accept(item)
        return problem

    def _accept(self, item: Entry) -> None:
        facts = self.facts
        self.previous, self.previous_signed = item, item.type == fmt.CHECKPOINT
        self.in_segment += 1
        facts.entries += 1
        facts.last_seq = item.seq
        if item.type in fmt.RECORD_TYPES:
            facts.records += 1
        if item.type != fmt.CHECKPOINT:
            self.tail_start = self.tail_start or item
            return
        body = item.body
        assert body is not None
        facts.checkpoints += 1
        facts.last_checkpoint_seq = item.seq
        facts.last_checkpoint_time = body["time"]
        facts.last_checkpoint_reason = body["reason"]
        self.checkpoint_hash = item.hash
        self.origin_seq = body["origin"]["seq"]
        self.sealed = body["reason"] == SEGMENT_END
        self.tail_start = None

    def _next_seq(self) -> int:
        return self.previous.seq + 1 if self.previous is not None else 1

    def _next_present(self) -> int | None:
        """Seq of the next well-formed entry ahead (for the end of a missing range)."""
        ahead = self.stream.next_entry()
        return None if ahead is None else ahead.seq

    # --- segments ---------------------------------------------------------------------------
    def _enter(self, number: int, item: Item) -> Finding | None:
        if self.segment is not None and number != self.segment + 1:
            first = self._next_seq()
            whole = isinstance(item, Entry) and item.body is not None
            present = item.seq if isinstance(item, Entry) and whole else self._next_present()
            last = present - 1 if present is not None else None
            names = seg.segment_name(self.segment + 1)
            if number > self.segment + 2:
                names += f"..{seg.segment_name(number - 1)}"
            gone = f"{entries(first, last)} are gone" if last is not None else "entries are gone"
            return Finding(
                vr.MISSING_SEGMENT,
                f"segment file(s) {names} missing (before {seg.segment_name(number)}): {gone}",
                segment=seg.segment_name(self.segment + 1),
                seq=first,
                first_seq=first,
                last_seq=last,
            )
        self.segment, self.in_segment, self.sealed = number, 0, False
        return None

    def _end(self, end: SegmentEnd) -> Finding | None:
        if end.torn is not None:
            return self._torn(end, end.torn)
        if end.junk is not None:
            return Finding(
                vr.JUNK,
                f"{end.file} holds non-zero bytes at byte {end.junk}, after its last entry "
                "and the zero fill: data hidden outside the chain",
                segment=end.file,
                offset=end.junk,
            )
        if end.lines == 0 and end.last:
            self.report.warnings.append(
                Finding(
                    vr.EMPTY_SEGMENT,
                    f"{end.file} holds no entry yet (a rotation interrupted by a crash; the "
                    "server writes its segment entry at the next start)",
                    segment=end.file,
                )
            )
            return None
        if end.last or self.sealed:
            return None
        return self._cut(end)

    def _torn(self, end: SegmentEnd, torn: Spot) -> Finding:
        if end.junk is not None:
            return Finding(
                vr.MALFORMED,
                f"the line at {torn.file} line {torn.line} is cut short (by a zero byte, or "
                "longer than a line may be) and more data follows",
                **at(torn),
                seq=self._next_seq(),
            )
        after = f"after seq {self.previous.seq}" if self.previous is not None else "at its start"
        if end.last:
            message = (
                f"the trail ends in the middle of an entry {after} (a torn last line): "
                "truncated, or a write the server never acknowledged (a crash)"
            )
            return Finding(vr.TRUNCATED, message, **at(torn), seq=self._next_seq())
        return self._cut(end, torn)

    def _cut(self, end: SegmentEnd, torn: Spot | None = None) -> Finding:
        """A segment that is not the newest ends without its segment-end checkpoint."""
        first = self._next_seq()
        present = self._next_present()
        last = present - 1 if present is not None and present > first else None
        gone = f": {entries(first, last)} were cut off" if last is not None else ""
        where = torn or Spot(end.file, end.segment, end.lines + 1, end.end)
        after = f"seq {first - 1}" if self.previous is not None else "no entry"
        if torn is not None:
            how = f"ends in the middle of an entry after {after}"
        elif end.lines == 0:
            how = "holds no entry"
        else:
            how = f"ends after {after} without its segment-end checkpoint"
        return Finding(
            vr.TRUNCATED,
            f"{end.file} {how}{gone}",
            **at(where),
            seq=first,
            first_seq=first,
            last_seq=last,
        )

    def _place(self, item: Entry) -> Finding | None:
        assert item.body is not None
        body, where = item.body, item.spot.file
        if self.in_segment == 0:
            if item.type != fmt.SEGMENT or body.get("segment") != self.segment:
                problem = f"the first entry of {where} is not its segment entry"
            elif body.get("format") != fmt.FORMAT or body.get("v") != fmt.VERSION:
                problem = (
                    f"{where} is not in a known format ({body.get('format')!r} v{body.get('v')!r})"
                )
            else:
                problem = None
        elif item.type == fmt.SEGMENT:
            problem = f"a segment entry in the middle of {where}"
        else:
            problem = (
                f"an entry after the segment-end checkpoint of {where}" if self.sealed else None
            )
        if problem is None:
            return self._origin_named(item)
        return Finding(vr.STRUCTURE, problem, **at(item.spot), seq=item.seq)

    def _origin_named(self, item: Entry) -> Finding | None:
        """The newest checkpoint named an origin past the first entry: that entry must match."""
        pending = self.pending_origin
        if pending is None or item.seq != pending[0]:
            return None
        self.pending_origin = None
        if item.prev == pending[1]:
            return None
        return Finding(
            vr.BAD_CHECKPOINT,
            f"the newest checkpoint names seq {item.seq} as the trail's origin with another "
            "prev hash than the entry there records",
            **at(item.spot),
            seq=item.seq,
        )

    # --- the chain ----------------------------------------------------------------------------
    def _link(self, item: Entry) -> Finding | None:
        if self.previous is not None:
            return broken_link(item, self.previous, self.previous_signed, self.stream)
        self.facts.first_seq = item.seq
        self.genesis = item.seq == 1
        origin = origin_of(self.newest)
        if origin is not None and origin[0] > item.seq:
            self.pending_origin = origin
        return start_problem(item, origin)

    # --- checkpoints --------------------------------------------------------------------------
    def _checkpoint(self, item: Entry) -> Finding | None:
        signed = self.facts.last_checkpoint_seq
        expected = Expected(
            public=self.public,
            key_id=self.key_id,
            segment=self.segment,
            prev_checkpoint=self.checkpoint_hash or (fmt.GENESIS if self.genesis else None),
            origin_seq=self.origin_seq,
            first_unsigned=signed + 1 if signed is not None else self.facts.first_seq or 1,
        )
        problem = check_checkpoint(item, expected)
        if problem is None:
            assert item.body is not None
            self._clock(item, item.body)
        return problem

    def _discarded(self, item: Entry, body: dict[str, Any]) -> Finding | None:
        """A restart set bytes aside (see audit/recovery.py). A torn group never holds a
        checkpoint that was synced before the crash; one that does means entries covered by a
        signature were cut out of the chain."""
        details = body.get("details") or {}
        where = f"{details.get('size')} bytes of {details.get('segment')} from offset " + str(
            details.get("offset")
        )
        signed = str(details.get("checkpoints", "0")) != "0"
        found = Finding(
            vr.DISCARDED_SIGNED if signed else vr.DISCARDED,
            f"the server restarted on a chain that stopped linking: {where} were moved to "
            f"quarantine/{details.get('quarantine')} (a torn write after a power loss, or an "
            "edit of the trail)"
            + (f"; they hold {details['checkpoints']} checkpoint line(s)" if signed else ""),
            **at(item.spot),
            seq=item.seq,
        )
        if signed:
            return found
        self.report.warnings.append(found)
        return None

    def _clock(self, item: Entry, body: dict[str, Any]) -> None:
        moment = parse_time(body["time"])
        if self.last_time is not None and moment < self.last_time:
            self.report.warnings.append(
                Finding(
                    vr.CLOCK,
                    f"checkpoint seq {item.seq} is dated {body['time']}, before the previous "
                    "checkpoint (the server's clock went back)",
                    **at(item.spot),
                    seq=item.seq,
                )
            )
        self.last_time = moment

    # --- the end ------------------------------------------------------------------------------
    def _finish(self) -> None:
        facts = self.facts
        if facts.last_seq is None or facts.first_seq is None:
            return
        covered = facts.last_checkpoint_seq or facts.first_seq - 1
        facts.unsigned_tail = facts.last_seq - covered
        start = self.tail_start
        if facts.unsigned_tail > 0 and start is not None:
            self.report.warnings.append(
                Finding(
                    vr.UNSIGNED_TAIL,
                    f"{entries(start.seq, facts.last_seq)} after the last checkpoint are "
                    "chained but not signed yet: a running server signs them at its next "
                    "checkpoint, a cleanly stopped one ends with a shutdown checkpoint",
                    **at(start.spot),
                    seq=start.seq,
                    first_seq=start.seq,
                    last_seq=facts.last_seq,
                )
            )
        elif facts.last_checkpoint_reason != "shutdown":
            self.report.warnings.append(
                Finding(
                    vr.NO_SHUTDOWN,
                    f"the last checkpoint (reason {facts.last_checkpoint_reason!r}) is not a "
                    "shutdown checkpoint: the server is running or did not stop cleanly (a "
                    "trail cut right after a checkpoint would look the same)",
                    segment=facts.last_segment,
                    seq=facts.last_seq,
                )
            )
