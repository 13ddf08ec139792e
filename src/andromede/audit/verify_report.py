"""What the offline verifier says about a trail: problems, warnings and facts, as data.

A :class:`Finding` names its spot the way an auditor looks for it: the segment file, the line
number in it (1-based), the byte offset of that line, the entry's seq, and, when a run of
entries is concerned (deleted, untrusted, unsigned), the first and last seq of the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

# Problem kinds (any of them makes the trail fail verification).
MALFORMED: Final = "malformed"  # a line that is not a well-formed entry
MODIFIED: Final = "modified"  # an entry no longer hashes to what the next one records
DELETED: Final = "deleted"  # a gap in seq
INSERTED: Final = "inserted"  # an extra entry the chain goes around
REORDERED: Final = "reordered"  # entries out of order
TRUNCATED: Final = "truncated"  # a torn last line, or a sealed segment cut short
MISSING_SEGMENT: Final = "missing-segment"  # a gap in segment numbers
MISSING_START: Final = "missing-start"  # leading segments gone, no retention checkpoint says so
BAD_SIGNATURE: Final = "bad-signature"  # a checkpoint whose signature does not verify
BAD_CHECKPOINT: Final = "bad-checkpoint"  # signed, but count/prev_checkpoint/key id/... wrong
STRUCTURE: Final = "structure"  # segment entries and segment ends where they do not belong
JUNK: Final = "junk"  # non-zero bytes after a segment's zero fill
EMPTY: Final = "empty"  # no segment at all
DISCARDED_SIGNED: Final = "discarded-signed"  # recovery set aside bytes holding checkpoints

# Warning kinds (the trail still verifies).
UNSIGNED_TAIL: Final = "unsigned-tail"  # entries after the last checkpoint
NO_SHUTDOWN: Final = "no-shutdown"  # ends with a checkpoint, but not a shutdown one
CLOCK: Final = "clock"  # a checkpoint's time before the previous one's
EMPTY_SEGMENT: Final = "empty-segment"  # the newest segment has no entry yet
DISCARDED: Final = "discarded"  # recovery set aside an unlinked (torn, unsynced) tail
BEYOND_HEAD: Final = "beyond-head"  # in place on a live trail: bytes after the published head


@dataclass(frozen=True)
class Finding:
    """One problem or warning and where it is."""

    kind: str
    message: str
    segment: str | None = None  # segment file name, e.g. 0000000003.log
    line: int | None = None
    offset: int | None = None
    seq: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return asdict(self)

    def where(self) -> str:
        """The spot in words: ``0000000003.log line 17 (byte 8123), seq 150``."""
        parts = []
        if self.segment is not None:
            parts.append(self.segment)
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.offset is not None:
            parts.append(f"(byte {self.offset})")
        text = " ".join(parts)
        if self.seq is not None:
            text += f"{', ' if text else ''}seq {self.seq}"
        return text


@dataclass
class Facts:
    """What was read."""

    key_id: str
    segments: int = 0
    first_segment: str | None = None
    last_segment: str | None = None
    entries: int = 0
    records: int = 0
    checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_checkpoint_seq: int | None = None
    last_checkpoint_time: str | None = None
    last_checkpoint_reason: str | None = None
    unsigned_tail: int = 0
    complete: bool = False  # the whole trail was read (False: stopped at a problem)


@dataclass
class Report:
    """The verifier's answer: intact when there is no problem (warnings allowed)."""

    directory: Path
    facts: Facts
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        """JSON form (what ``andromede audit verify --json`` prints)."""
        return {
            "directory": str(self.directory),
            "intact": self.intact,
            "problems": [p.as_dict() for p in self.problems],
            "warnings": [w.as_dict() for w in self.warnings],
            "facts": asdict(self.facts),
        }
