"""AES-256-GCM sealing of blobs (envelope format 1, laid out in ``core/envelope.py``).

Threading: AES-GCM runs at gigabytes per second and ``cryptography`` releases the GIL on
large buffers, so the work is cheap but not free for the event loop. Anything of 128 KiB or
more is sealed or opened in one ``asyncio.to_thread`` call per write (or per ~1 MiB batch of
chunks when reading), so the data path's other lanes (MD5, checksums, network) run beside
it; smaller pieces go inline, where a thread hop would cost more than it saves.

Read-ahead and memory: a stream opens batch k+1 on a worker thread while its consumer
handles batch k, and never has more than two batches in flight. A stream therefore holds a
few batches' worth of sealed and plaintext bytes (about 5 MiB at the default chunk size,
whatever the object's size; a chunk larger than a batch is a batch of its own, so with
16 MiB chunks it is about seven chunks). Sealed chunks are sliced from the pieces ``sealed``
yields, copying only those that straddle two pieces. A writer holds at most one chunk of
plaintext besides the write being sealed, and seals straight into the buffer it hands on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from andromede.core import envelope, errors
from andromede.core.envelope import DEK_SIZE, NONCE_SIZE, TAG_SIZE
from andromede.ports import BlobWriter, PendingBlock

__all__ = ["AesGcmEnvelope"]

_THREAD_MIN = 128 << 10  # below this, sealing inline beats a hop to a worker thread
_BATCH = 1 << 20  # plaintext opened per worker call, and the size of the pieces yielded
_WRAP_VERSION = b"\x01"
_WRAPPED_SIZE = len(_WRAP_VERSION) + NONCE_SIZE + DEK_SIZE + TAG_SIZE
_SHORT = "Stored data is shorter than its manifest."
_LONG = "Stored data is longer than its manifest."


def _check_key(key: bytes, what: str) -> None:
    if len(key) != DEK_SIZE:
        raise ValueError(f"{what} must be {DEK_SIZE} bytes")


class AesGcmEnvelope:
    """The ``Envelope`` port on AES-256-GCM; stateless, so one instance serves everything."""

    def new_dek(self) -> bytes:
        """A fresh key per blob is what keeps the counter nonces of format 1 unique."""
        return os.urandom(DEK_SIZE)

    def sealing_writer(
        self, inner: BlobWriter, dek: bytes, digest: bytes, chunk_size: int
    ) -> BlobWriter:
        """Seal while the bytes stream through, so a 5 GiB upload never sits in memory."""
        _check_key(dek, "a data key")
        if not envelope.MIN_CHUNK_SIZE <= chunk_size <= envelope.MAX_CHUNK_SIZE:
            raise ValueError("chunk size outside what a sealed blob's header allows")
        return _SealingWriter(inner, AESGCM(dek), digest, chunk_size)

    def open_stream(
        self,
        sealed: AsyncIterator[bytes],
        dek: bytes,
        digest: bytes,
        chunk_size: int,
        size: int,
        start: int,
        end: int,
    ) -> AsyncIterator[bytes]:
        """Open only the chunks a range covers, so a ranged GET costs what it returns.

        ``sealed`` is consumed, and closed when the stream ends or is closed.
        """
        _check_key(dek, "a data key")
        span = envelope.span(size, chunk_size, start, end)
        opener = _PieceOpener(_Opener(AESGCM(dek), digest, chunk_size, size, start, end), span)
        return _open(sealed, opener, span.length)

    def piece_opener(
        self, dek: bytes, digest: bytes, chunk_size: int, size: int, start: int, end: int
    ) -> _PieceOpener:
        """Open a range where its sealed bytes are read (one worker call reads and opens)."""
        _check_key(dek, "a data key")
        span = envelope.span(size, chunk_size, start, end)
        opener = _Opener(AESGCM(dek), digest, chunk_size, size, start, end)
        return _PieceOpener(opener, span)

    def wrap(self, key: bytes, dek: bytes, aad: bytes) -> bytes:
        """A DEK may only be stored wrapped; the version byte leaves room for another scheme."""
        _check_key(key, "a wrapping key")
        _check_key(dek, "a data key")
        nonce = os.urandom(NONCE_SIZE)
        return _WRAP_VERSION + nonce + AESGCM(key).encrypt(nonce, dek, aad)

    def unwrap(self, key: bytes, wrapped: bytes, aad: bytes) -> bytes:
        """A wrong key, a wrong context and junk all read as one failure: nothing leaks."""
        _check_key(key, "a wrapping key")
        if len(wrapped) != _WRAPPED_SIZE or wrapped[:1] != _WRAP_VERSION:
            raise errors.DecryptionFailed("The stored data key is not a wrapped key.")
        nonce, body = wrapped[1 : 1 + NONCE_SIZE], wrapped[1 + NONCE_SIZE :]
        try:
            return AESGCM(key).decrypt(nonce, body, aad)
        except InvalidTag as exc:
            raise errors.DecryptionFailed("The data key could not be unwrapped.") from exc


class _SealingWriter:
    """Holds back up to one full chunk: only the next write or commit tells if it is the last."""

    def __init__(self, inner: BlobWriter, aead: AESGCM, digest: bytes, chunk_size: int) -> None:
        self._inner = inner
        self._aead = aead
        self._digest = digest
        self._chunk_size = chunk_size
        self._index = 0  # index of the next chunk to seal
        self._tail = bytearray()  # 0..chunk_size plaintext bytes not sealed yet
        self._header = envelope.header(chunk_size)  # b"" once written
        self._closed = False

    async def write(self, data: bytes | memoryview) -> None:
        if self._closed:
            raise RuntimeError("write to a sealing writer after commit or abort")
        view = memoryview(data).cast("B")
        size = self._chunk_size
        if len(self._tail) + len(view) <= size:
            self._tail += view
            return
        chunks: list[bytearray | memoryview] = []
        pos = 0
        if self._tail:
            pos = size - len(self._tail)
            self._tail += view[:pos]
            chunks.append(self._tail)
        while len(view) - pos > size:  # keep at least one byte back: it may end the blob
            chunks.append(view[pos : pos + size])
            pos += size
        self._tail = bytearray(view[pos:])
        await self._emit(chunks, last=False)

    async def write_from(self, block: PendingBlock) -> None:
        for piece in block.make():
            await self.write(piece)

    async def commit(self) -> None:
        if self._closed:
            raise RuntimeError("commit of a sealing writer after commit or abort")
        self._closed = True
        tail, self._tail = self._tail, bytearray()
        await self._emit([tail], last=True)
        await self._inner.commit()

    async def abort(self) -> None:
        self._closed = True
        self._tail = bytearray()
        await self._inner.abort()

    async def _emit(self, chunks: Sequence[bytearray | memoryview], last: bool) -> None:
        first = self._index
        self._index += len(chunks)
        header, self._header = self._header, b""
        # Sealed where it is written: one trip to the writer's worker thread per block.
        await self._inner.write_from(
            _SealedBlock(self._aead, self._digest, header, chunks, first, last)
        )


@dataclass(frozen=True, slots=True)
class _SealedBlock:
    """A :class:`~andromede.ports.PendingBlock`: plaintext chunks (indices from ``first``),
    and the envelope header before them at the start of a blob, sealed when made."""

    aead: AESGCM
    digest: bytes
    header: bytes
    chunks: Sequence[bytearray | memoryview]
    first: int
    last: bool  # the last chunk here ends the blob

    @property
    def size(self) -> int:
        return len(self.header) + sum(len(chunk) + TAG_SIZE for chunk in self.chunks)

    def make(self) -> list[bytes]:
        sealed = [self.header] if self.header else []
        final = len(self.chunks) - 1
        for offset, chunk in enumerate(self.chunks):
            index = self.first + offset
            aad = envelope.chunk_aad(self.digest, index, self.last and offset == final)
            sealed.append(self.aead.encrypt(envelope.nonce(index), chunk, aad))
        return sealed


@dataclass(frozen=True, slots=True)
class _Opener:
    """Opens a batch of whole sealed chunks and keeps the plaintext of ``[start, end)``."""

    aead: AESGCM
    digest: bytes
    chunk_size: int
    size: int
    start: int
    end: int

    def __call__(self, first: int, chunks: Sequence[memoryview]) -> list[bytes]:
        """The kept plaintext of each chunk in turn; DecryptionFailed at the first bad one.

        Each chunk comes back as the bytes the cipher made (no zero-filled buffer, no join):
        a copy is made only of a range's partial first or last chunk."""
        count = envelope.chunk_count(self.size, self.chunk_size)
        kept: list[bytes] = []
        for index, sealed in enumerate(chunks, first):
            aad = envelope.chunk_aad(self.digest, index, index == count - 1)
            try:
                plain = self.aead.decrypt(envelope.nonce(index), sealed, aad)
            except InvalidTag as exc:
                raise errors.DecryptionFailed() from exc
            base = index * self.chunk_size
            lo, hi = max(self.start - base, 0), min(self.end - base, len(plain))
            if hi > lo:
                kept.append(plain if hi - lo == len(plain) else plain[lo:hi])
        return kept


