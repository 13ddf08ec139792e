"""Manifests: the current format round-trips, and the previous one (plaintext) still reads."""

from __future__ import annotations

import pytest

from andromede.core.keys import EncryptionMode, KekRef, ObjectEncryption, Sealing
from andromede.core.models import MANIFEST_FORMAT, BlobRef, Manifest, Segment

# Written by the code before encryption at rest (manifest format 1), byte for byte.
FORMAT_1 = (
    '{"format":1,"segments":[{"s":"local","b":"0123456789abcdef0123456789abcdef","n":5,'
    '"p":1,"e":"\\"abc\\"","c":{"a":"CRC64NVME","v":"AAAAAAAAAAA=","t":"FULL_OBJECT"}}]}'
)


def test_previous_format_reads_as_plaintext_segments() -> None:
    manifest = Manifest.from_json(FORMAT_1)
    assert manifest.format == 1
    assert manifest.encryption is None
    (segment,) = manifest.segments
    assert segment.sealing is None
    assert segment.blob == BlobRef("local", "0123456789abcdef0123456789abcdef")
    assert (segment.size, segment.part_number) == (5, 1)


def test_current_format_round_trips_with_sealing() -> None:
    sealing = Sealing(1, 65536, "ver", b"wrapped-dek", KekRef("k", 1))
    manifest = Manifest(
        (Segment(BlobRef("local", "ab" * 16), 7, sealing=sealing),),
        encryption=ObjectEncryption(EncryptionMode.SSE_S3, "k"),
    )
    assert manifest.format == MANIFEST_FORMAT == 2
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown manifest format"):
        Manifest.from_json('{"format":99,"segments":[]}')
