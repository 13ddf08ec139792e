"""How the chain broke: the verifier's judgement of one entry that does not follow the last.

A broken link is classified from the entry itself and a bounded look-ahead: an entry whose
predecessor no longer hashes to its prev was modified; a jump in seq is a deletion, unless the
missing seq comes a little later (reordered) or the entry's own seq was changed (the next one
fits); a step back is an insertion when the chain goes on around the extra entry.
"""

from __future__ import annotations

from typing import Any, TypedDict

from andromede.audit import format as fmt
from andromede.audit import verify_report as vr
from andromede.audit.verify_read import Entry, Spot, Stream
from andromede.audit.verify_report import Finding


class Where(TypedDict):
    """Where a :class:`Finding` is, as its keyword arguments."""

    segment: str
    line: int
    offset: int


def at(spot: Spot) -> Where:
    """A spot as :class:`Finding` keyword arguments."""
    return {"segment": spot.file, "line": spot.line, "offset": spot.offset}


def entries(first: int, last: int) -> str:
    """``entry seq 5`` or ``entries seq 5..9``."""
    return f"entry seq {first}" if first == last else f"entries seq {first}..{last}"


def broken_link(
    item: Entry, previous: Entry, previous_signed: bool, stream: Stream
) -> Finding | None:
    """None when ``item`` follows ``previous`` in the chain; else what happened, and where.
    ``previous_signed``: ``previous`` is a checkpoint whose signature verified."""
    expected = previous.seq + 1
    if item.seq == expected:
        return None if item.prev == previous.hash else _modified(previous, item, previous_signed)
    if item.seq > expected:
        return _ahead(item, expected, stream)
    return _behind(item, previous, stream)


def origin_of(checkpoint: dict[str, Any] | None) -> tuple[int, str] | None:
    """The (seq, prev) a checkpoint names as the first entry of the retained trail."""
    if checkpoint is None:
        return None
    origin = checkpoint.get("origin")
    if not isinstance(origin, dict):
        return None
    seq, prev = origin.get("seq"), origin.get("prev")
    if not isinstance(seq, int) or not isinstance(prev, str):
        return None
    return seq, prev


def start_problem(item: Entry, origin: tuple[int, str] | None) -> Finding | None:
    """The first entry present must be the genesis entry, or the origin that the newest
    checkpoint names (what retention kept); None when it is."""
    if item.seq == 1:
        if item.prev == fmt.GENESIS:
            return None
        return Finding(
            vr.MODIFIED,
            "the first entry (seq 1) does not record the genesis prev hash",
            **at(item.spot),
            seq=1,
        )
    if origin is None or origin[0] < item.seq:
        first = 1 if origin is None else origin[0]
        said = (
            "no checkpoint records their removal"
            if origin is None
            else f"the newest checkpoint says the trail starts at seq {first}"
        )
        return Finding(
            vr.MISSING_START,
            f"the trail starts at seq {item.seq} ({item.spot.file}): "
            f"{entries(first, item.seq - 1)} are missing and {said} (segments deleted "
            "without a retention checkpoint)",
            **at(item.spot),
            seq=item.seq,
            first_seq=first,
            last_seq=item.seq - 1,
        )
    if origin[0] == item.seq and origin[1] != item.prev:
        return Finding(
            vr.MISSING_START,
            f"the first entry (seq {item.seq}) is not the origin the newest checkpoint "
            "names: its prev hash differs (the start of the trail was replaced)",
            **at(item.spot),
            seq=item.seq,
        )
    return None


def _modified(previous: Entry, item: Entry, previous_signed: bool) -> Finding:
    where = f"{item.spot.file} line {item.spot.line}"
    if previous_signed:  # a checkpoint that verified is what it was: the next changed
        return Finding(
            vr.MODIFIED,
            f"entry seq {item.seq} was changed or replaced: its prev hash is not the hash "
            f"of the signed checkpoint before it (seq {previous.seq})",
            **at(item.spot),
            seq=item.seq,
        )
    return Finding(
        vr.MODIFIED,
        f"entry seq {previous.seq} was changed: it no longer hashes to the prev that entry "
        f"seq {item.seq} ({where}) records",
        **at(previous.spot),
        seq=previous.seq,
    )


def _ahead(item: Entry, expected: int, stream: Stream) -> Finding:
    """Seq jumps forward: moved entries, a copy of a later entry, a changed seq, or a gap."""
    found, twin = None, False
    for index, later in enumerate(stream.entries_ahead(), start=1):
        if later.seq == expected and found is None:
            found = index
        twin = twin or later.seq == item.seq
    if found is not None and twin:
        return Finding(
            vr.INSERTED,
            f"entry seq {item.seq} appears here, before seq {expected}, and again later: "
            "a copy was inserted",
            **at(item.spot),
            seq=item.seq,
        )
    if found is not None:
        return Finding(
            vr.REORDERED,
            f"entries out of order: seq {item.seq} stands where seq {expected} belongs; "
            f"seq {expected} comes {found} entr{'y' if found == 1 else 'ies'} later",
            **at(item.spot),
            seq=item.seq,
            first_seq=expected,
            last_seq=item.seq,
        )
    following = stream.next_entry()
    if following is not None and following.seq == expected + 1:
        return _changed_seq(item, expected)
    return Finding(
        vr.DELETED,
        f"{entries(expected, item.seq - 1)} deleted: the chain jumps from seq "
        f"{expected - 1} to seq {item.seq} here",
        **at(item.spot),
        seq=item.seq,
        first_seq=expected,
        last_seq=item.seq - 1,
    )


def _behind(item: Entry, previous: Entry, stream: Stream) -> Finding:
    """Seq goes back: an inserted entry (the chain goes on around it) or a moved one."""
    expected = previous.seq + 1
    for index, later in enumerate(stream.entries_ahead()):
        if later.seq == expected and later.prev == previous.hash:
            extra = f" (and the {index} entries after it)" if index else ""
            return Finding(
                vr.INSERTED,
                f"an entry claiming seq {item.seq} was inserted after seq {previous.seq}"
                f"{extra}: the chain goes on from seq {previous.seq} to seq {expected} "
                "around it",
                **at(item.spot),
                seq=item.seq,
            )
    following = stream.next_entry()
    if following is not None and following.seq == expected + 1:
        return _changed_seq(item, expected)
    kind = vr.INSERTED if item.hash == previous.hash else vr.REORDERED
    return Finding(
        kind,
        f"entry seq {item.seq} comes after seq {previous.seq}: "
        + ("a duplicate line" if kind == vr.INSERTED else "entries out of order"),
        **at(item.spot),
        seq=item.seq,
    )


def _changed_seq(item: Entry, expected: int) -> Finding:
    return Finding(
        vr.MODIFIED,
        f"the entry between seq {expected - 1} and seq {expected + 1} claims seq "
        f"{item.seq}: it was changed",
        **at(item.spot),
        seq=expected,
    )
