"""AesGcmEnvelope: sealing and opening blobs in memory, ranges, tampering and key wrapping."""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from andromede.core import envelope, errors
from andromede.core.envelope import HEADER_SIZE, TAG_SIZE
from andromede.crypto.envelope import AesGcmEnvelope
from andromede.ports import PendingBlock

C = envelope.MIN_CHUNK_SIZE  # small chunks: many of them, and several 1 MiB batches
BIG = (5 << 20) // 2 + 3  # ~2.5 MiB: three batches of small chunks, through worker threads
DEK = bytes(range(32))
DIGEST = envelope.context_digest("tenant", "bucket", "key", "v1", C)
ENV = AesGcmEnvelope()


def plaintext(size: int) -> bytes:
    return random.Random(size).randbytes(size)


class MemoryWriter:
    """An in-memory BlobWriter."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.committed = False
        self.aborts = 0

    async def write(self, data: bytes | memoryview) -> None:
        assert not self.committed
        self.data += data

    async def write_from(self, block: PendingBlock) -> None:
        pieces = block.make()
        assert sum(len(p) for p in pieces) == block.size
        for piece in pieces:
            await self.write(piece)

    async def commit(self) -> None:
        self.committed = True

    async def abort(self) -> None:
        self.aborts += 1
        self.data.clear()


def reference_seal(plain: bytes, chunk_size: int, dek: bytes, digest: bytes) -> bytes:
    """The format as ``core/envelope.py`` describes it, written out the simplest way."""
    count = envelope.chunk_count(len(plain), chunk_size)
    out = [envelope.header(chunk_size)]
    for i in range(count):
        chunk = plain[i * chunk_size : (i + 1) * chunk_size]
        aad = envelope.chunk_aad(digest, i, i == count - 1)
        out.append(AESGCM(dek).encrypt(envelope.nonce(i), chunk, aad))
    return b"".join(out)


async def seal(
    plain: bytes, piece: int | None = None, chunk_size: int = C, digest: bytes = DIGEST
) -> bytes:
    inner = MemoryWriter()
    writer = ENV.sealing_writer(inner, DEK, digest, chunk_size)
    step = piece or max(1, len(plain))
    for pos in range(0, len(plain), step):
        await writer.write(plain[pos : pos + step])
    await writer.commit()
    assert inner.committed
    return bytes(inner.data)


async def pieces(data: bytes, sizes: tuple[int, ...]) -> AsyncIterator[bytes]:
    pos, k = 0, 0
    while pos < len(data):
        size = sizes[k % len(sizes)]
        yield data[pos : pos + size]
        pos, k = pos + size, k + 1


def span_bytes(sealed: bytes, size: int, start: int, end: int, chunk_size: int = C) -> bytes:
    span = envelope.span(size, chunk_size, start, end)
    return sealed[span.offset : span.offset + span.length]


async def read(
    feed: bytes,
    size: int,
    start: int,
    end: int,
    *,
    chunk_size: int = C,
    dek: bytes = DEK,
    digest: bytes = DIGEST,
    sizes: tuple[int, ...] = (13, 1, 4097, 100_003),
) -> tuple[bytes, errors.DataCorrupted | None]:
    """What a stream yields over ``feed`` before it ends or fails, and how it failed."""
    got = bytearray()
    stream = ENV.open_stream(pieces(feed, sizes), dek, digest, chunk_size, size, start, end)
    try:
        async for part in stream:
            assert isinstance(part, (bytes, bytearray))
            assert part
            got += part
    except errors.DataCorrupted as exc:
        return bytes(got), exc
    return bytes(got), None


SIZES = [0, 1, C - 1, C, C + 1, 3 * C, 3 * C + 5, BIG]
ROUND_TRIPS = [
    (size, piece)
    for size in SIZES
    for piece in (1, 7, 64 << 10, 1 << 20, None)
    if size <= 3 * C + 5 or piece is None or piece >= 64 << 10
]


@pytest.mark.parametrize(("size", "piece"), ROUND_TRIPS)
async def test_round_trip(size: int, piece: int | None) -> None:
    plain = plaintext(size)
    sealed = await seal(plain, piece)
    assert len(sealed) == envelope.sealed_size(size, C)
    assert sealed == reference_seal(plain, C, DEK, DIGEST)
    got, failure = await read(sealed[HEADER_SIZE:], size, 0, size)
    assert failure is None
    assert got == plain


@pytest.mark.parametrize("piece", [64 << 10, 1 << 20, 3 << 20])
async def test_round_trip_default_chunk_size(piece: int) -> None:
    chunk = envelope.DEFAULT_CHUNK_SIZE
    digest = envelope.context_digest("tenant", "bucket", "key", "v1", chunk)
    plain = plaintext(BIG)
    sealed = await seal(plain, piece, chunk, digest)
    assert sealed == reference_seal(plain, chunk, DEK, digest)
    got, failure = await read(sealed[HEADER_SIZE:], BIG, 0, BIG, chunk_size=chunk, digest=digest)
    assert (got, failure) == (plain, None)


async def test_reads_come_in_whole_chunks_whatever_the_pieces() -> None:
    # Each chunk's plaintext goes out as the cipher made it: no buffer is joined or copied.
    plain = plaintext(BIG)
    sealed = await seal(plain, 1 << 20)
    stream = ENV.open_stream(pieces(sealed[HEADER_SIZE:], (65_536,)), DEK, DIGEST, C, BIG, 0, BIG)
    parts = [part async for part in stream]
    assert b"".join(parts) == plain
    assert len(parts) == envelope.chunk_count(BIG, C)
    assert all(len(part) == C for part in parts[:-1])


def ranges(size: int) -> list[tuple[int, int]]:
    candidates = [
        (0, 0),
        (0, 1),
        (size - 1, size),
        (size, size),
        (C - 1, C + 1),
        (C, 2 * C),
        (C, C),
        (5, 3 * C + 2),
        (2 * C + 7, 2 * C + 8),
        (0, size),
        (1, size - 1),
        ((1 << 20) - 3, (1 << 20) + 3),
        (100, (2 << 20) + 100),
    ]
    return [(s, e) for s, e in candidates if 0 <= s <= e <= size]


@pytest.mark.parametrize("size", [0, 3 * C, 3 * C + 5, BIG])
async def test_range_reads(size: int) -> None:
    plain = plaintext(size)
    sealed = await seal(plain, 64 << 10)
    for start, end in ranges(size):
        got, failure = await read(span_bytes(sealed, size, start, end), size, start, end)
        assert failure is None, (start, end)
        assert got == plain[start:end], (start, end)


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def chunk_at(index: int) -> int:
    return HEADER_SIZE + index * (C + TAG_SIZE)


def swap(data: bytes, index: int) -> bytes:
    a, b, c = chunk_at(index), chunk_at(index + 1), chunk_at(index + 2)
    return data[:a] + data[b:c] + data[a:b] + data[c:]


SMALL = 3 * C + 5
TAMPERED = [
    pytest.param(SMALL, 1, lambda s: flip(s, chunk_at(1) + 5), id="ciphertext"),
    pytest.param(SMALL, 1, lambda s: flip(s, chunk_at(1) + C + 3), id="tag"),
    pytest.param(SMALL, 3, lambda s: flip(s, len(s) - 1), id="last tag"),
    pytest.param(SMALL, 1, lambda s: swap(s, 1), id="swapped"),
    pytest.param(SMALL, 0, lambda s: swap(s, 0), id="swapped first"),
    pytest.param(BIG, 300, lambda s: flip(s, chunk_at(300) + 9), id="late ciphertext"),
    pytest.param(BIG, 400, lambda s: swap(s, 400), id="late swap"),
    pytest.param(0, 0, lambda s: flip(s, HEADER_SIZE + 2), id="empty object tag"),
]


@pytest.mark.parametrize(("size", "bad", "tamper"), TAMPERED)
async def test_tampered_chunk_is_never_served(
    size: int, bad: int, tamper: Callable[[bytes], bytes]
) -> None:
    plain = plaintext(size)
    sealed = tamper(await seal(plain, 1 << 20))
    got, failure = await read(sealed[HEADER_SIZE:], size, 0, size)
    assert isinstance(failure, errors.DecryptionFailed)
    assert got == plain[: len(got)]
    assert len(got) <= bad * C


async def test_tampered_chunk_fails_a_range_that_covers_it() -> None:
    plain = plaintext(SMALL)
    sealed = flip(await seal(plain), chunk_at(2) + 1)
    got, failure = await read(span_bytes(sealed, SMALL, C + 1, 2 * C + 1), SMALL, C + 1, 2 * C + 1)
    assert isinstance(failure, errors.DecryptionFailed)
    assert got == plain[C + 1 : C + 1 + len(got)]
    assert len(got) <= C - 1
    _, failure = await read(span_bytes(sealed, SMALL, 0, C), SMALL, 0, C)
    assert failure is None  # a range that does not cover it is still served


@pytest.mark.parametrize("size", [SMALL, 3 * C, BIG])
async def test_dropped_last_chunk(size: int) -> None:
    plain = plaintext(size)
    sealed = await seal(plain, 1 << 20)
    count = envelope.chunk_count(size, C)
    cut = sealed[: chunk_at(count - 1)]
    # Read as the manifest says: the stream is short.
    got, failure = await read(cut[HEADER_SIZE:], size, 0, size)
    assert type(failure) is errors.DataCorrupted
    assert got == plain[: len(got)]
    # Read as if the blob had always been that long: the new last chunk was not sealed last.
    shorter = (count - 1) * C
    got, failure = await read(cut[HEADER_SIZE:], shorter, 0, shorter)
    assert isinstance(failure, errors.DecryptionFailed)
    assert got == plain[: len(got)]
    assert len(got) <= (count - 2) * C


@pytest.mark.parametrize("missing", [1, TAG_SIZE, C, C + TAG_SIZE + 1])
@pytest.mark.parametrize("size", [SMALL, BIG])
async def test_short_stream(size: int, missing: int) -> None:
    plain = plaintext(size)
    sealed = await seal(plain, 1 << 20)
    got, failure = await read(sealed[HEADER_SIZE:-missing], size, 0, size)
    assert type(failure) is errors.DataCorrupted
    assert failure.message == "Stored data is shorter than its manifest."
    assert got == plain[: len(got)]
    assert len(got) <= size - missing - TAG_SIZE


@pytest.mark.parametrize(("size", "start", "end"), [(0, 0, 0), (SMALL, 5, 6), (BIG, 0, BIG)])
async def test_long_stream(size: int, start: int, end: int) -> None:
    sealed = await seal(plaintext(size), 1 << 20)
    feed = span_bytes(sealed, size, start, end) + b"x"
    got, failure = await read(feed, size, start, end)
    assert type(failure) is errors.DataCorrupted
    assert got == plaintext(size)[start : start + len(got)]


async def test_empty_range_of_empty_object_is_authenticated() -> None:
    sealed = await seal(b"")
    assert await read(sealed[HEADER_SIZE:], 0, 0, 0) == (b"", None)
    _, failure = await read(b"", 0, 0, 0)
    assert type(failure) is errors.DataCorrupted


@pytest.mark.parametrize("size", [0, SMALL, BIG])
async def test_wrong_dek_or_context(size: int) -> None:
    sealed = (await seal(plaintext(size), 1 << 20))[HEADER_SIZE:]
    other = envelope.context_digest("tenant", "bucket", "key", "v2", C)
    for dek, digest in ((bytes(32), DIGEST), (DEK, other)):
        got, failure = await read(sealed, size, 0, size, dek=dek, digest=digest)
        assert isinstance(failure, errors.DecryptionFailed)
        assert got == b""


@pytest.mark.parametrize("size", [SMALL, BIG])
async def test_wrong_chunk_size(size: int) -> None:
    plain = plaintext(size)
    sealed = await seal(plain, 1 << 20)
    for chunk in (2 * C, C // 2):
        digest = envelope.context_digest("tenant", "bucket", "key", "v1", chunk)
        for wrong_digest in (DIGEST, digest):
            feed = span_bytes(sealed, size, 0, size, chunk)
            got, failure = await read(feed, size, 0, size, chunk_size=chunk, digest=wrong_digest)
            # The layout differs too: a short or long stream may be noticed before a tag fails.
            assert failure is not None
            assert got == b""


async def test_stopping_early_closes_the_source() -> None:
    sealed = (await seal(plaintext(BIG), 1 << 20))[HEADER_SIZE:]
    closed = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            for pos in range(0, len(sealed), 50_000):
                yield sealed[pos : pos + 50_000]
        finally:
            closed = True

    stream = ENV.open_stream(source(), DEK, DIGEST, C, BIG, 0, BIG)
    assert isinstance(stream, AsyncGenerator)
    first = await anext(stream)
    assert first == plaintext(BIG)[: len(first)]
    await stream.aclose()
    assert closed


async def test_abort_is_safe_twice_and_ends_the_writer() -> None:
    inner = MemoryWriter()
    writer = ENV.sealing_writer(inner, DEK, DIGEST, C)
    await writer.write(plaintext(3 * C))
    await writer.abort()
    await writer.abort()
    assert inner.aborts == 2
    assert not inner.committed
    with pytest.raises(RuntimeError):
        await writer.write(b"more")
    with pytest.raises(RuntimeError):
        await writer.commit()


async def test_writer_accepts_memoryviews_and_bytearrays() -> None:
    plain = plaintext(3 * C + 5)
    inner = MemoryWriter()
    writer = ENV.sealing_writer(inner, DEK, DIGEST, C)
    buffer = bytearray(plain[: 2 * C + 1])
    await writer.write(memoryview(buffer))
    buffer[:] = bytes(len(buffer))  # callers may reuse their buffer once write returns
    await writer.write(memoryview(plain)[2 * C + 1 :])
    await writer.commit()
    assert bytes(inner.data) == reference_seal(plain, C, DEK, DIGEST)


def test_writer_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="data key"):
        ENV.sealing_writer(MemoryWriter(), bytes(16), DIGEST, C)
    for chunk in (envelope.MIN_CHUNK_SIZE - 1, envelope.MAX_CHUNK_SIZE + 1):
        with pytest.raises(ValueError, match="chunk size"):
            ENV.sealing_writer(MemoryWriter(), DEK, DIGEST, chunk)


def test_new_dek_is_fresh() -> None:
    deks = {ENV.new_dek() for _ in range(8)}
    assert len(deks) == 8
    assert all(len(dek) == 32 for dek in deks)


KEY = bytes(range(100, 132))
AAD = envelope.dek_aad("tenant", "key-id", 1, "v1")


def test_wrap_round_trip() -> None:
    dek = ENV.new_dek()
    wrapped = ENV.wrap(KEY, dek, AAD)
    assert wrapped[:1] == b"\x01"
    assert len(wrapped) == 1 + 12 + 32 + 16
    assert ENV.unwrap(KEY, wrapped, AAD) == dek
    assert ENV.wrap(KEY, dek, AAD) != wrapped  # fresh nonce each time


def test_unwrap_failures() -> None:
    wrapped = ENV.wrap(KEY, DEK, AAD)
    bad = [
        (bytes(32), wrapped, AAD),
        (KEY, wrapped, envelope.dek_aad("tenant", "key-id", 2, "v1")),
        (KEY, flip(wrapped, 20), AAD),
        (KEY, b"\x02" + wrapped[1:], AAD),
        (KEY, wrapped[:-1], AAD),
        (KEY, wrapped + b"\0", AAD),
        (KEY, b"", AAD),
        (KEY, random.Random(1).randbytes(len(wrapped)), AAD),
    ]
    for key, blob, aad in bad:
        with pytest.raises(errors.DecryptionFailed):
            ENV.unwrap(key, blob, aad)


def test_wrap_keys_must_be_256_bits() -> None:
    with pytest.raises(ValueError, match="wrapping key"):
        ENV.wrap(bytes(16), DEK, AAD)
    with pytest.raises(ValueError, match="wrapping key"):
        ENV.unwrap(bytes(31), ENV.wrap(KEY, DEK, AAD), AAD)
    with pytest.raises(ValueError, match="data key"):
        ENV.wrap(KEY, bytes(16), AAD)


@pytest.mark.parametrize("tail", [1, 5_000, (128 << 10) - 1])
async def test_a_small_last_piece_after_a_large_one_opens_in_order(tail: int) -> None:
    # The small last piece is opened inline, the large one before it on a worker thread:
    # the chunks must still be opened in order (regression: the inline one ran first).
    size = (1 << 20) + tail
    plain = plaintext(size)
    sealed = await seal(plain, 1 << 20)
    got, failure = await read(sealed[HEADER_SIZE:], size, 0, size, sizes=(len(sealed),))
    assert (got, failure) == (plain, None)
