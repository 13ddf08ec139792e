"""Checksum algorithms S3 clients send (``x-amz-checksum-*``) and how they combine.

CRCs come from awscrt, the library the AWS SDKs themselves run, so our values match theirs
bit for bit; SHA-1 and SHA-256 come from hashlib. Both release the GIL on large buffers.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

from awscrt import checksums as _crt

from andromede.core import errors

Buffer = bytes | bytearray | memoryview


class ChecksumAlgorithm(enum.Enum):
    """The algorithms of ``x-amz-checksum-algorithm``; values are the AWS spellings."""

    CRC32 = "CRC32"
    CRC32C = "CRC32C"
    CRC64NVME = "CRC64NVME"
    SHA1 = "SHA1"
    SHA256 = "SHA256"

    @property
    def header(self) -> str:
        """The request/response header carrying this checksum."""
        return "x-amz-checksum-" + self.value.lower()

    @property
    def digest_size(self) -> int:
        """Length in bytes of the raw (not base64) checksum."""
        return _DIGEST_SIZES[self]

    @property
    def is_crc(self) -> bool:
        """CRCs can be combined across parts into a full-object checksum; hashes cannot."""
        return self in _CRC_FUNCS


class ChecksumType(enum.Enum):
    """``x-amz-checksum-type``: a checksum of the whole object, or of the parts' checksums."""

    FULL_OBJECT = "FULL_OBJECT"
    COMPOSITE = "COMPOSITE"


_DIGEST_SIZES = {
    ChecksumAlgorithm.CRC32: 4,
    ChecksumAlgorithm.CRC32C: 4,
    ChecksumAlgorithm.CRC64NVME: 8,
    ChecksumAlgorithm.SHA1: 20,
    ChecksumAlgorithm.SHA256: 32,
}

_CRC_FUNCS: dict[ChecksumAlgorithm, Callable[[Buffer, int], int]] = {
    ChecksumAlgorithm.CRC32: _crt.crc32,
    ChecksumAlgorithm.CRC32C: _crt.crc32c,
    ChecksumAlgorithm.CRC64NVME: _crt.crc64nvme,
}

_CRC_COMBINE: dict[ChecksumAlgorithm, Callable[[int, int, int], int]] = {
    ChecksumAlgorithm.CRC32: _crt.combine_crc32,
    ChecksumAlgorithm.CRC32C: _crt.combine_crc32c,
    ChecksumAlgorithm.CRC64NVME: _crt.combine_crc64nvme,
}


class Hasher(Protocol):
    """A running checksum. ``update`` may be called from a worker thread for big buffers."""

    @property
    def algorithm(self) -> ChecksumAlgorithm: ...

    def update(self, data: Buffer) -> None: ...

    def digest(self) -> bytes: ...

    def b64(self) -> str: ...


class _CrcHasher:
    def __init__(self, algorithm: ChecksumAlgorithm) -> None:
        self._algorithm = algorithm
        self._func = _CRC_FUNCS[algorithm]
        self._value = 0

    @property
    def algorithm(self) -> ChecksumAlgorithm:
        return self._algorithm

    def update(self, data: Buffer) -> None:
        self._value = self._func(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._algorithm.digest_size, "big")

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


class _HashlibHasher:
    def __init__(self, algorithm: ChecksumAlgorithm) -> None:
        self._algorithm = algorithm
        name = "sha1" if algorithm is ChecksumAlgorithm.SHA1 else "sha256"
        # SHA-1 here is an integrity checksum the client asked for, not a security boundary.
        self._hash = hashlib.new(name, usedforsecurity=False)

    @property
    def algorithm(self) -> ChecksumAlgorithm:
        return self._algorithm

    def update(self, data: Buffer) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def new_hasher(algorithm: ChecksumAlgorithm) -> Hasher:
    """Start a running checksum for ``algorithm``."""
    if algorithm.is_crc:
        return _CrcHasher(algorithm)
    return _HashlibHasher(algorithm)


def checksum(algorithm: ChecksumAlgorithm, data: Buffer) -> bytes:
    """One-shot raw checksum of ``data``."""
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return hasher.digest()


def decode_b64_checksum(algorithm: ChecksumAlgorithm, value: str) -> bytes:
    """Decode a checksum header value, refusing bad base64 and wrong lengths.

    Raises ``InvalidChecksum`` when ``value`` is not the canonical base64 of exactly
    ``algorithm.digest_size`` bytes.
    """
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.InvalidChecksum(f"Value for {algorithm.header} header is invalid.") from exc
    if len(raw) != algorithm.digest_size:
        raise errors.InvalidChecksum(f"Value for {algorithm.header} header is invalid.")
    return raw


def encode_b64(digest: bytes) -> str:
    """The base64 spelling S3 uses for checksum headers and XML."""
    return base64.b64encode(digest).decode("ascii")


def composite_checksum(algorithm: ChecksumAlgorithm, part_digests: Sequence[bytes]) -> str:
    """The COMPOSITE checksum of a multipart object: ``base64(H(d1 || d2 || ...))-N``.

    ``part_digests`` are the raw checksums of the parts, in part order.
    """
    for digest in part_digests:
        if len(digest) != algorithm.digest_size:
            raise ValueError(f"{algorithm.value} part digest must be {algorithm.digest_size} bytes")
    combined = checksum(algorithm, b"".join(part_digests))
    return f"{encode_b64(combined)}-{len(part_digests)}"


def combine_crc(algorithm: ChecksumAlgorithm, parts: Sequence[tuple[bytes, int]]) -> bytes:
    """The FULL_OBJECT CRC of consecutive parts, from each part's CRC and length alone.

    ``parts`` are ``(raw digest, length in bytes)`` in part order. The result equals the CRC
    of the concatenated data, without reading it again.
    """
    if not algorithm.is_crc:
        raise ValueError(f"{algorithm.value} checksums cannot be combined")
    combine = _CRC_COMBINE[algorithm]
    size = algorithm.digest_size
    value = 0
    for digest, length in parts:
        if len(digest) != size:
            raise ValueError(f"{algorithm.value} part digest must be {size} bytes")
        if length < 0:
            raise ValueError("part length must not be negative")
        value = combine(value, int.from_bytes(digest, "big"), length)
    return value.to_bytes(size, "big")
