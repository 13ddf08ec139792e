"""Tagging, conditional reads and writes, copies, part-number reads and object attributes.

Through boto3, asserted as AWS S3 answers them.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.s3errors import error_of
from support.s3objects import CHECKSUMS, MiB, b64, md5_etag, read, status_of

# --- tagging -------------------------------------------------------------------------------


def tag_set(tags: dict[str, str]) -> list[dict[str, str]]:
    """boto3's TagSet shape."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def test_tagging_header_and_tagging_operations(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two%20words&c=")
    got = s3.get_object_tagging(Bucket=bucket, Key="t")
    assert got["TagSet"] == tag_set({"a": "1", "b": "two words", "c": ""})
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 3
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": tag_set({"z": "26"})})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == tag_set({"z": "26"})
    deleted = s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert status_of(deleted) == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    assert "TagCount" not in s3.head_object(Bucket=bucket, Key="t")


def test_tagging_header_as_s3_reads_it(s3: Any, bucket: str) -> None:
    # A key without '=' holds the empty value; the set comes back in key order.
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="foo=bar&bar")
    got = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert got == [{"Key": "bar", "Value": ""}, {"Key": "foo", "Value": "bar"}]
    for header in ("a=&a=", "a=b=c"):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="bad", Body=b"x", Tagging=header)
        assert error_of(exc) == ("InvalidArgument", 400)
    eleven = "&".join(f"k{i}=v" for i in range(11))
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", Tagging=eleven)
    assert error_of(exc) == ("BadRequest", 400)  # as PutObjectTagging, below


def test_too_many_tags(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    eleven = tag_set({f"k{i}": "v" for i in range(11)})
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": eleven})
    # AWS answers this one with BadRequest, not InvalidTag.
    assert error_of(exc) == ("BadRequest", 400)
    ten = tag_set({f"k{i}": "v" for i in range(10)})
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": ten})
    assert len(s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]) == 10


# --- conditional reads -----------------------------------------------------------------------

PAST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
FUTURE = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)


@pytest.fixture
def cond(s3: Any, bucket: str) -> tuple[str, str, dt.datetime]:
    """An object: (key, etag, last modified)."""
    s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    head = s3.head_object(Bucket=bucket, Key="c")
    return "c", head["ETag"], head["LastModified"]


def conditional_status(s3: Any, bucket: str, key: str, method: str, **conditions: Any) -> int:
    """The status a conditional GET or HEAD gets."""
    try:
        if method == "GET":
            response = s3.get_object(Bucket=bucket, Key=key, **conditions)
            read(response)
        else:
            response = s3.head_object(Bucket=bucket, Key=key, **conditions)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        status = int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        if method == "GET" and status == 412:
            assert code == "PreconditionFailed"
        return status
    return status_of(response)


def test_not_modified_response_headers(
    s3: Any, bucket: str, cond: tuple[str, str, dt.datetime]
) -> None:
    key, etag, _ = cond
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key, IfNoneMatch=etag)
    assert error_of(exc) == ("304", 304)
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag


# --- multipart objects read back -------------------------------------------------------------

PART1 = 5 * MiB
PART2 = MiB + 3


@pytest.fixture
def multipart(s3: Any, bucket: str) -> tuple[str, bytes]:
    """A two-part object: (key, its bytes)."""
    key = "mp"
    data = os.urandom(PART1 + PART2)
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, chunk in ((1, data[:PART1]), (2, data[PART1:])):
        answer = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk
        )
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        for name in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME"):
            if name in answer:
                part[name] = answer[name]
        parts.append(part)
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    return key, data


