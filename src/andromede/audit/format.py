"""Entries of the trail: one JSON line each, chained by SHA-256, checkpoints signed.

Line layout (UTF-8, ASCII-escaped JSON, no newline inside, ``\\n`` at the end)::

    {"seq":N,"prev":"<hex sha-256 of the previous line>","type":...,...}

``seq`` counts every entry from 1 (never reset, not even across segments); ``prev`` is the
hash of the previous entry's line without its newline (64 zeros before the first). Types:

- ``segment``: first entry of each segment file (format marker, segment number);
- ``request`` / ``event``: an audit record (:class:`andromede.core.audit.AuditRecord`);
- ``checkpoint``: the chain head signed with Ed25519 (see :func:`checkpoint_message`).

The rest of a preallocated segment after the last line is zero bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from andromede.core.audit import format_time

FORMAT: Final = "andromede-audit"
VERSION: Final = 1
GENESIS: Final = "0" * 64
SIGNATURE_CONTEXT: Final = b"andromede-audit-checkpoint-v1\n"
MAX_LINE: Final = 64 * 1024

SEGMENT: Final = "segment"
CHECKPOINT: Final = "checkpoint"
RECORD_TYPES: Final = frozenset({"request", "event"})


def now_text() -> str:
    """The current time as entries write it."""
    return format_time(dt.datetime.now(dt.UTC))


def dumps(value: object) -> str:
    """Compact, ASCII-only JSON: a line can never hold a raw newline or control byte."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def canonical(value: object) -> bytes:
    """Canonical bytes of a JSON value (sorted keys), for signatures."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, sort_keys=True).encode()


def entry_line(seq: int, prev: str, body_json: str) -> bytes:
    """The line for an entry whose body (a JSON object without seq/prev) is ``body_json``."""
    if not body_json.startswith("{") or body_json == "{}" or "\n" in body_json:
        raise ValueError("entry body must be a non-empty JSON object on one line")
    return f'{{"seq":{seq},"prev":"{prev}",{body_json[1:]}\n'.encode("ascii")


def line_hash(line: bytes) -> str:
    """The chain hash of a line (its newline excluded)."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a signing key: the first 16 bytes of SHA-256 of its raw form."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def checkpoint_message(entry: Mapping[str, object]) -> bytes:
    """What a checkpoint's signature covers: every field but ``sig``, canonically, with a
    context prefix so that the key signs nothing else by accident. ``prev`` is the chain head:
    the signature vouches for every entry before the checkpoint."""
    unsigned = {k: v for k, v in entry.items() if k != "sig"}
    return SIGNATURE_CONTEXT + canonical(unsigned)


@dataclass(frozen=True)
class Origin:
    """Where the retained trail starts: the first kept entry's seq and its prev hash."""

    seq: int
    prev: str

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"seq": self.seq, "prev": self.prev}


def checkpoint_line(
    signer: Ed25519PrivateKey,
    *,
    seq: int,
    prev: str,
    time: str,
    reason: str,
    segment: int,
    prev_checkpoint: str,
    origin: Origin,
) -> bytes:
    """A signed checkpoint entry. ``prev`` is the hash of the entry before it (the chain head
    it vouches for), so ``seq - 1`` entries are covered."""
    entry: dict[str, object] = {
        "seq": seq,
        "prev": prev,
        "type": CHECKPOINT,
        "v": VERSION,
        "time": time,
        "reason": reason,
        "segment": segment,
        "count": seq - 1,
        "prev_checkpoint": prev_checkpoint,
        "origin": origin.as_dict(),
        "key_id": key_id(signer.public_key()),
    }
    entry["sig"] = base64.b64encode(signer.sign(checkpoint_message(entry))).decode("ascii")
    return (dumps(entry) + "\n").encode("ascii")


def segment_line(seq: int, prev: str, segment: int, time: str) -> bytes:
    """The first entry of a segment file."""
    body = dumps(
        {"type": SEGMENT, "format": FORMAT, "v": VERSION, "segment": segment, "time": time}
    )
    return entry_line(seq, prev, body)


def checkpoint_signature_ok(entry: Mapping[str, object], public: Ed25519PublicKey) -> bool:
    """True when a checkpoint entry's signature verifies under ``public``."""
    sig = entry.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        public.verify(base64.b64decode(sig, validate=True), checkpoint_message(entry))
    except (InvalidSignature, ValueError):
        return False
    return True


class BadEntry(ValueError):
    """A line that is not a well-formed entry."""


def parse_line(line: bytes) -> dict[str, Any]:
    """Parse one line (with or without its newline) into an entry, checking its envelope."""
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadEntry(f"not JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(entry, dict):
        raise BadEntry("not a JSON object")
    seq, prev, kind = entry.get("seq"), entry.get("prev"), entry.get("type")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise BadEntry("missing or invalid seq")
    if not isinstance(prev, str) or len(prev) != 64:
        raise BadEntry("missing or invalid prev")
    if kind not in RECORD_TYPES and kind not in (SEGMENT, CHECKPOINT):
        raise BadEntry(f"unknown entry type {kind!r}")
    return entry