class _PieceOpener:
    """Opens a range's sealed bytes piece by piece, in order; each piece holds whole chunks
    (``piece`` bytes, the last piece what is left)."""

    def __init__(self, opener: _Opener, span: envelope.ChunkSpan) -> None:
        self._opener = opener
        self._next = span.first
        self._last = span.last
        per = max(1, _BATCH // opener.chunk_size)
        self.piece = per * (opener.chunk_size + TAG_SIZE)

    def __call__(self, sealed: bytes | memoryview) -> list[bytes]:
        view = memoryview(sealed)
        first, chunks, pos = self._next, [], 0
        while pos < len(view):
            if self._next > self._last:
                raise errors.DataCorrupted(_LONG)
            length = envelope.chunk_length(self._opener.size, self._opener.chunk_size, self._next)
            stop = pos + length + TAG_SIZE
            if stop > len(view):
                raise errors.DataCorrupted(_SHORT)
            chunks.append(view[pos:stop])
            pos, self._next = stop, self._next + 1
        return self._opener(first, chunks)

    def finish(self) -> None:
        """After the last piece: every chunk of the range was there."""
        if self._next <= self._last:
            raise errors.DataCorrupted(_SHORT)


class _Regrouper:
    """Cuts pieces of any size into exact lengths, copying only what straddles two pieces."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._head = memoryview(b"")

    async def take(self, length: int) -> memoryview:
        if len(self._head) >= length:
            out, self._head = self._head[:length], self._head[length:]
            return out
        parts, have = [self._head], len(self._head)
        while True:
            piece = await anext(self._source, None)
            if piece is None:
                raise errors.DataCorrupted(_SHORT)
            view = memoryview(piece)
            if have + len(view) >= length:
                cut = length - have
                self._head = view[cut:]
                if not have:
                    return view[:cut]
                parts.append(view[:cut])
                return memoryview(b"".join(parts))
            parts.append(view)
            have += len(view)

    async def any_left(self) -> bool:
        if self._head:
            return True
        async for piece in self._source:
            if piece:
                return True
        return False


async def _open(
    sealed: AsyncIterator[bytes], opener: _PieceOpener, length: int
) -> AsyncIterator[bytes]:
    """Cut ``sealed`` into the opener's pieces and open each on a worker thread, the next
    piece while the consumer handles this one (at most two pieces in flight)."""
    regroup = _Regrouper(sealed)
    ahead: asyncio.Future[list[bytes]] | None = None
    try:
        for done in range(0, length, opener.piece):
            piece = await regroup.take(min(opener.piece, length - done))
            # The opener keeps count of chunks: the previous piece is opened before this one
            # starts; the consumer then handles it while this one is being opened.
            previous = await ahead if ahead is not None else []
            ahead = None
            work: asyncio.Future[list[bytes]]
            if len(piece) >= _THREAD_MIN:
                work = asyncio.ensure_future(asyncio.to_thread(opener, piece))
            else:
                work = asyncio.get_running_loop().create_future()
                work.set_result(opener(piece))
            ahead = work
            for plain in previous:
                yield plain
        if await regroup.any_left():
            raise errors.DataCorrupted(_LONG)
        if ahead is not None:
            current, ahead = ahead, None
            for plain in await current:
                yield plain
        opener.finish()
    finally:
        if ahead is not None:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)
        if isinstance(sealed, AsyncGenerator):
            await sealed.aclose()
