"""The sealed-blob layout: chunk arithmetic, ranges and what the associated data binds."""

from __future__ import annotations

import pytest

from andromede.core import envelope as env
from andromede.core import errors

C = env.MIN_CHUNK_SIZE


@pytest.mark.parametrize(
    ("size", "chunks"), [(0, 1), (1, 1), (C - 1, 1), (C, 1), (C + 1, 2), (3 * C, 3)]
)
def test_chunk_count_and_sealed_size(size: int, chunks: int) -> None:
    assert env.chunk_count(size, C) == chunks
    assert env.sealed_size(size, C) == env.HEADER_SIZE + size + chunks * env.TAG_SIZE
    assert sum(env.chunk_length(size, C, i) for i in range(chunks)) == size


def test_span_covers_exactly_the_chunks_a_range_needs() -> None:
    size = 3 * C + 5
    whole = env.span(size, C, 0, size)
    assert (whole.first, whole.last, whole.offset) == (0, 3, env.HEADER_SIZE)
    assert whole.offset + whole.length == env.sealed_size(size, C)
    middle = env.span(size, C, C + 1, 2 * C + 1)
    assert (middle.first, middle.last, middle.skip, middle.take) == (1, 2, 1, C)
    assert middle.offset == env.HEADER_SIZE + (C + env.TAG_SIZE)
    assert middle.length == 2 * (C + env.TAG_SIZE)
    last_byte = env.span(size, C, size - 1, size)
    assert (last_byte.first, last_byte.last, last_byte.length) == (3, 3, 5 + env.TAG_SIZE)
    empty = env.span(0, C, 0, 0)
    assert (empty.first, empty.last, empty.length, empty.take) == (0, 0, env.TAG_SIZE, 0)


def test_span_refuses_ranges_outside_the_object() -> None:
    with pytest.raises(ValueError, match="outside"):
        env.span(10, C, 5, 11)


def test_header_round_trip_and_refusals() -> None:
    assert env.parse_header(env.header(C)) == (env.ENVELOPE_FORMAT, C)
    with pytest.raises(errors.DataCorrupted):
        env.parse_header(b"ANDRBLOB" + env.header(C)[8:])
    with pytest.raises(errors.DataCorrupted):
        env.parse_header(env.HEADER.pack(env.MAGIC, env.ENVELOPE_FORMAT, 0, 1))


def test_context_binds_every_field_unambiguously() -> None:
    base = env.context_digest("t", "b", "k", "v", C)
    assert base != env.context_digest("t", "b", "k", "v2", C)
    assert base != env.context_digest("t2", "b", "k", "v", C)
    assert base != env.context_digest("t", "b", "k", "v", 2 * C)
    # Length prefixes: moving a character between fields changes the digest.
    assert env.context_digest("ab", "c", "k", "v", C) != env.context_digest("a", "bc", "k", "v", C)


def test_nonces_differ_per_chunk_and_aad_carries_the_last_flag() -> None:
    assert len({env.nonce(i) for i in range(1000)}) == 1000
    assert all(len(env.nonce(i)) == env.NONCE_SIZE for i in (0, 2**40))
    digest = env.context_digest("t", "b", "k", "v", C)
    assert env.chunk_aad(digest, 3, last=True) != env.chunk_aad(digest, 3, last=False)
    assert env.dek_aad("t", "k", 1, "v") != env.dek_aad("t", "k", 2, "v")
