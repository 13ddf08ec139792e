"""How the metadata store writes layouts and manifests down: the text of rows written by
earlier code reads back, and what is written now reads back the same."""

from __future__ import annotations

import pytest

from andromede.core.keys import EncryptionMode, KekRef, ObjectEncryption, Sealing
from andromede.core.models import MANIFEST_FORMAT, BlobRef, Manifest, Segment
from andromede.core.placement import Layout, LayoutKind, Redundancy
from andromede.metadata.codec import dump_layout, dump_manifest, load_layout, load_manifest

# Written by the code before encryption at rest (manifest format 1), byte for byte.
FORMAT_1 = (
    '{"format":1,"segments":[{"s":"local","b":"0123456789abcdef0123456789abcdef","n":5,'
    '"p":1,"e":"\\"abc\\"","c":{"a":"CRC64NVME","v":"AAAAAAAAAAA=","t":"FULL_OBJECT"}}]}'
)


@pytest.mark.parametrize(
    ("text", "layout", "kind"),
    [
        ("local", Layout.single("local"), LayoutKind.SINGLE),
        (
            "r3:fr-a,fr-c,fr-d",
            Layout(Redundancy.replicas(3), ("fr-a", "fr-c", "fr-d")),
            LayoutKind.REPLICAS,
        ),
        (
            "ec4+2:a,b,c,d,e,f",
            Layout(Redundancy(True, 4, 2), ("a", "b", "c", "d", "e", "f")),
            LayoutKind.ERASURE,
        ),
    ],
)
def test_layout_text_is_what_earlier_code_wrote(
    text: str, layout: Layout, kind: LayoutKind
) -> None:
    assert load_layout(text) == layout
    assert dump_layout(layout) == text
    assert layout.kind is kind


def test_plain_site_name_is_one_unframed_copy() -> None:
    layout = load_layout("local")
    assert not layout.framed
    assert layout.sites == ("local",)
    assert layout.redundancy.shards == 1


@pytest.mark.parametrize("text", ["r3:a,b", "r2:a,a", "ec4+2:a,b", "r3:A,b,c", "", "r3:", "../x"])
def test_bad_layout_texts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with what is wrong
        load_layout(text)


def test_previous_format_reads_as_plaintext_segments() -> None:
    manifest = load_manifest(FORMAT_1)
    assert manifest.format == 1
    assert manifest.encryption is None
    (segment,) = manifest.segments
    assert segment.sealing is None
    assert segment.blob == BlobRef(Layout.single("local"), "0123456789abcdef0123456789abcdef")
    assert (segment.size, segment.part_number) == (5, 1)


def test_current_format_round_trips_with_sealing() -> None:
    sealing = Sealing(1, 65536, "ver", b"wrapped-dek", KekRef("k", 1))
    r3 = Layout(Redundancy.replicas(3), ("fr-a", "fr-b", "fr-c"))
    manifest = Manifest(
        (
            Segment(BlobRef(Layout.single("local"), "ab" * 16), 7, sealing=sealing),
            Segment(BlobRef(r3, "cd" * 16), 3, sealing=sealing),
        ),
        encryption=ObjectEncryption(EncryptionMode.SSE_S3, "k"),
    )
    assert manifest.format == MANIFEST_FORMAT == 2
    text = dump_manifest(manifest)
    assert '"s":"r3:fr-a,fr-b,fr-c"' in text
    assert load_manifest(text) == manifest


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown manifest format"):
        load_manifest('{"format":99,"segments":[]}')
