"""Checkpoint checks: the signature first (nothing else in a forged checkpoint means anything),
then the fields a signed checkpoint must agree on with the chain around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from andromede.audit import format as fmt
from andromede.audit import verify_report as vr
from andromede.audit.verify_chain import at, entries
from andromede.audit.verify_read import Entry
from andromede.audit.verify_report import Finding
from andromede.core.audit import parse_time

REASONS: Final = frozenset({"interval", "segment-end", "shutdown", "retention"})


@dataclass(frozen=True)
class Expected:
    """What the chain so far says a checkpoint must hold."""

    public: Ed25519PublicKey
    key_id: str
    segment: int | None
    prev_checkpoint: str | None  # None: unknown (the previous one was removed by retention)
    origin_seq: int  # the previous checkpoint's origin: origins never go back
    first_unsigned: int  # first seq no good signature covers yet


def check_checkpoint(item: Entry, expected: Expected) -> Finding | None:
    """None when the checkpoint ``item`` is well formed, verifies, and fits the chain."""
    body = item.body
    assert body is not None
    shape = _shape(body)
    if shape is not None:
        return _bad(item, f"is malformed: {shape}")
    if not fmt.checkpoint_signature_ok(body, expected.public):
        return _unsigned(item, body, expected)
    problem = _fields(item, body, expected)
    return None if problem is None else _bad(item, problem)


def _fields(item: Entry, body: dict[str, Any], expected: Expected) -> str | None:
    if body["key_id"] != expected.key_id:
        return f"names key {body['key_id']}, the signing key is {expected.key_id}"
    if body["count"] != item.seq - 1:
        return f"counts {body['count']} entries before it, not {item.seq - 1}"
    if expected.prev_checkpoint is not None and body["prev_checkpoint"] != expected.prev_checkpoint:
        return "does not name the checkpoint before it as prev_checkpoint"
    if body["segment"] != expected.segment:
        return f"names segment {body['segment']}, it lies in {item.spot.file}"
    if not expected.origin_seq <= body["origin"]["seq"] <= item.seq:
        return f"names origin seq {body['origin']['seq']}, out of order"
    return None


def _bad(item: Entry, problem: str) -> Finding:
    return Finding(
        vr.BAD_CHECKPOINT, f"checkpoint seq {item.seq} {problem}", **at(item.spot), seq=item.seq
    )


def _unsigned(item: Entry, body: dict[str, Any], expected: Expected) -> Finding:
    named = body.get("key_id")
    other = f" (it names key {named}, not {expected.key_id})" if named != expected.key_id else ""
    first = expected.first_unsigned
    return Finding(
        vr.BAD_SIGNATURE,
        f"the signature of checkpoint seq {item.seq} does not verify under the public "
        f"key{other}: {entries(first, item.seq)} cannot be trusted (forged, or changed "
        "without the signing key)",
        **at(item.spot),
        seq=item.seq,
        first_seq=first,
        last_seq=item.seq,
    )


def _is_hash(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


# One return per field checked, in the entry's order: the reason names the first that fails.
def _shape(body: dict[str, Any]) -> str | None:  # noqa: C901, PLR0911
    """Why a checkpoint entry lacks the fields a checkpoint has (None when it has them)."""
    if body.get("v") != fmt.VERSION:
        return f"unknown version {body.get('v')!r}"
    if body.get("reason") not in REASONS:
        return f"unknown reason {body.get('reason')!r}"
    for name in ("segment", "count"):
        if not isinstance(body.get(name), int):
            return f"{name} is not a number"
    for name in ("key_id", "sig", "time"):
        if not isinstance(body.get(name), str):
            return f"no {name}"
    if not _is_hash(body.get("prev_checkpoint")):
        return "prev_checkpoint is not a hash"
    origin = body.get("origin")
    if not isinstance(origin, dict) or not isinstance(origin.get("seq"), int):
        return "no origin"
    if not _is_hash(origin.get("prev")):
        return "origin prev is not a hash"
    try:
        parse_time(body["time"])
    except ValueError:
        return f"time {body['time']!r} is not a time"
    return None
