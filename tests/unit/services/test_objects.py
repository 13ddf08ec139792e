"""Objects: writes commit metadata only after verified data, reads honour ranges, parts and
preconditions, and a refused write leaves nothing behind, neither visible nor on a site."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
from typing import NoReturn

import pytest

from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm, ChecksumType
from andromede.core.conditions import Preconditions
from andromede.core.models import DeleteCondition, WriteCondition
from andromede.services.body import IncomingBody, body_from_bytes
from andromede.services.objects import Deleted, Integrity, ObjectAttributes
from support.s3objects import CHECKSUMS, b64, md5_etag
from support.services import (
    ALICE,
    FUTURE,
    MALLORY,
    PAST,
    ServiceStack,
    assert_absent,
    chunks,
    read_body,
)

# Past the data path's small-body threshold: streamed to a writer, not put in one go.
LARGE = 2 * 1024 * 1024 + 3


def md5_b64(data: bytes) -> str:
    return b64(hashlib.md5(data, usedforsecurity=False).digest())


def streamed(data: bytes, step: int = 700_000) -> IncomingBody:
    """A body arriving in pieces, of known length."""
    return IncomingBody(chunks(*(data[i : i + step] for i in range(0, len(data), step))), len(data))


async def put_body(
    stack: ServiceStack,
    bucket: str,
    key: str,
    body: IncomingBody,
    integrity: Integrity | None = None,
    condition: WriteCondition | None = None,
) -> str:
    version = await stack.objects.put(
        ALICE, bucket, key, body, ObjectAttributes(), integrity or Integrity(), condition
    )
    return version.etag


# --- put and get -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 70_000, LARGE])
async def test_round_trip_and_only_sealed_bytes_reach_the_site(
    stack: ServiceStack, bucket: str, size: int
) -> None:
    data = os.urandom(size)
    etag = await put_body(stack, bucket, "k", streamed(data))
    assert etag == md5_etag(data)
    got = await stack.objects.get(ALICE, bucket, "k")
    assert got.version.size == size
    assert got.byte_range is None
    assert await read_body(got) == data
    (blob,) = stack.site().blobs
    stored = stack.site().data(blob)
    assert len(stored) > size  # an envelope header and a tag per chunk
    if size >= 16:
        assert data[:16] not in stored


async def test_overwrite_replaces_content_and_metadata(stack: ServiceStack, bucket: str) -> None:
    await stack.put(bucket, "k", b"one", attrs=ObjectAttributes("text/plain", user_meta={"a": "1"}))
    await stack.put(bucket, "k", b"two")
    got = await stack.objects.get(ALICE, bucket, "k")
    assert await read_body(got) == b"two"
    assert got.version.content_type == "binary/octet-stream"
    assert got.version.user_meta == {}


async def test_incomplete_body_is_refused_and_leaves_nothing(
    stack: ServiceStack, bucket: str
) -> None:
    short = IncomingBody(chunks(b"only this"), 100)
    with pytest.raises(errors.IncompleteBody):
        await put_body(stack, bucket, "k", short)
    large_short = IncomingBody(chunks(os.urandom(LARGE)), LARGE + 1)
    with pytest.raises(errors.IncompleteBody):
        await put_body(stack, bucket, "k", large_short)
    await assert_absent(stack, bucket, "k")
    assert stack.site().blobs == {}
    assert stack.site().pending == {}


async def test_a_body_failing_its_transport_check_is_not_committed(
    stack: ServiceStack, bucket: str
) -> None:
    def signature_mismatch() -> None:
        raise errors.ContentSHA256Mismatch()

    for data in (b"small", os.urandom(LARGE)):
        body = IncomingBody(chunks(data), len(data), finish=signature_mismatch)
        with pytest.raises(errors.ContentSHA256Mismatch):
            await put_body(stack, bucket, "k", body)
    await assert_absent(stack, bucket, "k")
    assert stack.site().blobs == {}


async def test_missing_bucket_and_other_tenants(stack: ServiceStack, bucket: str) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await stack.put("nope", "k", b"x")
    with pytest.raises(errors.NoSuchBucket):
        await stack.objects.get(ALICE, "nope", "k")
    await stack.put(bucket, "k", b"mine")
    with pytest.raises(errors.AccessDenied):
        await stack.objects.get(MALLORY, bucket, "k")
    with pytest.raises(errors.AccessDenied):
        await stack.put(bucket, "k", b"theirs", principal=MALLORY)
    with pytest.raises(errors.AccessDenied):
        await stack.objects.delete(MALLORY, bucket, "k")
    assert await stack.get(bucket, "k") == b"mine"


# --- integrity ---------------------------------------------------------------------------------
async def test_content_md5_good(stack: ServiceStack, bucket: str) -> None:
    data = b"integrity matters"
    etag = await stack.put(bucket, "k", data, integrity=Integrity(content_md5=md5_b64(data)))
    assert etag == md5_etag(data)


@pytest.mark.parametrize("size", [7, LARGE])
async def test_content_md5_mismatch_leaves_nothing(
    stack: ServiceStack, bucket: str, size: int
) -> None:
    await stack.put(bucket, "k", b"previous")
    before = stack.stored_blobs()
    wrong = Integrity(content_md5=md5_b64(b"something else"))
    with pytest.raises(errors.BadDigest):
        await put_body(stack, bucket, "k", streamed(os.urandom(size)), wrong)
    assert await stack.get(bucket, "k") == b"previous"
    assert stack.stored_blobs() == before
    with pytest.raises(errors.BadDigest):
        await put_body(stack, bucket, "new", streamed(os.urandom(size)), wrong)
    await assert_absent(stack, bucket, "new")
    assert stack.stored_blobs() == before


@pytest.mark.parametrize("value", ["not-base64!!", b64(b"short")])
async def test_content_md5_malformed_stores_nothing(
    stack: ServiceStack, bucket: str, value: str
) -> None:
    with pytest.raises(errors.InvalidDigest):
        await stack.put(bucket, "k", b"payload", integrity=Integrity(content_md5=value))
    assert stack.site().blobs == {}


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
async def test_checksum_algorithms_are_computed_and_kept(
    stack: ServiceStack, bucket: str, algorithm: ChecksumAlgorithm
) -> None:
    data = os.urandom(300_000)
    version = await stack.objects.put(
        ALICE,
        bucket,
        "c",
        streamed(data),
        ObjectAttributes(),
        Integrity(algorithm=algorithm),
    )
    assert version.checksum is not None
    assert version.checksum.algorithm is algorithm
    assert version.checksum.value == b64(CHECKSUMS[algorithm.value](data))
    assert version.checksum.type is ChecksumType.FULL_OBJECT
    got = await stack.objects.get(ALICE, bucket, "c", with_body=False)
    assert got.version.checksum == version.checksum


async def test_default_checksum_is_crc64nvme(stack: ServiceStack, bucket: str) -> None:
    version = await stack.objects.put(
        ALICE, bucket, "c", body_from_bytes(b"abc"), ObjectAttributes(), Integrity()
    )
    assert version.checksum is not None
    assert version.checksum.algorithm is ChecksumAlgorithm.CRC64NVME
    assert version.checksum.value == b64(CHECKSUMS["CRC64NVME"](b"abc"))


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
@pytest.mark.parametrize("size", [22, LARGE])
async def test_checksum_mismatch_is_refused_and_the_old_object_stays(
    stack: ServiceStack, bucket: str, algorithm: ChecksumAlgorithm, size: int
) -> None:
    data = b"explicit checksum body"
    right = Integrity(algorithm=algorithm, checksum=b64(CHECKSUMS[algorithm.value](data)))
    await stack.put(bucket, "c", data, integrity=right)
    before = stack.stored_blobs()
    wrong = Integrity(algorithm=algorithm, checksum=b64(CHECKSUMS[algorithm.value](b"other")))
    with pytest.raises(errors.ChecksumMismatch):
        await put_body(stack, bucket, "c", streamed(os.urandom(size)), wrong)
    assert await stack.get(bucket, "c") == data
    assert stack.stored_blobs() == before


async def test_checksum_of_the_wrong_length_is_invalid(stack: ServiceStack, bucket: str) -> None:
    bad = Integrity(algorithm=ChecksumAlgorithm.SHA256, checksum="bm90IGEgc2hhMjU2")
    with pytest.raises(errors.InvalidRequest):
        await stack.put(bucket, "c", b"x", integrity=bad)
    assert stack.site().blobs == {}


def with_trailers(data: bytes, trailers: dict[str, str]) -> IncomingBody:
    """A body whose checksum arrives after it (an aws-chunked trailer)."""
    return IncomingBody(chunks(data), len(data), trailers=lambda: trailers)


async def test_checksum_in_a_trailer(stack: ServiceStack, bucket: str) -> None:
    data = os.urandom(1000)
    alg = ChecksumAlgorithm.CRC32C
    in_trailer = Integrity(algorithm=alg, checksum_in_trailer=True)
    with pytest.raises(errors.InvalidRequest):
        await put_body(stack, bucket, "t", with_trailers(data, {}), in_trailer)
    bad = {alg.header: b64(CHECKSUMS["CRC32C"](b"x"))}
    with pytest.raises(errors.ChecksumMismatch):
        await put_body(stack, bucket, "t", with_trailers(data, bad), in_trailer)
    assert stack.site().blobs == {}
    good = {alg.header: b64(CHECKSUMS["CRC32C"](data))}
    await put_body(stack, bucket, "t", with_trailers(data, good), in_trailer)
    assert await stack.get(bucket, "t") == data


# --- ranges and parts ----------------------------------------------------------------------------
RANGE_DATA = bytes(range(256)) * 4  # 1024 bytes


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=100-199", 100, 199),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-5", 1019, 1023),
        ("bytes=1000-5000", 1000, 1023),
        ("bytes=-5000", 0, 1023),
        ("bytes=1023-1023", 1023, 1023),
    ],
)
async def test_range_reads(
    stack: ServiceStack, bucket: str, spec: str, start: int, end: int
) -> None:
    await stack.put(bucket, "r", RANGE_DATA)
    got = await stack.objects.get(ALICE, bucket, "r", range_header=spec)
    assert got.byte_range is not None
    assert got.byte_range.content_range() == f"bytes {start}-{end}/1024"
    assert await read_body(got) == RANGE_DATA[start : end + 1]
    assert got.version.etag == md5_etag(RANGE_DATA)


async def test_range_across_encryption_chunks(stack: ServiceStack, bucket: str) -> None:
    data = os.urandom(LARGE)
    await put_body(stack, bucket, "big", streamed(data))
    spec = f"bytes={LARGE // 3}-{2 * LARGE // 3}"
    got = await stack.objects.get(ALICE, bucket, "big", range_header=spec)
    assert await read_body(got) == data[LARGE // 3 : 2 * LARGE // 3 + 1]


@pytest.mark.parametrize("spec", ["bytes=1024-", "bytes=5000-6000"])
async def test_range_not_satisfiable(stack: ServiceStack, bucket: str, spec: str) -> None:
    await stack.put(bucket, "r", RANGE_DATA)
    with pytest.raises(errors.InvalidRange):
        await stack.objects.get(ALICE, bucket, "r", range_header=spec)


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=abc", "bytes=9-3", "items=0-5"])
async def test_unsupported_or_malformed_range_reads_everything(
    stack: ServiceStack, bucket: str, spec: str
) -> None:
    await stack.put(bucket, "r", RANGE_DATA)
    got = await stack.objects.get(ALICE, bucket, "r", range_header=spec)
    assert got.byte_range is None
    assert await read_body(got) == RANGE_DATA


async def test_part_numbers_of_a_single_part_object(stack: ServiceStack, bucket: str) -> None:
    await stack.put(bucket, "r", RANGE_DATA)
    got = await stack.objects.get(ALICE, bucket, "r", part_number=1)
    assert got.byte_range is not None
    assert got.byte_range.content_range() == "bytes 0-1023/1024"
    assert await read_body(got) == RANGE_DATA
    with pytest.raises(errors.InvalidPartNumber):
        await stack.objects.get(ALICE, bucket, "r", part_number=2)
    for bad in (0, 10_001):
        with pytest.raises(errors.InvalidArgument):
            await stack.objects.get(ALICE, bucket, "r", part_number=bad)
    with pytest.raises(errors.InvalidRequest):
        await stack.objects.get(ALICE, bucket, "r", part_number=1, range_header="bytes=0-1")


# --- preconditions -------------------------------------------------------------------------------
@pytest.mark.parametrize("with_body", [True, False])
async def test_conditional_reads(stack: ServiceStack, bucket: str, with_body: bool) -> None:
    etag = await stack.put(bucket, "c", b"conditional")
    modified = stack.clock.now().strftime("%a, %d %b %Y %H:%M:%S GMT")

    async def outcome(**conditions: str) -> int:
        try:
            await stack.objects.get(
                ALICE, bucket, "c", preconditions=Preconditions(**conditions), with_body=with_body
            )
        except errors.PreconditionFailed:
            return 412
        except errors.NotModified:
            return 304
        return 200

    assert await outcome(if_match=etag) == 200
    assert await outcome(if_match='"0123"') == 412
    assert await outcome(if_match="*") == 200
    assert await outcome(if_none_match=etag) == 304
    assert await outcome(if_none_match='"0123"') == 200
    assert await outcome(if_none_match="*") == 304
    assert await outcome(if_modified_since=PAST) == 200
    assert await outcome(if_modified_since=FUTURE) == 304
    assert await outcome(if_modified_since=modified) == 304
    assert await outcome(if_unmodified_since=PAST) == 412
    assert await outcome(if_unmodified_since=FUTURE) == 200
    assert await outcome(if_unmodified_since=modified) == 200
    # AWS's documented combinations.
    assert await outcome(if_match=etag, if_unmodified_since=PAST) == 200
    assert await outcome(if_none_match=etag, if_modified_since=PAST) == 304
    assert await outcome(if_match='"0123"', if_none_match=etag) == 412
    assert await outcome(if_none_match='"0123"', if_modified_since=FUTURE) == 200


async def test_modified_since_follows_the_clock(stack: ServiceStack, bucket: str) -> None:
    await stack.put(bucket, "c", b"v1")
    stack.clock.advance(dt.timedelta(days=1))
    after_v1 = stack.clock.now().strftime("%a, %d %b %Y %H:%M:%S GMT")
    with pytest.raises(errors.NotModified):
        await stack.objects.get(
            ALICE, bucket, "c", preconditions=Preconditions(if_modified_since=after_v1)
        )
    stack.clock.advance(dt.timedelta(days=1))
    await stack.put(bucket, "c", b"v2")
    got = await stack.objects.get(
        ALICE, bucket, "c", preconditions=Preconditions(if_modified_since=after_v1)
    )
    assert await read_body(got) == b"v2"


async def test_conditions_on_a_missing_key(stack: ServiceStack, bucket: str) -> None:
    with pytest.raises(errors.NoSuchKey):
        await stack.objects.get(ALICE, bucket, "nope", preconditions=Preconditions(if_match='"a"'))


async def test_put_if_none_match_star(stack: ServiceStack, bucket: str) -> None:
    once = WriteCondition(if_none_match="*")
    etag = await put_body(stack, bucket, "once", body_from_bytes(b"first"), condition=once)
    assert etag == md5_etag(b"first")
    before = stack.stored_blobs()
    with pytest.raises(errors.PreconditionFailed):
        await put_body(stack, bucket, "once", body_from_bytes(b"second"), condition=once)
    assert await stack.get(bucket, "once") == b"first"
    assert stack.stored_blobs() == before


async def test_put_if_match(stack: ServiceStack, bucket: str) -> None:
    etag = await stack.put(bucket, "v", b"one")
    before = stack.stored_blobs()
    with pytest.raises(errors.PreconditionFailed):
        await put_body(
            stack,
            bucket,
            "v",
            body_from_bytes(b"lost"),
            condition=WriteCondition('"' + "0" * 32 + '"'),
        )
    assert stack.stored_blobs() == before  # the refused write's blob is gone again
    updated = await put_body(
        stack, bucket, "v", body_from_bytes(b"two"), condition=WriteCondition(etag)
    )
    assert updated == md5_etag(b"two")
    with pytest.raises(errors.PreconditionFailed):  # the old ETag no longer matches
        await put_body(
            stack, bucket, "v", body_from_bytes(b"three"), condition=WriteCondition(etag)
        )
    assert await stack.get(bucket, "v") == b"two"
    with pytest.raises(errors.NoSuchKey):
        await put_body(
            stack, bucket, "absent", body_from_bytes(b"x"), condition=WriteCondition('"a"')
        )


async def test_put_if_none_match_etag(stack: ServiceStack, bucket: str) -> None:
    # Absent key: any If-None-Match lets the write create it.
    etag = await put_body(
        stack, bucket, "n", body_from_bytes(b"one"), condition=WriteCondition(if_none_match="x")
    )
    before = stack.stored_blobs()
    for listed in (etag, etag.strip('"'), f'"other", {etag}'):
        with pytest.raises(errors.PreconditionFailed):
            await put_body(
                stack,
                bucket,
                "n",
                body_from_bytes(b"refused"),
                condition=WriteCondition(if_none_match=listed),
            )
    assert stack.stored_blobs() == before  # refused before any data was stored
    updated = await put_body(
        stack, bucket, "n", body_from_bytes(b"two"), condition=WriteCondition(if_none_match="bad")
    )
    assert updated == md5_etag(b"two")
    assert await stack.get(bucket, "n") == b"two"


async def test_put_if_match_star_needs_an_object(stack: ServiceStack, bucket: str) -> None:
    any_version = WriteCondition(if_match="*")
    with pytest.raises(errors.NoSuchKey):
        await put_body(stack, bucket, "s", body_from_bytes(b"x"), condition=any_version)
    await assert_absent(stack, bucket, "s")
    await stack.put(bucket, "s", b"one")
    await put_body(stack, bucket, "s", body_from_bytes(b"two"), condition=any_version)
    assert await stack.get(bucket, "s") == b"two"


# --- delete --------------------------------------------------------------------------------------
async def test_delete_is_idempotent(stack: ServiceStack, bucket: str) -> None:
    await stack.put(bucket, "d", b"x")
    await stack.objects.delete(ALICE, bucket, "d")
    await stack.objects.delete(ALICE, bucket, "d")
    await assert_absent(stack, bucket, "d")
    with pytest.raises(errors.NoSuchBucket):
        await stack.objects.delete(ALICE, "nope", "d")


async def test_delete_many(stack: ServiceStack, bucket: str) -> None:
    for key in ("a", "b"):
        await stack.put(bucket, key, b"x")
    results = await stack.objects.delete_many(
        ALICE, bucket, [("a", None, None), ("missing", None, None), ("b", None, None)]
    )
    assert results == [(k, None, Deleted()) for k in ("a", "missing", "b")]
    for key in ("a", "b"):
        await assert_absent(stack, bucket, key)


async def test_delete_if_match(stack: ServiceStack, bucket: str) -> None:
    etag = await stack.put(bucket, "d", b"x")
    with pytest.raises(errors.PreconditionFailed):
        await stack.objects.delete(ALICE, bucket, "d", DeleteCondition(if_match="badetag"))
    assert await stack.get(bucket, "d") == b"x"
    await stack.objects.delete(ALICE, bucket, "d", DeleteCondition(if_match=etag.strip('"')))
    await assert_absent(stack, bucket, "d")
    # A missing key is no error, whatever the condition.
    await stack.objects.delete(ALICE, bucket, "d", DeleteCondition(if_match="*"))
    await stack.objects.delete(ALICE, bucket, "d", DeleteCondition(if_match="badetag"))
    await stack.put(bucket, "d", b"y")
    await stack.objects.delete(ALICE, bucket, "d", DeleteCondition(if_match="*"))
    await assert_absent(stack, bucket, "d")


async def test_delete_if_match_time_and_size(stack: ServiceStack, bucket: str) -> None:
    await stack.put(bucket, "d", b"four")
    version = await stack.objects.attributes(ALICE, bucket, "d")
    # The client knows the time to the second (Last-Modified); the store keeps microseconds.
    seconds = version.last_modified.replace(microsecond=0)
    for wrong in (
        DeleteCondition(last_modified=seconds - dt.timedelta(seconds=1)),
        DeleteCondition(size=5),
        DeleteCondition(last_modified=seconds, size=0),
    ):
        with pytest.raises(errors.PreconditionFailed):
            await stack.objects.delete(ALICE, bucket, "d", wrong)
    assert await stack.get(bucket, "d") == b"four"
    await stack.objects.delete(ALICE, bucket, "d", DeleteCondition(last_modified=seconds, size=4))
    await assert_absent(stack, bucket, "d")
    await stack.objects.delete(ALICE, bucket, "d", DeleteCondition(size=9999))


async def test_delete_many_with_conditions(stack: ServiceStack, bucket: str) -> None:
    etag = await stack.put(bucket, "a", b"x")
    await stack.put(bucket, "b", b"x")
    results = await stack.objects.delete_many(
        ALICE,
        bucket,
        [
            ("a", DeleteCondition(if_match="badetag"), None),
            ("b", DeleteCondition(size=1), None),
            ("gone", DeleteCondition(if_match="badetag"), None),
        ],
    )
    assert [(key, type(outcome)) for key, _, outcome in results] == [
        ("a", errors.PreconditionFailed),
        ("b", Deleted),
        ("gone", Deleted),
    ]
    assert await stack.get(bucket, "a") == b"x"
    await assert_absent(stack, bucket, "b")
    results = await stack.objects.delete_many(ALICE, bucket, [("a", DeleteCondition(etag), None)])
    assert results == [("a", None, Deleted())]
    await assert_absent(stack, bucket, "a")


# --- tags ----------------------------------------------------------------------------------------
async def test_tagging(stack: ServiceStack, bucket: str) -> None:
    await stack.put(bucket, "t", b"x", attrs=ObjectAttributes(tags={"a": "1", "b": "two words"}))
    assert (await stack.objects.get_tags(ALICE, bucket, "t")).tags == {"a": "1", "b": "two words"}
    await stack.objects.put_tags(ALICE, bucket, "t", [("z", "26")])
    assert (await stack.objects.get_tags(ALICE, bucket, "t")).tags == {"z": "26"}
    await stack.objects.put_tags(ALICE, bucket, "t", [("foo", "bar"), ("Hello", ""), ("bar", "")])
    listed = (await stack.objects.get_tags(ALICE, bucket, "t")).tags
    assert listed == {"Hello": "", "bar": "", "foo": "bar"}
    await stack.objects.delete_tags(ALICE, bucket, "t")
    assert (await stack.objects.get_tags(ALICE, bucket, "t")).tags == {}
    assert await stack.get(bucket, "t") == b"x"  # tagging never touches the data
    with pytest.raises(errors.NoSuchKey):
        await stack.objects.get_tags(ALICE, bucket, "nope")
    with pytest.raises(errors.NoSuchKey):
        await stack.objects.put_tags(ALICE, bucket, "nope", [])


@pytest.mark.parametrize(
    "tags",
    [
        [("k" * 129, "v")],
        [("k", "v" * 257)],
        [("aws:reserved", "v")],
        [("dup", "1"), ("dup", "2")],
        [(f"k{i}", "v") for i in range(11)],
    ],
    ids=["key-too-long", "value-too-long", "aws-prefix", "duplicate", "eleven"],
)
async def test_invalid_tags_keep_the_old_set(
    stack: ServiceStack, bucket: str, tags: list[tuple[str, str]]
) -> None:
    await stack.put(bucket, "t", b"x", attrs=ObjectAttributes(tags={"keep": "me"}))
    with pytest.raises((errors.InvalidTag, errors.TooManyTags)):
        await stack.objects.put_tags(ALICE, bucket, "t", tags)
    assert (await stack.objects.get_tags(ALICE, bucket, "t")).tags == {"keep": "me"}


# --- a site that fails under a request ----------------------------------------------------------
@pytest.mark.parametrize("size", [5, LARGE])
async def test_a_one_copy_site_failing_mid_request_is_a_503_naming_it(
    stack: ServiceStack, bucket: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The site fails after placement chose it (a Ceph cluster that stops answering, a disk
    error): the write's or the read's OSError becomes ShardsUnavailable (503) naming the
    site, never a 500, and the site is left out of new placements for a while."""
    data = os.urandom(size)
    await stack.put(bucket, "kept", data)
    site = stack.site()

    async def times_out(*args: object) -> NoReturn:
        raise TimeoutError(errno.ETIMEDOUT, "write: ETIMEDOUT")

    monkeypatch.setattr(site, "create", times_out)
    monkeypatch.setattr(site, "put", times_out)
    with pytest.raises(errors.ShardsUnavailable, match=f"Site {site.name} could not store"):
        await put_body(stack, bucket, "new", streamed(data))
    assert site.name in stack.placement._failed
    monkeypatch.undo()
    got = await stack.objects.get(ALICE, bucket, "kept")
    site.offline = True
    with pytest.raises(errors.ShardsUnavailable, match=f"Site {site.name} could not be read"):
        await read_body(got)
    site.offline = False
    await assert_absent(stack, bucket, "new")
    assert await read_body(await stack.objects.get(ALICE, bucket, "kept")) == data
