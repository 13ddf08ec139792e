"""Request bodies under SigV4: ``aws-chunked`` decoding and whole-payload SHA-256 checks.

``aws-chunked`` frames the payload as ``hex-size[;chunk-signature=SIG]\\r\\n DATA \\r\\n``
chunks ending with a zero-size chunk, optionally followed by trailing headers (checksums)
and, in the signed-trailer variant, ``x-amz-trailer-signature``. Each chunk signature chains
from the previous one, starting at the request's seed signature, so chunks cannot be
dropped, reordered or altered.

Memory stays bounded whatever the chunk sizes: data is passed on as it arrives and hashed
incrementally, and framing lines are capped. A chunk's bytes are therefore yielded *before*
its signature is checked; a failure raises from the iterator, and the caller must then
discard everything it received (callers commit only after the iterator is exhausted).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Sequence

from andromede.auth.sigv4 import EMPTY_SHA256, AuthContext, PayloadMode, compute_signature
from andromede.core import errors

__all__ = [
    "MAX_LINE",
    "OFFLOAD_THRESHOLD",
    "AwsChunkedDecoder",
    "PayloadHashVerifier",
    "chunk_signature",
    "expected_trailer_names",
    "trailer_signature",
]

MAX_LINE = 4096  # a chunk header or trailer line longer than this is hostile
MAX_TRAILERS = 16
DEFAULT_MAX_CHUNK = 16 * 1024 * 1024
# hashlib releases the GIL, but handing a buffer to a thread costs ~80 us here, about what
# hashing 128 KiB costs; only buffers big enough to stall the loop noticeably go to a thread.
OFFLOAD_THRESHOLD = 1024 * 1024

_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNATURE = re.compile(rb"[0-9a-f]{64}")
_TRAILER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_TRAILER_SIGNATURE = "x-amz-trailer-signature"


def chunk_signature(ctx: AuthContext, previous: str, chunk_sha256: str) -> str:
    """The signature of one chunk, chained from ``previous`` (hex digests throughout)."""
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256-PAYLOAD", ctx.amz_date, ctx.scope, previous, EMPTY_SHA256, chunk_sha256]
    )
    return compute_signature(ctx.signing_key, to_sign)


def trailer_signature(ctx: AuthContext, previous: str, trailers: Sequence[tuple[str, str]]) -> str:
    """The signature over the trailing headers, chained from the final chunk's signature."""
    canonical = "".join(f"{name}:{value}\n" for name, value in trailers)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", ctx.amz_date, ctx.scope, previous, digest])
    return compute_signature(ctx.signing_key, to_sign)


def expected_trailer_names(headers: Sequence[tuple[str, str]]) -> list[str]:
    """The trailing headers ``x-amz-trailer`` announces, lowercased, in order."""
    names: list[str] = []
    for key, value in headers:
        if key.lower() == "x-amz-trailer":
            names.extend(item.strip().lower() for item in value.split(",") if item.strip())
    return names


async def _hash_update(hasher: hashlib._Hash, data: bytes) -> None:
    if len(data) >= OFFLOAD_THRESHOLD:
        await asyncio.to_thread(hasher.update, data)
    else:
        hasher.update(data)


class PayloadHashVerifier:
    """Checks a body against the hex SHA-256 its ``x-amz-content-sha256`` header signed.

    Feed every body byte with ``update`` (synchronous, for callers hashing in their own
    thread) or ``aupdate`` (moves buffers of ``OFFLOAD_THRESHOLD`` bytes or more to a
    thread), then call ``verify`` before committing anything.
    """

    def __init__(self, expected_sha256: str) -> None:
        self._expected = expected_sha256.lower()
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        """Hash ``data`` on the calling thread."""
        self._hash.update(data)

    async def aupdate(self, data: bytes) -> None:
        """Hash ``data``, in a worker thread when it is large."""
        await _hash_update(self._hash, data)

    def verify(self) -> None:
        """Raise ``ContentSHA256Mismatch`` unless the bytes seen hash to the signed value."""
        if not hmac.compare_digest(self._hash.hexdigest(), self._expected):
            raise errors.ContentSHA256Mismatch()