def test_get_by_part_number(s3: Any, bucket: str, multipart: tuple[str, bytes]) -> None:
    key, data = multipart
    first = s3.get_object(Bucket=bucket, Key=key, PartNumber=1)
    assert status_of(first) == 206
    assert read(first) == data[:PART1]
    assert first["ContentRange"] == f"bytes 0-{PART1 - 1}/{len(data)}"
    assert first["PartsCount"] == 2
    assert first["ContentLength"] == PART1
    second = s3.get_object(Bucket=bucket, Key=key, PartNumber=2)
    assert read(second) == data[PART1:]
    assert second["ContentRange"] == f"bytes {PART1}-{len(data) - 1}/{len(data)}"
    head = s3.head_object(Bucket=bucket, Key=key, PartNumber=2)
    assert status_of(head) == 206
    assert head["PartsCount"] == 2
    assert head["ContentLength"] == PART2
    whole = s3.get_object(Bucket=bucket, Key=key)
    assert read(whole) == data
    assert whole["ETag"].endswith('-2"')
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key, PartNumber=3)
    assert error_of(exc) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key, PartNumber=1, Range="bytes=0-9")
    assert error_of(exc) == ("InvalidRequest", 400)


def test_get_object_attributes_multipart(
    s3: Any, bucket: str, multipart: tuple[str, bytes]
) -> None:
    key, data = multipart
    attrs = s3.get_object_attributes(
        Bucket=bucket, Key=key, ObjectAttributes=["ETag", "ObjectSize", "ObjectParts"]
    )
    assert attrs["ObjectSize"] == len(data)
    assert attrs["ETag"].endswith("-2")
    assert not attrs["ETag"].startswith('"')
    assert attrs["ObjectParts"]["TotalPartsCount"] == 2
    for part in attrs["ObjectParts"].get("Parts", []):
        assert part["Size"] == {1: PART1, 2: PART2}[part["PartNumber"]]


def test_get_object_attributes_simple(s3: Any, bucket: str) -> None:
    data = b"attributes"
    s3.put_object(Bucket=bucket, Key="a", Body=data, ChecksumAlgorithm="SHA256")
    attrs = s3.get_object_attributes(
        Bucket=bucket,
        Key="a",
        ObjectAttributes=["ETag", "ObjectSize", "StorageClass", "Checksum", "ObjectParts"],
    )
    assert attrs["ETag"] == md5_etag(data).strip('"')
    assert attrs["ObjectSize"] == len(data)
    assert attrs["StorageClass"] == "STANDARD"
    assert attrs["Checksum"]["ChecksumSHA256"] == b64(CHECKSUMS["SHA256"](data))
    assert "ObjectParts" not in attrs
    assert isinstance(attrs["LastModified"], dt.datetime)
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="nope", ObjectAttributes=["ETag"])
    assert error_of(exc) == ("NoSuchKey", 404)


# --- copy ------------------------------------------------------------------------------------


@pytest.fixture
def source(s3: Any, bucket: str) -> tuple[str, bytes, str]:
    """A source object with metadata and tags: (key, bytes, etag)."""
    data = os.urandom(70_000)
    put = s3.put_object(
        Bucket=bucket,
        Key="src",
        Body=data,
        ContentType="image/png",
        Metadata={"origin": "camera"},
        CacheControl="no-store",
        Tagging="kind=photo",
    )
    return "src", data, put["ETag"]


def test_copy_keeps_metadata_by_default(
    s3: Any, bucket: str, source: tuple[str, bytes, str]
) -> None:
    key, data, etag = source
    answer = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": key})
    assert answer["CopyObjectResult"]["ETag"] == etag
    assert isinstance(answer["CopyObjectResult"]["LastModified"], dt.datetime)
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert read(got) == data
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"origin": "camera"}
    assert got["CacheControl"] == "no-store"
    assert s3.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"] == tag_set({"kind": "photo"})


def test_copy_replace_metadata(s3: Any, bucket: str, source: tuple[str, bytes, str]) -> None:
    key, data, _ = source
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",
        Metadata={"new": "yes"},
        ContentType="text/plain",
    )
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert read(got) == data
    assert got["Metadata"] == {"new": "yes"}
    assert got["ContentType"] == "text/plain"
    assert "CacheControl" not in got


