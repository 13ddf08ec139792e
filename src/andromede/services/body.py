"""An incoming request body as services see it: bytes plus the integrity checks that ride on it.

The protocol face builds it (decoding aws-chunked, checking x-amz-content-sha256); services
read it without knowing HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


def _nothing() -> None:
    return None


def _no_trailers() -> dict[str, str]:
    return {}


@dataclass
class IncomingBody:
    """A request payload.

    ``observers`` see every byte, off the event loop for large blocks (e.g. a SHA-256 of the
    payload that the signature covers). ``finish`` runs once the last byte was read and
    raises if the transport-level checks failed; only then may data be committed.
    ``trailers`` gives checksums that arrived after the payload (aws-chunked trailers).
    """

    chunks: AsyncIterator[bytes]
    length: int | None
    observers: list[Callable[[bytes], None]] = field(default_factory=list)
    finish: Callable[[], None] = _nothing
    trailers: Callable[[], dict[str, str]] = _no_trailers


async def _from_bytes(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


def body_from_bytes(data: bytes) -> IncomingBody:
    """An in-memory body (copies, tests)."""
    return IncomingBody(_from_bytes(data), len(data))


def body_from_stream(chunks: AsyncIterator[bytes], length: int) -> IncomingBody:
    """A body from another stream of known length (server-side copies)."""
    return IncomingBody(chunks, length)