class _Reader:
    """Pulls framing lines and data out of a stream of byte pieces, holding little."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body
        self._buf = b""
        self._pos = 0

    async def _fill(self) -> bool:
        async for piece in self._body:
            if piece:
                rest = self._buf[self._pos :]
                self._buf = rest + piece if rest else bytes(piece)
                self._pos = 0
                return True
        return False

    async def line(self) -> bytes:
        """The next CRLF-terminated line, without its CRLF."""
        while True:
            end = self._buf.find(b"\r\n", self._pos, self._pos + MAX_LINE + 2)
            if end >= 0:
                line = self._buf[self._pos : end]
                self._pos = end + 2
                return line
            if len(self._buf) - self._pos > MAX_LINE:
                raise errors.InvalidRequest("An aws-chunked framing line is too long.")
            if not await self._fill():
                raise errors.IncompleteBody("The aws-chunked body ended in a framing line.")

    async def some(self, limit: int) -> bytes:
        """Between 1 and ``limit`` bytes of data."""
        if self._pos >= len(self._buf) and not await self._fill():
            raise errors.IncompleteBody("The aws-chunked body ended inside a chunk.")
        end = min(len(self._buf), self._pos + limit)
        data = self._buf[self._pos : end]
        self._pos = end
        return data

    async def at_end(self) -> bool:
        """True when nothing but the end of the stream remains."""
        return self._pos >= len(self._buf) and not await self._fill()


class AwsChunkedDecoder:
    """Decodes one ``Content-Encoding: aws-chunked`` body for an authenticated request.

    ``decoded_length`` is ``x-amz-decoded-content-length`` when the client sent it; the
    payload must be exactly that long. After ``decode`` is exhausted, ``trailers`` holds the
    trailing headers (lowercase names; the trailer signature is not among them) and
    ``decoded_length`` the payload size.
    """

    def __init__(
        self,
        ctx: AuthContext,
        *,
        decoded_length: int | None,
        max_chunk_size: int = DEFAULT_MAX_CHUNK,
    ) -> None:
        if not ctx.payload_mode.is_streaming:
            raise ValueError(f"{ctx.payload_mode.value} bodies are not aws-chunked")
        self._ctx = ctx
        self._expected_length = decoded_length
        self._max_chunk = max_chunk_size
        self.trailers: dict[str, str] = {}
        self.decoded_length = 0

    async def decode(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Yield the payload bytes of ``body``, checking framing and signatures as it goes."""
        reader = _Reader(body)
        signed = self._ctx.payload_mode.signs_chunks
        previous = self._ctx.seed_signature
        while True:
            size, claimed = self._parse_chunk_header(await reader.line(), signed=signed)
            if self._expected_length is not None and self.decoded_length + size > (
                self._expected_length
            ):
                raise errors.IncompleteBody(
                    "The aws-chunked body is longer than x-amz-decoded-content-length."
                )
            hasher = hashlib.sha256() if signed else None
            remaining = size
            while remaining:
                data = await reader.some(remaining)
                remaining -= len(data)
                if hasher is not None:
                    await _hash_update(hasher, data)
                yield data
            self.decoded_length += size
            if hasher is not None:
                previous = self._check_chunk(previous, hasher.hexdigest(), claimed)
            if size == 0:
                break
            if await reader.line() != b"":
                raise errors.InvalidRequest("An aws-chunked chunk is longer than its size.")
        await self._read_trailers(reader, previous)
        if not await reader.at_end():
            raise errors.InvalidRequest("Data follows the end of the aws-chunked body.")
        if self._expected_length is not None and self.decoded_length != self._expected_length:
            raise errors.IncompleteBody(
                "The aws-chunked body is shorter than x-amz-decoded-content-length."
            )

    def _parse_chunk_header(self, line: bytes, *, signed: bool) -> tuple[int, str]:
        size_text, _, extensions = line.partition(b";")
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise errors.InvalidRequest("An aws-chunked chunk size is not a hexadecimal number.")
        size = int(size_text, 16)
        if size > self._max_chunk:
            raise errors.InvalidRequest(
                f"An aws-chunked chunk is larger than {self._max_chunk} bytes."
            )
        if not signed:
            return size, ""
        name, _, value = extensions.partition(b"=")
        if name != b"chunk-signature" or not _SIGNATURE.fullmatch(value):
            raise errors.InvalidRequest("An aws-chunked chunk lacks a valid chunk-signature.")
        return size, value.decode("ascii")

    def _check_chunk(self, previous: str, digest: str, claimed: str) -> str:
        expected = chunk_signature(self._ctx, previous, digest)
        if not hmac.compare_digest(expected, claimed):
            raise errors.SignatureDoesNotMatch("An aws-chunked chunk signature does not match.")
        return expected

    async def _read_trailers(self, reader: _Reader, previous: str) -> None:
        mode = self._ctx.payload_mode
        received: list[tuple[str, str]] = []
        signature: str | None = None
        while True:
            if not mode.has_trailer and await reader.at_end():
                return  # tolerate a missing final CRLF: every chunk is already accounted for
            line = await reader.line()
            if line == b"":
                break
            if not mode.has_trailer or signature is not None or len(received) >= MAX_TRAILERS:
                raise errors.InvalidRequest("Unexpected trailing header in aws-chunked body.")
            name, value = self._parse_trailer(line)
            if name == _TRAILER_SIGNATURE:
                signature = value
            elif name in self.trailers:
                raise errors.InvalidRequest(f"Trailing header {name} is repeated.")
            else:
                self.trailers[name] = value
                received.append((name, value))
        if mode is PayloadMode.STREAMING_SIGNED_TRAILER:
            if signature is None:
                raise errors.SignatureDoesNotMatch("The aws-chunked trailer signature is missing.")
            expected = trailer_signature(self._ctx, previous, received)
            if not hmac.compare_digest(expected, signature):
                raise errors.SignatureDoesNotMatch(
                    "The aws-chunked trailer signature does not match."
                )

    @staticmethod
    def _parse_trailer(line: bytes) -> tuple[str, str]:
        text = line.decode("latin-1")
        name, sep, value = text.partition(":")
        name = name.strip().lower()
        if not sep or not _TRAILER_NAME.fullmatch(name):
            raise errors.InvalidRequest("A trailing header in the aws-chunked body is malformed.")
        return name, value.strip(" \t")