def test_copy_across_buckets_with_odd_key(s3: Any, bucket: str) -> None:
    other = "it-copy-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=other)
    key = "dir/ü n+i%c/ode?x=1"
    s3.put_object(Bucket=other, Key=key, Body=b"crossing")
    s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": other, "Key": key})
    assert read(s3.get_object(Bucket=bucket, Key=key)) == b"crossing"


def test_copy_tagging_directive(s3: Any, bucket: str, source: tuple[str, bytes, str]) -> None:
    key, _, _ = source
    src = {"Bucket": bucket, "Key": key}
    s3.copy_object(Bucket=bucket, Key="same-tags", CopySource=src, TaggingDirective="COPY")
    assert s3.get_object_tagging(Bucket=bucket, Key="same-tags")["TagSet"] == tag_set(
        {"kind": "photo"}
    )
    s3.copy_object(
        Bucket=bucket,
        Key="new-tags",
        CopySource=src,
        TaggingDirective="REPLACE",
        Tagging="a=1&b=2",
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="new-tags")["TagSet"] == tag_set(
        {"a": "1", "b": "2"}
    )
    s3.copy_object(Bucket=bucket, Key="no-tags", CopySource=src, TaggingDirective="REPLACE")
    assert s3.get_object_tagging(Bucket=bucket, Key="no-tags")["TagSet"] == []


def test_copy_invalid_directive(s3: Any, bucket: str, source: tuple[str, bytes, str]) -> None:
    def bad_directive(request: Any, **_: Any) -> None:
        request.headers["x-amz-metadata-directive"] = "MERGE"

    client = s3.meta.events
    client.register_first("before-sign.s3.CopyObject", bad_directive)
    try:
        with pytest.raises(ClientError) as exc:
            s3.copy_object(
                Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": source[0]}
            )
    finally:
        client.unregister("before-sign.s3.CopyObject", bad_directive)
    assert error_of(exc) == ("InvalidArgument", 400)


# --- conditional writes and deletes ---------------------------------------------------------


def test_put_object_conditions(s3: Any, bucket: str) -> None:
    """If-None-Match and If-Match on PutObject, ETags quoted or not, as S3 answers them."""

    def refused(**condition: str) -> tuple[str, int]:
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="k", Body=b"refused", **condition)
        return error_of(exc)

    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"one", IfNoneMatch="*")["ETag"]
    assert refused(IfNoneMatch="*") == ("PreconditionFailed", 412)
    assert refused(IfNoneMatch=etag) == ("PreconditionFailed", 412)
    assert refused(IfNoneMatch=etag.strip('"')) == ("PreconditionFailed", 412)
    assert refused(IfMatch="badetag") == ("PreconditionFailed", 412)
    assert read(s3.get_object(Bucket=bucket, Key="k")) == b"one"
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfNoneMatch="badetag")["ETag"]
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"three", IfMatch=etag)["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"four", IfMatch=etag.strip('"'))
    s3.delete_object(Bucket=bucket, Key="k")
    assert refused(IfMatch="*") == ("NoSuchKey", 404)
    assert refused(IfMatch="badetag") == ("NoSuchKey", 404)
    s3.put_object(Bucket=bucket, Key="k", Body=b"five", IfNoneMatch=etag)  # no object: proceeds
    s3.put_object(Bucket=bucket, Key="k", Body=b"six", IfMatch="*")
    assert read(s3.get_object(Bucket=bucket, Key="k")) == b"six"


def test_complete_multipart_upload_conditions(s3: Any, bucket: str) -> None:
    """The same conditions on CompleteMultipartUpload; a refused completion keeps its upload,
    which the client can complete again."""

    def start(body: bytes) -> tuple[str, dict[str, Any]]:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
        part = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=body)
        return upload_id, {"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]}

    def complete(body: bytes, **condition: str) -> str:
        upload_id, parts = start(body)
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=parts, **condition
        )
        return str(done["ETag"])

    def refused(expected: tuple[str, int], **condition: str) -> None:
        upload_id, parts = start(b"refused")
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=parts, **condition
            )
        assert error_of(exc) == expected
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert upload_id in [u["UploadId"] for u in uploads]
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)

    failed = ("PreconditionFailed", 412)
    refused(("NoSuchKey", 404), IfMatch="*")
    refused(("NoSuchKey", 404), IfMatch="badetag")
    etag = complete(b"one", IfNoneMatch="*")
    refused(failed, IfNoneMatch="*")
    refused(failed, IfNoneMatch=etag)
    refused(failed, IfMatch="badetag")
    etag = complete(b"two", IfNoneMatch="badetag")
    etag = complete(b"three", IfMatch=etag)
    complete(b"four", IfMatch="*")
    assert read(s3.get_object(Bucket=bucket, Key="k")) == b"four"

    # The refused upload, completed again without the condition, makes the object.
    upload_id, parts = start(b"retried")
    with pytest.raises(ClientError):
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=parts, IfNoneMatch="*"
        )
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload=parts)
    assert read(s3.get_object(Bucket=bucket, Key="k")) == b"retried"


