"""Encryption at rest: key managers that wrap data keys, and the envelopes that seal data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from andromede.ports.data import BlobWriter


class KeyManager(Protocol):
    """Holds key-encryption keys: DEKs are wrapped and unwrapped inside it, the KEK material
    never leaves it (built-in keystore, PKCS#11 token, KMIP server).

    Errors: KmsNotFound when a handle names no key (destroyed); DecryptionFailed when a
    wrapped DEK or its associated data does not authenticate; KeyManagerUnavailable when the
    manager cannot be reached or fails.
    """

    name: str

    async def create_key(self, label: str) -> str:
        """Generate a new 256-bit KEK inside the manager; returns its handle (opaque text of
        at most 200 characters, kept in the metadata store)."""
        ...

    async def wrap(self, handle: str, dek: bytes, aad: bytes) -> bytes:
        """Authenticated encryption of ``dek`` under the KEK, bound to ``aad``."""
        ...

    async def unwrap(self, handle: str, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`."""
        ...

    async def destroy_key(self, handle: str) -> None:
        """Destroy the KEK material irreversibly; a handle already gone is fine."""
        ...

    async def close(self) -> None:
        """Release sessions and connections."""
        ...


class PieceOpener(Protocol):
    """Opens a range's sealed bytes piece by piece (see :meth:`Envelope.piece_opener`)."""

    piece: int

    def __call__(self, sealed: bytes) -> Sequence[bytes]:
        """The kept plaintext of the next piece; DecryptionFailed, DataCorrupted."""
        ...

    def finish(self) -> None:
        """Raise DataCorrupted unless every chunk of the range was given."""
        ...


class Envelope(Protocol):
    """Authenticated encryption of blobs (envelope format: ``core/envelope.py``).

    Large buffers are sealed and opened on worker threads (the cipher releases the GIL).
    """

    def new_dek(self) -> bytes:
        """A fresh random 256-bit data key."""
        ...

    def sealing_writer(
        self, inner: BlobWriter, dek: bytes, digest: bytes, chunk_size: int
    ) -> BlobWriter:
        """A writer that seals what it is given into ``inner``: header first, then each full
        chunk as it fills, the last (possibly empty) chunk at :meth:`BlobWriter.commit`."""
        ...

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
        """Plaintext bytes ``[start, end)`` of a ``size``-byte object. ``sealed`` yields the
        blob's bytes from ``span.offset`` for ``span.length`` bytes, where ``span`` is
        :func:`andromede.core.envelope.span` of the same arguments. Raises DecryptionFailed
        at the first chunk that does not authenticate (never yielding any of its bytes) and
        DataCorrupted when ``sealed`` is short or long."""
        ...

    def piece_opener(
        self, dek: bytes, digest: bytes, chunk_size: int, size: int, start: int, end: int
    ) -> PieceOpener:
        """Opens plaintext ``[start, end)`` of a ``size``-byte object from the sealed bytes
        of its span (:func:`andromede.core.envelope.span`), read in pieces of exactly
        ``opener.piece`` bytes and given to the opener in order (a site read's transform)."""
        ...

    def wrap(self, key: bytes, dek: bytes, aad: bytes) -> bytes:
        """Wrap a DEK under a key held here (an SSE-C customer key; the built-in keystore)."""
        ...

    def unwrap(self, key: bytes, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`; DecryptionFailed when the key or ``aad`` is wrong."""
        ...
