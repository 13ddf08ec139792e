"""The sealed-blob format (envelope format 1): layout arithmetic and associated data, no crypto.

A sealed blob is a 16-byte header, then the object's bytes cut into chunks of ``chunk_size``
plaintext bytes (the last one shorter, and an empty object has exactly one empty chunk), each
stored as its AES-256-GCM ciphertext followed by its 16-byte tag::

    header  = "ANDRSEAL" | format u16 | reserved u16 | chunk_size u32        (big-endian)
    chunk i = AES-256-GCM(DEK, nonce_i, plaintext_i, aad_i) = ciphertext_i | tag_i
    nonce_i = 0x00000000 | i as u64                     (unique: one fresh DEK per blob)
    aad_i   = SHA-256(context) | i as u64 | last as u8
    context = "andromede-seal", format, chunk_size, tenant, bucket, key, version context
              (each length-prefixed)

So a chunk moved within a blob (index), cut off at the end (last flag), or moved to another
object, version or part (context) fails its tag, and so does a header edited to another
chunk size. Offsets of any chunk follow from the plaintext size alone: a range read fetches
and opens only the chunks it covers.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from andromede.core import errors

MAGIC = b"ANDRSEAL"
ENVELOPE_FORMAT = 1
HEADER = struct.Struct(">8sHHI")
HEADER_SIZE = HEADER.size
TAG_SIZE = 16
NONCE_SIZE = 12
DEK_SIZE = 32
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 4 << 10
MAX_CHUNK_SIZE = 16 << 20
_INDEX = struct.Struct(">Q")


def header(chunk_size: int) -> bytes:
    """The header of a new sealed blob."""
    return HEADER.pack(MAGIC, ENVELOPE_FORMAT, 0, chunk_size)


def parse_header(raw: bytes) -> tuple[int, int]:
    """(format, chunk_size) of a sealed blob's header; DataCorrupted when it is not one."""
    if len(raw) != HEADER_SIZE:
        raise errors.DataCorrupted("Stored data is not a sealed blob.")
    magic, fmt, _, chunk_size = HEADER.unpack(raw)
    if magic != MAGIC or fmt != ENVELOPE_FORMAT:
        raise errors.DataCorrupted("Stored data is not a sealed blob of a known format.")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise errors.DataCorrupted("Stored data has an impossible chunk size.")
    return fmt, chunk_size


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of a ``size``-byte plaintext (at least one: an empty object has an empty chunk)."""
    return max(1, -(-size // chunk_size))


def chunk_length(size: int, chunk_size: int, index: int) -> int:
    """Plaintext bytes in chunk ``index``."""
    count = chunk_count(size, chunk_size)
    if not 0 <= index < count:
        raise ValueError("chunk index out of range")
    if index < count - 1:
        return chunk_size
    return size - (count - 1) * chunk_size


def sealed_size(size: int, chunk_size: int) -> int:
    """Bytes a sealed blob of a ``size``-byte plaintext takes, header included."""
    return HEADER_SIZE + size + TAG_SIZE * chunk_count(size, chunk_size)


@dataclass(frozen=True)
class ChunkSpan:
    """The chunks a plaintext range needs and where they are in the sealed blob."""

    first: int  # first chunk index
    last: int  # last chunk index (inclusive)
    offset: int  # sealed offset of the first chunk (header included)
    length: int  # sealed bytes from ``offset`` to the end of the last chunk
    skip: int  # plaintext bytes to drop from the first chunk
    take: int  # plaintext bytes the range wants


def span(size: int, chunk_size: int, start: int, end: int) -> ChunkSpan:
    """The chunks holding plaintext bytes ``[start, end)`` of a ``size``-byte object.

    ``start == end`` (an empty range, e.g. an empty object) gives the first chunk, so that an
    empty object's single chunk is still authenticated.
    """
    if not 0 <= start <= end <= size:
        raise ValueError("range outside the object")
    stride = chunk_size + TAG_SIZE
    first = min(start // chunk_size, chunk_count(size, chunk_size) - 1)
    last = max(first, (end - 1) // chunk_size) if end > start else first
    offset = HEADER_SIZE + first * stride
    length = (last - first) * stride + chunk_length(size, chunk_size, last) + TAG_SIZE
    return ChunkSpan(first, last, offset, length, start - first * chunk_size, end - start)


def context_digest(
    tenant: str, bucket: str, key: str, context: str, chunk_size: int, fmt: int = ENVELOPE_FORMAT
) -> bytes:
    """SHA-256 of everything a blob's chunks are bound to besides their position."""
    h = hashlib.sha256()
    for field in (b"andromede-seal", str(fmt).encode(), str(chunk_size).encode()):
        h.update(len(field).to_bytes(4, "big") + field)
    for text in (tenant, bucket, key, context):
        raw = text.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(4, "big") + raw)
    return h.digest()


def nonce(index: int) -> bytes:
    """The GCM nonce of chunk ``index`` (the DEK is fresh per blob, so never repeated)."""
    return b"\0\0\0\0" + _INDEX.pack(index)


def chunk_aad(digest: bytes, index: int, last: bool) -> bytes:
    """The associated data of chunk ``index``."""
    return digest + _INDEX.pack(index) + (b"\1" if last else b"\0")


def dek_aad(tenant: str, key_id: str, version: int, context: str) -> bytes:
    """What a wrapped DEK is bound to: its tenant, KEK version and blob context."""
    return "\0".join(("andromede-dek", tenant, key_id, str(version), context)).encode(
        "utf-8", "surrogatepass"
    )
