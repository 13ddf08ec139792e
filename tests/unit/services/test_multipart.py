"""Multipart: parts are stored and checked as they come; completing validates the part list
and installs the object in one step; a refused completion keeps the upload, an abort leaves
nothing (once the janitor's grace has passed)."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm, ChecksumType
from andromede.core.conditions import Preconditions
from andromede.core.models import MultipartUpload, Part, WriteCondition
from andromede.services.body import body_from_bytes
from andromede.services.multipart import CompletedPart
from andromede.services.objects import Integrity, ObjectAttributes
from support.multipart import PART, random_data
from support.s3objects import CHECKSUMS, b64, md5_etag
from support.services import ALICE, GARBAGE_GRACE, MALLORY, ServiceStack


def multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    return f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"'


async def create(
    stack: ServiceStack,
    bucket: str,
    key: str = "k",
    *,
    algorithm: ChecksumAlgorithm | None = None,
    checksum_type: ChecksumType | None = None,
    attrs: ObjectAttributes | None = None,
) -> MultipartUpload:
    return await stack.multipart.create(
        ALICE, bucket, key, attrs or ObjectAttributes(), algorithm, checksum_type
    )


async def upload(
    stack: ServiceStack,
    upload: MultipartUpload,
    number: int,
    data: bytes,
    integrity: Integrity | None = None,
) -> Part:
    return (
        await stack.multipart.upload_part(
            ALICE,
            upload.bucket,
            upload.key,
            upload.upload_id,
            number,
            body_from_bytes(data),
            integrity or Integrity(),
        )
    ).part


def listed(*parts: Part) -> list[CompletedPart]:
    """The part list a client sends back, ETags (and checksums) as it was given them."""
    return [
        CompletedPart(
            p.part_number, p.etag, {p.checksum.algorithm: p.checksum.value} if p.checksum else {}
        )
        for p in parts
    ]


async def complete(
    stack: ServiceStack,
    upload: MultipartUpload,
    parts: list[CompletedPart],
    full_checksum: tuple[ChecksumAlgorithm, str] | None = None,
    checksum_type: ChecksumType | None = None,
    condition: WriteCondition | None = None,
) -> str:
    version = await stack.multipart.complete(
        ALICE,
        upload.bucket,
        upload.key,
        upload.upload_id,
        parts,
        full_checksum,
        checksum_type,
        condition,
    )
    return version.etag


async def parts_of(stack: ServiceStack, upload: MultipartUpload) -> list[Part]:
    page = await stack.multipart.list_parts(
        ALICE, upload.bucket, upload.key, upload.upload_id, 0, 1000
    )
    return page.parts


async def in_progress(stack: ServiceStack, bucket: str) -> list[str]:
    """Upload ids ListMultipartUploads shows."""
    uploads, _, _ = await stack.multipart.list_uploads(
        ALICE,
        bucket,
        prefix="",
        delimiter="",
        key_marker="",
        upload_id_marker="",
        max_uploads=100,
    )
    return [u.upload_id for u in uploads]


# --- the basic flow ------------------------------------------------------------------------------
async def test_upload_and_complete(stack: ServiceStack, bucket: str) -> None:
    data = [random_data(PART, 1), random_data(PART, 2), random_data(1234, 3)]
    attrs = ObjectAttributes("text/plain", user_meta={"colour": "blue"}, tags={"t": "1"})
    up = await create(stack, bucket, "big", attrs=attrs)
    parts = [await upload(stack, up, n, d) for n, d in enumerate(data, 1)]
    assert [p.etag for p in parts] == [md5_etag(d) for d in data]

    assert await complete(stack, up, listed(*parts)) == multipart_etag(data)

    got = await stack.objects.get(ALICE, bucket, "big")
    assert got.version.size == 2 * PART + 1234
    assert got.version.parts_count == 3
    assert got.version.content_type == "text/plain"
    assert got.version.user_meta == {"colour": "blue"}
    assert got.version.tags == {"t": "1"}
    assert await stack.get(bucket, "big") == b"".join(data)
    assert await in_progress(stack, bucket) == []


async def test_part_number_reads_and_ranges_across_parts(stack: ServiceStack, bucket: str) -> None:
    data = [random_data(PART, 4), random_data(100, 5)]
    up = await create(stack, bucket)
    parts = [await upload(stack, up, n, d) for n, d in enumerate(data, 1)]
    await complete(stack, up, listed(*parts))
    first = await stack.objects.get(ALICE, bucket, "k", part_number=1)
    assert first.byte_range is not None
    assert first.byte_range.content_range() == f"bytes 0-{PART - 1}/{PART + 100}"
    second = await stack.objects.get(ALICE, bucket, "k", part_number=2)
    assert second.byte_range is not None
    assert second.byte_range.content_range() == f"bytes {PART}-{PART + 99}/{PART + 100}"
    assert second.body is not None
    assert b"".join([p async for p in second.body]) == data[1]
    with pytest.raises(errors.InvalidPartNumber):
        await stack.objects.get(ALICE, bucket, "k", part_number=3)
    across = await stack.objects.get(
        ALICE, bucket, "k", range_header=f"bytes={PART - 10}-{PART + 9}"
    )
    assert across.body is not None
    assert b"".join([p async for p in across.body]) == data[0][-10:] + data[1][:10]


async def test_reuploading_a_part_replaces_it(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket)
    old = await upload(stack, up, 1, b"old bytes")
    new = await upload(stack, up, 1, b"the new bytes")
    assert [(p.part_number, p.etag, p.size) for p in await parts_of(stack, up)] == [
        (1, new.etag, 13)
    ]
    with pytest.raises(errors.InvalidPart):
        await complete(stack, up, listed(old))
    await complete(stack, up, listed(new))
    assert await stack.get(bucket, "k") == b"the new bytes"


async def test_complete_with_a_subset_of_parts(stack: ServiceStack, bucket: str) -> None:
    data = {1: random_data(PART, 6), 2: random_data(PART, 7), 3: random_data(10, 8)}
    up = await create(stack, bucket)
    parts = {n: await upload(stack, up, n, d) for n, d in data.items()}
    assert await complete(stack, up, listed(parts[1], parts[3])) == multipart_etag(
        [data[1], data[3]]
    )
    assert await stack.get(bucket, "k") == data[1] + data[3]
    with pytest.raises(errors.NoSuchUpload):
        await parts_of(stack, up)
    # The part left out is garbage: gone from its site once the grace has passed.
    stack.clock.advance(GARBAGE_GRACE)
    await stack.janitor.collect_garbage()
    assert stack.site().blobs.keys() == {parts[1].blob.blob_id, parts[3].blob.blob_id}


async def test_complete_accepts_unquoted_etags(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket)
    part = await upload(stack, up, 1, b"x")
    await complete(stack, up, [CompletedPart(1, part.etag.strip('"'))])
    assert await stack.get(bucket, "k") == b"x"


# --- completion errors ---------------------------------------------------------------------------
@pytest.fixture
async def two_parts(stack: ServiceStack, bucket: str) -> tuple[MultipartUpload, list[Part]]:
    """An upload of ``k`` with two full-size parts."""
    up = await create(stack, bucket)
    return up, [await upload(stack, up, n, random_data(PART, 10 + n)) for n in (1, 2)]


async def test_parts_out_of_order(
    stack: ServiceStack, two_parts: tuple[MultipartUpload, list[Part]]
) -> None:
    up, parts = two_parts
    with pytest.raises(errors.InvalidPartOrder):
        await complete(stack, up, listed(*reversed(parts)))
    with pytest.raises(errors.InvalidPartOrder):
        await complete(stack, up, listed(parts[0], parts[1], parts[0]))
    await complete(stack, up, listed(*parts))  # the refusals left the upload as it was


async def test_a_part_listed_twice_counts_once_by_its_last_entry(
    stack: ServiceStack, bucket: str
) -> None:
    """A part re-sent while its first attempt was still running: the client lists both
    answers, the first attempt's last because it finished last (s3-tests'
    test_multipart_resend_first_finishes_last). The stored part is the one that finished last."""
    up = await create(stack, bucket)
    second = await upload(stack, up, 1, b"BBBBBBBB")
    first = await upload(stack, up, 1, b"AAAAAAAA")
    with pytest.raises(errors.InvalidPart):  # the last entry is the stale one
        await complete(stack, up, listed(first, second))
    assert await complete(stack, up, listed(second, first)) == multipart_etag([b"AAAAAAAA"])
    assert await stack.get(bucket, "k") == b"AAAAAAAA"


async def test_a_retried_completion_answers_the_object_it_made(
    stack: ServiceStack, bucket: str, two_parts: tuple[MultipartUpload, list[Part]]
) -> None:
    """An SDK retries a completion whose response was lost: S3 answers the same result, not
    NoSuchUpload, while the object is the key's current version and the part list is the
    same."""
    up, parts = two_parts
    etag = await complete(stack, up, listed(*parts))
    assert await complete(stack, up, listed(*parts)) == etag
    with pytest.raises(errors.NoSuchUpload):  # another part list
        await complete(stack, up, listed(parts[0]))
    with pytest.raises(errors.NoSuchUpload):  # an upload that never completed here
        await stack.multipart.complete(
            ALICE, bucket, "k", "not-an-upload", listed(*parts), None, None
        )
    await stack.objects.delete(ALICE, bucket, "k")
    with pytest.raises(errors.NoSuchUpload):  # the object it made is gone
        await complete(stack, up, listed(*parts))


async def completes(
    stack: ServiceStack, bucket: str, data: bytes, condition: WriteCondition
) -> str:
    """Complete a one-part upload of ``data`` to ``k`` under ``condition``."""
    up = await create(stack, bucket)
    return await complete(stack, up, listed(await upload(stack, up, 1, data)), condition=condition)


async def refused(
    stack: ServiceStack, bucket: str, condition: WriteCondition, error: type[Exception]
) -> str:
    """A one-part completion under ``condition`` fails with ``error`` and keeps its upload,
    which completes once the condition is gone; the ETag it then makes."""
    up = await create(stack, bucket)
    parts = listed(await upload(stack, up, 1, b"refused"))
    with pytest.raises(error):
        await complete(stack, up, parts, condition=condition)
    assert up.upload_id in await in_progress(stack, bucket)
    etag = await complete(stack, up, parts)
    assert await stack.get(bucket, "k") == b"refused"
    return etag


async def test_conditional_completion(stack: ServiceStack, bucket: str) -> None:
    """The conditions of PutObject, checked atomically with the completion; a refused one
    leaves the upload in place so the client can retry it."""
    await refused(stack, bucket, WriteCondition(if_match="*"), errors.NoSuchKey)
    await stack.objects.delete(ALICE, bucket, "k")
    await refused(stack, bucket, WriteCondition(if_match="badetag"), errors.NoSuchKey)
    await stack.objects.delete(ALICE, bucket, "k")
    await completes(stack, bucket, b"one", WriteCondition(if_none_match="*"))
    etag = await refused(
        stack, bucket, WriteCondition(if_none_match="*"), errors.PreconditionFailed
    )
    etag = await completes(stack, bucket, b"two", WriteCondition(if_match=etag))
    etag = await refused(
        stack, bucket, WriteCondition(if_none_match=etag), errors.PreconditionFailed
    )
    await completes(stack, bucket, b"two", WriteCondition(if_match=etag.strip('"')))
    await refused(stack, bucket, WriteCondition(if_match="badetag"), errors.PreconditionFailed)
    await completes(stack, bucket, b"two", WriteCondition(if_none_match="badetag"))
    await completes(stack, bucket, b"three", WriteCondition(if_match="*"))
    assert await stack.get(bucket, "k") == b"three"


async def test_wrong_etag_or_missing_part(
    stack: ServiceStack, bucket: str, two_parts: tuple[MultipartUpload, list[Part]]
) -> None:
    up, parts = two_parts
    with pytest.raises(errors.InvalidPart):
        await complete(stack, up, [*listed(parts[0]), CompletedPart(2, md5_etag(b"else"))])
    with pytest.raises(errors.InvalidPart):
        await complete(stack, up, [*listed(*parts), CompletedPart(3, parts[1].etag)])
    with pytest.raises(errors.NoSuchKey):
        await stack.objects.get(ALICE, bucket, "k")
    await complete(stack, up, listed(*parts))


async def test_small_part_before_the_last(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket)
    small = await upload(stack, up, 1, random_data(PART - 1, 20))
    full = await upload(stack, up, 2, random_data(PART, 21))
    with pytest.raises(errors.EntityTooSmall):
        await complete(stack, up, listed(small, full))
    await complete(stack, up, listed(full))  # the last part may be small; a lone one too


async def test_empty_part_list(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket)
    await upload(stack, up, 1, b"data")
    with pytest.raises(errors.MalformedXML):
        await complete(stack, up, [])


async def test_part_number_out_of_range(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket)
    for number in (0, 10_001):
        with pytest.raises(errors.InvalidArgument):
            await upload(stack, up, number, b"x")
    assert stack.site().blobs == {}


# --- abort and identity ---------------------------------------------------------------------------
async def test_abort_leaves_nothing(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket)
    part = await upload(stack, up, 1, b"data")
    assert await in_progress(stack, bucket) == [up.upload_id]
    await stack.multipart.abort(ALICE, bucket, "k", up.upload_id)
    with pytest.raises(errors.NoSuchUpload):
        await upload(stack, up, 2, b"more")
    with pytest.raises(errors.NoSuchUpload):
        await parts_of(stack, up)
    with pytest.raises(errors.NoSuchUpload):
        await complete(stack, up, listed(part))
    with pytest.raises(errors.NoSuchUpload):
        await stack.multipart.abort(ALICE, bucket, "k", up.upload_id)
    with pytest.raises(errors.NoSuchKey):
        await stack.objects.get(ALICE, bucket, "k")
    assert await in_progress(stack, bucket) == []
    # The part's blob stays for readers in flight, then goes.
    await stack.janitor.collect_garbage()
    assert stack.site().blobs.keys() == {part.blob.blob_id}
    stack.clock.advance(GARBAGE_GRACE)
    await stack.janitor.collect_garbage()
    assert stack.site().blobs == {}


async def test_upload_id_of_another_key_or_tenant(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket)
    with pytest.raises(errors.NoSuchUpload):
        await stack.multipart.upload_part(
            ALICE, bucket, "other", up.upload_id, 1, body_from_bytes(b"x"), Integrity()
        )
    with pytest.raises(errors.NoSuchUpload):
        await stack.multipart.list_parts(ALICE, bucket, "k", "no-such-upload-id", 0, 10)
    with pytest.raises(errors.AccessDenied):
        await stack.multipart.upload_part(
            MALLORY, bucket, "k", up.upload_id, 1, body_from_bytes(b"x"), Integrity()
        )
    assert stack.site().blobs == {}


# --- integrity of parts ---------------------------------------------------------------------------
async def test_wrong_content_md5_on_a_part(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket)
    wrong = Integrity(content_md5=b64(hashlib.md5(b"else", usedforsecurity=False).digest()))
    with pytest.raises(errors.BadDigest):
        await upload(stack, up, 1, b"data", wrong)
    assert await parts_of(stack, up) == []
    assert stack.site().blobs == {}


async def test_wrong_part_checksum_on_upload(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket, algorithm=ChecksumAlgorithm.SHA256)
    wrong = Integrity(
        algorithm=ChecksumAlgorithm.SHA256, checksum=b64(hashlib.sha256(b"other").digest())
    )
    with pytest.raises(errors.ChecksumMismatch):
        await upload(stack, up, 1, b"data", wrong)
    assert await parts_of(stack, up) == []
    assert stack.site().blobs == {}


async def test_wrong_part_checksum_on_complete(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket, algorithm=ChecksumAlgorithm.SHA256)
    part = await upload(stack, up, 1, b"one", Integrity(algorithm=ChecksumAlgorithm.SHA256))
    claimed = b64(hashlib.sha256(b"two").digest())
    with pytest.raises(errors.InvalidPart):
        await complete(
            stack, up, [CompletedPart(1, part.etag, {ChecksumAlgorithm.SHA256: claimed})]
        )


async def test_a_part_without_a_checksum_gets_the_uploads_algorithm(
    stack: ServiceStack, bucket: str
) -> None:
    up = await create(stack, bucket, algorithm=ChecksumAlgorithm.SHA256)
    part = await upload(stack, up, 1, b"one")
    assert part.checksum is not None
    assert part.checksum.value == b64(hashlib.sha256(b"one").digest())


async def test_part_checksum_of_another_algorithm(stack: ServiceStack, bucket: str) -> None:
    up = await create(stack, bucket, algorithm=ChecksumAlgorithm.CRC32)
    with pytest.raises(errors.InvalidRequest):
        await upload(stack, up, 1, b"data", Integrity(algorithm=ChecksumAlgorithm.SHA256))


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [
        (ChecksumAlgorithm.CRC64NVME, ChecksumType.COMPOSITE),
        (ChecksumAlgorithm.SHA256, ChecksumType.FULL_OBJECT),
        (ChecksumAlgorithm.SHA1, ChecksumType.FULL_OBJECT),
        (None, ChecksumType.FULL_OBJECT),
    ],
)
async def test_unsupported_checksum_type(
    stack: ServiceStack, bucket: str, algorithm: ChecksumAlgorithm | None, kind: ChecksumType
) -> None:
    with pytest.raises(errors.InvalidRequest):
        await create(stack, bucket, algorithm=algorithm, checksum_type=kind)


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


async def test_crc32_composite_checksum(stack: ServiceStack, bucket: str) -> None:
    data = [random_data(PART, 40), random_data(777, 41)]
    up = await create(stack, bucket, algorithm=ChecksumAlgorithm.CRC32)
    crc = Integrity(algorithm=ChecksumAlgorithm.CRC32)
    parts = [await upload(stack, up, n, d, crc) for n, d in enumerate(data, 1)]
    assert [p.checksum.value if p.checksum else None for p in parts] == [
        b64(crc32(d)) for d in data
    ]
    await complete(stack, up, listed(*parts))
    version = (await stack.objects.get(ALICE, bucket, "k", with_body=False)).version
    assert version.checksum is not None
    assert version.checksum.type is ChecksumType.COMPOSITE
    assert version.checksum.value == b64(crc32(b"".join(crc32(d) for d in data))) + "-2"


async def test_crc32_full_object_checksum(stack: ServiceStack, bucket: str) -> None:
    data = [random_data(PART, 42), random_data(PART, 43), random_data(5, 44)]
    whole = b"".join(data)
    full = ChecksumType.FULL_OBJECT
    up = await create(stack, bucket, algorithm=ChecksumAlgorithm.CRC32, checksum_type=full)
    crc = Integrity(algorithm=ChecksumAlgorithm.CRC32)
    parts = [await upload(stack, up, n, d, crc) for n, d in enumerate(data, 1)]
    with pytest.raises(errors.ChecksumMismatch):
        await complete(
            stack, up, listed(*parts), (ChecksumAlgorithm.CRC32, b64(crc32(b"not it"))), full
        )
    with pytest.raises(errors.NoSuchKey):
        await stack.objects.get(ALICE, bucket, "k")
    with pytest.raises(errors.InvalidRequest):  # the mode is the upload's
        await complete(stack, up, listed(*parts), None, ChecksumType.COMPOSITE)
    await complete(stack, up, listed(*parts), (ChecksumAlgorithm.CRC32, b64(crc32(whole))), full)
    version = (await stack.objects.get(ALICE, bucket, "k", with_body=False)).version
    assert version.checksum is not None
    assert (version.checksum.value, version.checksum.type) == (b64(crc32(whole)), full)


async def test_default_crc64nvme_covers_the_whole_object(stack: ServiceStack, bucket: str) -> None:
    data = [random_data(PART, 47), random_data(PART + 3, 48)]
    up = await create(stack, bucket)
    parts = [await upload(stack, up, n, d) for n, d in enumerate(data, 1)]
    await complete(stack, up, listed(*parts))
    version = (await stack.objects.get(ALICE, bucket, "k", with_body=False)).version
    assert version.checksum is not None
    assert version.checksum.algorithm is ChecksumAlgorithm.CRC64NVME
    assert version.checksum.type is ChecksumType.FULL_OBJECT
    assert version.checksum.value == b64(CHECKSUMS["CRC64NVME"](b"".join(data)))


async def test_sha256_composite_checksum(stack: ServiceStack, bucket: str) -> None:
    data = [random_data(PART, 49), random_data(PART, 50), random_data(1, 51)]
    up = await create(stack, bucket, algorithm=ChecksumAlgorithm.SHA256)
    sha = Integrity(algorithm=ChecksumAlgorithm.SHA256)
    parts = [await upload(stack, up, n, d, sha) for n, d in enumerate(data, 1)]
    await complete(stack, up, listed(*parts))
    version = (await stack.objects.get(ALICE, bucket, "k", with_body=False)).version
    assert version.checksum is not None
    digests = b"".join(hashlib.sha256(d).digest() for d in data)
    assert version.checksum.value == b64(hashlib.sha256(digests).digest()) + "-3"
    assert [
        base64.b64decode(s.checksum.value) for s in version.manifest.segments if s.checksum
    ] == [hashlib.sha256(d).digest() for d in data]


# --- UploadPartCopy -------------------------------------------------------------------------------
async def test_upload_part_copy_whole_ranged_and_conditional(
    stack: ServiceStack, bucket: str
) -> None:
    source = random_data(PART + 4096, 30)
    source_etag = await stack.put(bucket, "src", source)
    up = await create(stack, bucket, "dst")

    async def copy_part(number: int, spec: str | None, conditions: Preconditions) -> Part:
        _, stored = await stack.multipart.upload_part_copy(
            ALICE, bucket, "dst", up.upload_id, number, (bucket, "src"), spec, conditions
        )
        return stored.part

    with pytest.raises(errors.PreconditionFailed):
        await copy_part(1, None, Preconditions(if_match='"0000"'))
    with pytest.raises(errors.InvalidRange):
        await copy_part(1, f"bytes={PART}-{PART + 5000}", Preconditions())
    with pytest.raises(errors.NoSuchKey):
        await stack.multipart.upload_part_copy(
            ALICE, bucket, "dst", up.upload_id, 1, (bucket, "nope"), None, Preconditions()
        )
    whole = await copy_part(1, None, Preconditions(if_match=source_etag))
    ranged = await copy_part(2, "bytes=100-1123", Preconditions())
    assert whole.etag == md5_etag(source)
    assert ranged.etag == md5_etag(source[100:1124])
    assert await complete(stack, up, listed(whole, ranged)) == multipart_etag(
        [source, source[100:1124]]
    )
    assert await stack.get(bucket, "dst") == source + source[100:1124]