def test_delete_object_conditions(s3: Any, bucket: str) -> None:
    """If-Match, x-amz-if-match-last-modified-time and x-amz-if-match-size: 412 when the object
    differs, 204 when it matches or when there is no object."""

    def refused(**condition: Any) -> tuple[str, int]:
        with pytest.raises(ClientError) as exc:
            s3.delete_object(Bucket=bucket, Key="k", **condition)
        return error_of(exc)

    long_ago = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"four")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="k")["LastModified"]
    assert refused(IfMatch="badetag") == ("PreconditionFailed", 412)
    assert refused(IfMatchLastModifiedTime=long_ago) == ("PreconditionFailed", 412)
    assert refused(IfMatchSize=9999) == ("PreconditionFailed", 412)
    assert refused(IfMatch=etag, IfMatchSize=0) == ("PreconditionFailed", 412)
    assert read(s3.get_object(Bucket=bucket, Key="k")) == b"four"
    deleted = s3.delete_object(
        Bucket=bucket, Key="k", IfMatch=etag, IfMatchLastModifiedTime=modified, IfMatchSize=4
    )
    assert status_of(deleted) == 204
    assert status_of(s3.delete_object(Bucket=bucket, Key="k", IfMatch="badetag")) == 204
    assert status_of(s3.delete_object(Bucket=bucket, Key="k", IfMatchSize=9999)) == 204
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="k", IfMatch="*")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_conditions(s3: Any, bucket: str) -> None:
    """DeleteObjects' ETag, LastModifiedTime and Size: a key whose object differs is its own
    PreconditionFailed error; the others go."""
    etag = s3.put_object(Bucket=bucket, Key="a", Body=b"x")["ETag"]
    s3.put_object(Bucket=bucket, Key="b", Body=b"x")
    s3.put_object(Bucket=bucket, Key="c", Body=b"x")
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    entries = [
        {"Key": "a", "ETag": "badetag"},
        {"Key": "b", "Size": 9999},
        {"Key": "c", "LastModifiedTime": dt.datetime(2015, 1, 1, tzinfo=dt.UTC)},
        {"Key": "gone", "ETag": "badetag"},
    ]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": entries})
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [
        ("a", "PreconditionFailed"),
        ("b", "PreconditionFailed"),
        ("c", "PreconditionFailed"),
    ]
    assert [d["Key"] for d in result["Deleted"]] == ["gone"]
    entries = [
        {"Key": "a", "ETag": etag},
        {"Key": "b", "Size": 1},
        {"Key": "c", "LastModifiedTime": modified},
    ]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": entries})
    assert "Errors" not in result
    assert sorted(d["Key"] for d in result["Deleted"]) == ["a", "b", "c"]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
