"""Object operations through boto3: put, get, head, integrity, ranges, delete, odd keys.

Asserted as AWS S3 answers them.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import os
import secrets
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.s3errors import error_of
from support.s3objects import CHECKSUMS, MiB, b64, md5_etag, read, status_of, utf8_order


def header_of(response: dict[str, Any], name: str) -> str | None:
    """A raw response header (lowercase name)."""
    headers: dict[str, str] = response["ResponseMetadata"]["HTTPHeaders"]
    return headers.get(name)


# --- put / get / head ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, MiB + 7, 20 * MiB])
def test_put_get_head_round_trip(s3: Any, bucket: str, size: int) -> None:
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key="blob", Body=data)
    assert put["ETag"] == md5_etag(data)
    got = s3.get_object(Bucket=bucket, Key="blob")
    assert read(got) == data
    assert status_of(got) == 200
    assert got["ContentLength"] == size
    assert got["ETag"] == md5_etag(data)
    assert got["ContentType"] == "binary/octet-stream"
    assert got["AcceptRanges"] == "bytes"
    head = s3.head_object(Bucket=bucket, Key="blob")
    assert head["ContentLength"] == size
    assert head["ETag"] == md5_etag(data)
    assert head["LastModified"] == got["LastModified"]
    assert abs(head["LastModified"] - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_overwrite_replaces_content_and_metadata(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", Metadata={"gen": "1"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"second!")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert read(got) == b"second!"
    assert got["Metadata"] == {}


def test_user_metadata(s3: Any, bucket: str) -> None:
    meta = {"color": "blue", "Mixed-Case": "Value With Spaces"}
    s3.put_object(Bucket=bucket, Key="m", Body=b"x", Metadata=meta)
    expected = {"color": "blue", "mixed-case": "Value With Spaces"}
    assert s3.head_object(Bucket=bucket, Key="m")["Metadata"] == expected
    assert s3.get_object(Bucket=bucket, Key="m")["Metadata"] == expected


def test_non_ascii_metadata(s3: Any, bucket: str) -> None:
    """botocore sends a non-ASCII value as UTF-8 and signs it as text; S3 stores the text and
    returns it RFC 2047 encoded, and takes encoded words back as the text they encode."""

    def unicode_value(params: dict[str, Any], **_: Any) -> None:
        params["headers"]["x-amz-meta-city"] = "Orléans, Zürich, 東京"

    s3.meta.events.register("before-call.s3.PutObject", unicode_value)
    try:
        s3.put_object(Bucket=bucket, Key="m", Body=b"x")
    finally:
        s3.meta.events.unregister("before-call.s3.PutObject", unicode_value)
    encoded = "=?UTF-8?B?" + b64("Orléans, Zürich, 東京".encode()) + "?="
    assert s3.head_object(Bucket=bucket, Key="m")["Metadata"] == {"city": encoded}
    s3.put_object(Bucket=bucket, Key="m2", Body=b"x", Metadata={"city": encoded})
    assert s3.get_object(Bucket=bucket, Key="m2")["Metadata"] == {"city": encoded}
    s3.copy_object(Bucket=bucket, Key="m3", CopySource={"Bucket": bucket, "Key": "m"})
    assert s3.head_object(Bucket=bucket, Key="m3")["Metadata"] == {"city": encoded}


def test_user_metadata_too_large(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="m", Body=b"x", Metadata={"big": "v" * 2100})
    assert error_of(exc) == ("MetadataTooLarge", 400)


EXPIRES = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_content_headers_stored_and_returned(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="page.html",
        Body=b"<html/>",
        ContentType="text/html; charset=utf-8",
        ContentEncoding="x-custom",
        ContentDisposition='attachment; filename="page.html"',
        CacheControl="max-age=60",
        ContentLanguage="fr",
        Expires=EXPIRES,
    )
    for response in (
        s3.head_object(Bucket=bucket, Key="page.html"),
        s3.get_object(Bucket=bucket, Key="page.html"),
    ):
        assert response["ContentType"] == "text/html; charset=utf-8"
        assert response["ContentEncoding"] == "x-custom"
        assert response["ContentDisposition"] == 'attachment; filename="page.html"'
        assert response["CacheControl"] == "max-age=60"
        assert response["ContentLanguage"] == "fr"
        assert header_of(response, "expires") == email.utils.format_datetime(EXPIRES, usegmt=True)
        if "Body" in response:
            assert read(response) == b"<html/>"


def test_content_encoding_list_without_aws_chunked(s3: Any, bucket: str) -> None:
    """``aws-chunked`` describes the request's framing, not the object: it is dropped and the
    rest of the list is kept as S3 writes it."""
    s3.put_object(Bucket=bucket, Key="z", Body=b"x", ContentEncoding="aws-chunked, deflate, gzip")
    assert s3.head_object(Bucket=bucket, Key="z")["ContentEncoding"] == "deflate, gzip"
    s3.put_object(Bucket=bucket, Key="z", Body=b"x", ContentEncoding="aws-chunked")
    assert "ContentEncoding" not in s3.head_object(Bucket=bucket, Key="z")


def test_response_overrides_on_get(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"data", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
        ResponseContentLanguage="de",
        ResponseContentEncoding="x-other",
        ResponseExpires=EXPIRES,
    )
    assert read(got) == b"data"
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "de"
    assert got["ContentEncoding"] == "x-other"
    assert header_of(got, "expires") == email.utils.format_datetime(EXPIRES, usegmt=True)
    # Overrides are per request: the stored headers are unchanged.
    assert s3.head_object(Bucket=bucket, Key="o")["ContentType"] == "text/plain"


def test_missing_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_of(exc) == ("NoSuchKey", 404)
    assert exc.value.response["Error"]["Key"] == "nope"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="nope")
    assert error_of(exc) == ("404", 404)


def test_missing_bucket_on_object_operations(s3: Any) -> None:
    name = "it-missing-" + secrets.token_hex(6)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=name, Key="k")
    assert error_of(exc) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert error_of(exc) == ("NoSuchBucket", 404)


# --- integrity -------------------------------------------------------------------------------


def test_content_md5_good(s3: Any, bucket: str) -> None:
    data = b"integrity matters"
    md5 = b64(hashlib.md5(data, usedforsecurity=False).digest())
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ContentMD5=md5)
    assert put["ETag"] == md5_etag(data)


@pytest.mark.parametrize("algorithm", list(CHECKSUMS))
def test_checksum_algorithms(s3: Any, bucket: str, algorithm: str) -> None:
    data = os.urandom(300_000)
    expected = b64(CHECKSUMS[algorithm](data))
    put = s3.put_object(Bucket=bucket, Key="c", Body=data, ChecksumAlgorithm=algorithm)
    assert put[f"Checksum{algorithm}"] == expected
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected
    assert head["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == expected
    assert read(got) == data
    plain = s3.head_object(Bucket=bucket, Key="c")
    assert f"Checksum{algorithm}" not in plain


@pytest.mark.parametrize("algorithm", list(CHECKSUMS))
def test_checksum_explicit_value(s3: Any, bucket: str, algorithm: str) -> None:
    data = b"explicit checksum body"
    right = b64(CHECKSUMS[algorithm](data))
    put = s3.put_object(Bucket=bucket, Key="c", Body=data, **{f"Checksum{algorithm}": right})
    assert put[f"Checksum{algorithm}"] == right
    wrong = b64(CHECKSUMS[algorithm](b"other bytes"))
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c", Body=b"new body", **{f"Checksum{algorithm}": wrong})
    assert error_of(exc) == ("BadDigest", 400)
    # A value that is no digest of this algorithm cannot match either (s3-tests'
    # test_object_checksum_sha256 sends "bad").
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c", Body=b"new body", **{f"Checksum{algorithm}": "bad"})
    assert error_of(exc) == ("BadDigest", 400)
    # The failed writes left the previous object in place.
    assert read(s3.get_object(Bucket=bucket, Key="c")) == data


def test_default_checksum_returned(s3: Any, bucket: str) -> None:
    # botocore sends a CRC32 by default; it is stored and answered on request.
    data = b"default checksum"
    s3.put_object(Bucket=bucket, Key="c", Body=data)
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == b64(CHECKSUMS["CRC32"](data))


# --- ranges ----------------------------------------------------------------------------------

RANGE_DATA = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture
def ranged(s3: Any, bucket: str) -> str:
    """A 1024-byte object; returns its key."""
    s3.put_object(Bucket=bucket, Key="r", Body=RANGE_DATA)
    return "r"


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
def test_range_get(s3: Any, bucket: str, ranged: str, spec: str, start: int, end: int) -> None:
    got = s3.get_object(Bucket=bucket, Key=ranged, Range=spec)
    assert status_of(got) == 206
    assert read(got) == RANGE_DATA[start : end + 1]
    assert got["ContentLength"] == end - start + 1
    assert got["ContentRange"] == f"bytes {start}-{end}/1024"
    assert got["ETag"] == md5_etag(RANGE_DATA)


def test_range_head(s3: Any, bucket: str, ranged: str) -> None:
    head = s3.head_object(Bucket=bucket, Key=ranged, Range="bytes=10-19")
    assert status_of(head) == 206
    assert head["ContentLength"] == 10
    assert head["ContentRange"] == "bytes 10-19/1024"


@pytest.mark.parametrize("spec", ["bytes=1024-", "bytes=5000-6000"])
def test_range_not_satisfiable(s3: Any, bucket: str, ranged: str, spec: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=ranged, Range=spec)
    assert error_of(exc) == ("InvalidRange", 416)
    assert exc.value.response["Error"]["ActualObjectSize"] == "1024"


# --- delete ----------------------------------------------------------------------------------


def test_delete_object_is_idempotent(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    assert status_of(s3.delete_object(Bucket=bucket, Key="d")) == 204
    assert status_of(s3.delete_object(Bucket=bucket, Key="d")) == 204
    assert status_of(s3.delete_object(Bucket=bucket, Key="never-existed")) == 204
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="d")
    assert error_of(exc) == ("404", 404)


def put_many(s3: Any, bucket: str, keys: list[str]) -> None:
    """Create small objects."""
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")


@pytest.mark.parametrize("quiet", [True, False])
def test_delete_objects_1000_keys(s3: Any, bucket: str, quiet: bool) -> None:
    keys = [f"del/{i:04d}" for i in range(1000)]
    put_many(s3, bucket, keys[:20])
    s3.put_object(Bucket=bucket, Key="survivor", Body=b"x")
    answer = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": quiet}
    )
    assert "Errors" not in answer
    if quiet:
        assert "Deleted" not in answer
    else:
        # Keys that did not exist are reported deleted too.
        assert sorted(d["Key"] for d in answer["Deleted"]) == keys
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert remaining == ["survivor"]


def test_delete_objects_too_many_keys(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]}
        )
    assert error_of(exc) == ("MalformedXML", 400)


def test_delete_objects_odd_keys(s3: Any, bucket: str) -> None:
    keys = ["a b", "ü/日本", "<&>", "x+y"]
    put_many(s3, bucket, keys)
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in answer["Deleted"]) == sorted(keys)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


# --- keys ------------------------------------------------------------------------------------

STRANGE_KEYS = [
    "../../etc/passwd",
    "a//b",
    "%2F",
    "/leading-slash",
    "trailing/",
    "./dot",
    "ü/日本語/😀",
    "sp ace",
    "plus+",
    "q?uery=1&x",
    "hash#tag",
    "back\\slash",
    "semi;colon",
    "..",
    ".",
    "a/../b",
    "~tilde",
    "*star",
    "\u00a0nbsp",
]


@pytest.mark.parametrize("key", STRANGE_KEYS)
def test_strange_keys_are_names_not_paths(s3: Any, bucket: str, key: str) -> None:
    body = ("content of " + key).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert read(s3.get_object(Bucket=bucket, Key=key)) == body
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_similar_keys_stay_distinct(s3: Any, bucket: str) -> None:
    keys = ["a/b", "a//b", "a%2Fb", "a/./b", "a/b/"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert read(s3.get_object(Bucket=bucket, Key=key)) == key.encode()
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == utf8_order(keys)


def test_key_length_limit(s3: Any, bucket: str) -> None:
    longest = "k" * 1024
    s3.put_object(Bucket=bucket, Key=longest, Body=b"x")
    assert read(s3.get_object(Bucket=bucket, Key=longest)) == b"x"
    multibyte = "é" * 512  # 1024 UTF-8 bytes
    s3.put_object(Bucket=bucket, Key=multibyte, Body=b"y")
    for too_long in ("k" * 1025, "é" * 512 + "x"):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key=too_long, Body=b"x")
        assert error_of(exc) == ("KeyTooLongError", 400)


# --- concurrency -----------------------------------------------------------------------------


# Readers, a writer and their checks race in one function on purpose: the race is the test.
def test_overwrite_is_atomic_for_readers(server: Any, bucket: str) -> None:  # noqa: C901
    old, new = os.urandom(4 * MiB), os.urandom(4 * MiB)
    writer_client, *reader_clients = (server.client() for _ in range(3))
    writer_client.put_object(Bucket=bucket, Key="hot", Body=old)
    done = threading.Event()
    seen: dict[str, int] = {"old": 0, "new": 0}
    failures: list[str] = []
    lock = threading.Lock()

    def write() -> None:
        try:
            for i in range(8):
                writer_client.put_object(Bucket=bucket, Key="hot", Body=new if i % 2 == 0 else old)
        except Exception as exc:  # reported below
            failures.append(f"writer: {exc!r}")
        finally:
            done.set()

    def read_loop(client: Any) -> None:
        reads = 0
        while not done.is_set() or reads < 3:
            try:
                response = client.get_object(Bucket=bucket, Key="hot")
                data = read(response)
            except Exception as exc:  # reported below
                failures.append(f"reader: {exc!r}")
                return
            reads += 1
            with lock:
                if data == old:
                    seen["old"] += 1
                elif data == new:
                    seen["new"] += 1
                else:
                    failures.append(f"torn read: {len(data)} bytes, etag {response['ETag']}")
            if response["ETag"] != md5_etag(data):
                failures.append("ETag does not describe the bytes returned")

    threads = [threading.Thread(target=write)]
    threads += [threading.Thread(target=read_loop, args=(c,)) for c in reader_clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert seen["old"] + seen["new"] >= 6
    assert read(writer_client.get_object(Bucket=bucket, Key="hot")) == old
