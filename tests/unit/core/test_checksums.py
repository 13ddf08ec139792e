"""Checksums as S3 clients compute them, and how multipart checksums combine."""

from __future__ import annotations

import base64
import hashlib
import random
import zlib

import pytest

from andromede.core import checksums, errors
from andromede.core.checksums import ChecksumAlgorithm, ChecksumType

ALL = list(ChecksumAlgorithm)
CRCS = [alg for alg in ALL if alg.is_crc]

# Published check values: the checksum of the ASCII bytes "123456789" for each algorithm.
CHECK_VALUES = {
    ChecksumAlgorithm.CRC32: "cbf43926",
    ChecksumAlgorithm.CRC32C: "e3069283",
    ChecksumAlgorithm.CRC64NVME: "ae8b14860a799888",
    ChecksumAlgorithm.SHA1: "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
    ChecksumAlgorithm.SHA256: "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
}


@pytest.mark.parametrize("algorithm", ALL)
def test_check_values(algorithm: ChecksumAlgorithm) -> None:
    hasher = checksums.new_hasher(algorithm)
    hasher.update(b"123456789")
    assert hasher.digest().hex() == CHECK_VALUES[algorithm]
    assert hasher.algorithm is algorithm
    assert len(hasher.digest()) == algorithm.digest_size
    assert base64.b64decode(hasher.b64()) == hasher.digest()


@pytest.mark.parametrize("algorithm", ALL)
def test_incremental_updates_match_one_shot(algorithm: ChecksumAlgorithm) -> None:
    data = bytes(random.Random(1).randrange(256) for _ in range(10_000))
    hasher = checksums.new_hasher(algorithm)
    for start in range(0, len(data), 777):
        piece = data[start : start + 777]
        hasher.update(memoryview(piece) if start % 2 else bytearray(piece))
    assert hasher.digest() == checksums.checksum(algorithm, data)


@pytest.mark.parametrize("algorithm", ALL)
def test_empty_input(algorithm: ChecksumAlgorithm) -> None:
    hasher = checksums.new_hasher(algorithm)
    if algorithm.is_crc:
        assert hasher.digest() == bytes(algorithm.digest_size)
    else:
        assert hasher.digest() == hashlib.new(algorithm.value.lower(), b"").digest()


def test_crc32_agrees_with_zlib() -> None:
    data = b"The quick brown fox jumps over the lazy dog"
    assert int.from_bytes(checksums.checksum(ChecksumAlgorithm.CRC32, data), "big") == zlib.crc32(
        data
    )


def test_header_names_and_sizes() -> None:
    assert ChecksumAlgorithm.CRC64NVME.header == "x-amz-checksum-crc64nvme"
    assert [alg.digest_size for alg in ALL] == [4, 4, 8, 20, 32]
    assert ChecksumType("COMPOSITE") is ChecksumType.COMPOSITE


@pytest.mark.parametrize("algorithm", ALL)
def test_decode_b64_checksum_round_trip(algorithm: ChecksumAlgorithm) -> None:
    digest = checksums.checksum(algorithm, b"abc")
    assert checksums.decode_b64_checksum(algorithm, checksums.encode_b64(digest)) == digest


@pytest.mark.parametrize(
    ("algorithm", "value"),
    [
        (ChecksumAlgorithm.CRC32, "AAAAAAAA"),  # six bytes, not four
        (ChecksumAlgorithm.CRC32, "AAA="),  # two bytes
        (ChecksumAlgorithm.CRC32, "AA*AAA=="),  # not base64
        (ChecksumAlgorithm.CRC64NVME, "AAAAAA=="),  # a CRC32-sized value
        (ChecksumAlgorithm.SHA256, ""),
        (ChecksumAlgorithm.SHA1, "not base64 at all"),
    ],
)
def test_decode_b64_checksum_refuses_bad_values(algorithm: ChecksumAlgorithm, value: str) -> None:
    with pytest.raises(errors.InvalidChecksum):
        checksums.decode_b64_checksum(algorithm, value)


def test_composite_checksum_shape() -> None:
    parts = [b"part one" * 1000, b"part two", b"3"]
    digests = [checksums.checksum(ChecksumAlgorithm.SHA256, part) for part in parts]
    expected = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
    assert checksums.composite_checksum(ChecksumAlgorithm.SHA256, digests) == f"{expected}-3"


@pytest.mark.parametrize("algorithm", CRCS)
def test_composite_crc_is_the_crc_of_the_part_crcs(algorithm: ChecksumAlgorithm) -> None:
    digests = [checksums.checksum(algorithm, part) for part in (b"a", b"bb", b"ccc")]
    value, _, count = checksums.composite_checksum(algorithm, digests).partition("-")
    assert count == "3"
    assert base64.b64decode(value) == checksums.checksum(algorithm, b"".join(digests))


def test_composite_checksum_refuses_wrong_digest_sizes() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        checksums.composite_checksum(ChecksumAlgorithm.CRC32, [b"12345"])


@pytest.mark.parametrize("algorithm", CRCS)
def test_combine_crc_equals_crc_of_concatenation(algorithm: ChecksumAlgorithm) -> None:
    rng = random.Random(algorithm.value)
    for _ in range(25):
        parts = [
            bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 64, 1000, 5000])))
            for _ in range(rng.randint(1, 6))
        ]
        combined = checksums.combine_crc(
            algorithm, [(checksums.checksum(algorithm, part), len(part)) for part in parts]
        )
        assert combined == checksums.checksum(algorithm, b"".join(parts))


@pytest.mark.parametrize("algorithm", CRCS)
def test_combine_crc_of_large_parts(algorithm: ChecksumAlgorithm) -> None:
    # Multipart parts are at least 5 MiB; lengths that large exercise the whole shift table.
    first = bytes(range(256)) * 24_577  # a little over 6 MiB
    second = b"\xff" * (5 * 1024 * 1024 + 3)
    parts = [(checksums.checksum(algorithm, p), len(p)) for p in (first, second, first)]
    assert checksums.combine_crc(algorithm, parts) == checksums.checksum(
        algorithm, first + second + first
    )


def test_combine_crc_of_nothing_is_the_empty_crc() -> None:
    assert checksums.combine_crc(ChecksumAlgorithm.CRC64NVME, []) == bytes(8)


def test_combine_refuses_hashes_and_bad_input() -> None:
    with pytest.raises(ValueError, match="cannot be combined"):
        checksums.combine_crc(ChecksumAlgorithm.SHA256, [])
    with pytest.raises(ValueError, match="4 bytes"):
        checksums.combine_crc(ChecksumAlgorithm.CRC32, [(b"12345678", 3)])
    with pytest.raises(ValueError, match="negative"):
        checksums.combine_crc(ChecksumAlgorithm.CRC32, [(b"1234", -1)])
