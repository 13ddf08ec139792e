"""Object operations and listings through boto3, asserted as AWS S3 answers them."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import os
import secrets
import threading
import urllib.parse
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from awscrt import checksums as crt
from botocore.exceptions import ClientError

MiB = 1024 * 1024


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a failed call."""
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def status_of(response: dict[str, Any]) -> int:
    """HTTP status of a successful call."""
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


def header_of(response: dict[str, Any], name: str) -> str | None:
    """A raw response header (lowercase name)."""
    headers: dict[str, str] = response["ResponseMetadata"]["HTTPHeaders"]
    return headers.get(name)


def read(response: dict[str, Any]) -> bytes:
    """Read and close a GetObject body."""
    body = response["Body"]
    try:
        return bytes(body.read())
    finally:
        body.close()


def md5_etag(data: bytes) -> str:
    """The ETag S3 gives a single-part upload."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def b64(raw: bytes) -> str:
    """Base64 text."""
    return base64.b64encode(raw).decode()


CHECKSUMS: dict[str, Callable[[bytes], bytes]] = {
    "CRC32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "CRC32C": lambda d: crt.crc32c(d).to_bytes(4, "big"),
    "CRC64NVME": lambda d: crt.crc64nvme(d).to_bytes(8, "big"),
    "SHA1": lambda d: hashlib.sha1(d, usedforsecurity=False).digest(),
    "SHA256": lambda d: hashlib.sha256(d).digest(),
}


def utf8_order(keys: list[str]) -> list[str]:
    """Keys as S3 sorts them: by their UTF-8 bytes."""
    return sorted(keys, key=lambda k: k.encode())


# --- listings --------------------------------------------------------------------------------

LIST_KEYS = [
    "a0",
    "a1",
    "b/0",
    "b/1",
    "b/2",
    "b/3",
    "c",
    "d/x/0",
    "d/x/1",
    "d/y/0",
    "d/z",
    "e0",
    "e1",
    "e2",
    "f/0",
    "f/1",
    "g",
    "h/0",
    "i0",
    "i1",
    "j/a/b/c",
    "k",
    "l/",
    "l/0",
    "m",
]


def expected_entries(keys: list[str], prefix: str = "", delimiter: str = "") -> list[str]:
    """What a listing returns, in order: keys, and common prefixes (ending in the delimiter)."""
    out: list[str] = []
    for key in utf8_order(keys):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if delimiter and delimiter in rest:
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if not out or out[-1] != common:
                out.append(common)
        else:
            out.append(key)
    return out


def page_entries(page: dict[str, Any]) -> list[str]:
    """Keys and common prefixes of one page, merged in listing order."""
    keys = [o["Key"] for o in page.get("Contents", [])]
    prefixes = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return utf8_order(keys + prefixes)


@pytest.fixture(scope="module")
def listing_bucket(s3: Any) -> str:
    """A bucket holding LIST_KEYS, shared by the read-only listing tests."""
    name = "it-list-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=name)
    for key in LIST_KEYS:
        s3.put_object(Bucket=name, Key=key, Body=key.encode())
    return name


def list_v2_all(s3: Any, bucket: str, **params: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow continuation tokens to the end: every entry, and every page."""
    pages: list[dict[str, Any]] = []
    entries: list[str] = []
    token: str | None = None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, **params, **extra)
        pages.append(page)
        entries += page_entries(page)
        assert page["KeyCount"] == len(page_entries(page))
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            return entries, pages
        token = page["NextContinuationToken"]
        assert len(pages) < 100


def list_v1_all(s3: Any, bucket: str, **params: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow NextMarker (or the last key when there is no delimiter) to the end."""
    pages: list[dict[str, Any]] = []
    entries: list[str] = []
    marker = ""
    while True:
        page = s3.list_objects(Bucket=bucket, Marker=marker, **params)
        pages.append(page)
        entries += page_entries(page)
        assert page["Marker"] == marker
        if not page["IsTruncated"]:
            assert "NextMarker" not in page
            return entries, pages
        if params.get("Delimiter"):
            marker = page["NextMarker"]
            assert marker == page_entries(page)[-1]
        else:
            assert "NextMarker" not in page
            marker = page["Contents"][-1]["Key"]
        assert len(pages) < 100


@pytest.mark.parametrize("max_keys", [1, 3, 1000])
@pytest.mark.parametrize(
    ("prefix", "delimiter"), [("", ""), ("", "/"), ("d/", "/"), ("b", ""), ("zz", "/")]
)
def test_list_v2_pages(
    s3: Any, listing_bucket: str, max_keys: int, prefix: str, delimiter: str
) -> None:
    entries, pages = list_v2_all(
        s3, listing_bucket, MaxKeys=max_keys, Prefix=prefix, Delimiter=delimiter
    )
    expected = expected_entries(LIST_KEYS, prefix, delimiter)
    assert entries == expected
    assert len(set(entries)) == len(entries)
    for page in pages[:-1]:
        assert len(page_entries(page)) == max_keys
        assert page["MaxKeys"] == max_keys
    assert pages[0]["Prefix"] == prefix
    if delimiter:
        assert pages[0]["Delimiter"] == delimiter


@pytest.mark.parametrize("max_keys", [1, 3, 1000])
@pytest.mark.parametrize(("prefix", "delimiter"), [("", ""), ("", "/"), ("d/", "/")])
def test_list_v1_pages(
    s3: Any, listing_bucket: str, max_keys: int, prefix: str, delimiter: str
) -> None:
    entries, pages = list_v1_all(
        s3, listing_bucket, MaxKeys=max_keys, Prefix=prefix, Delimiter=delimiter
    )
    assert entries == expected_entries(LIST_KEYS, prefix, delimiter)
    for page in pages[:-1]:
        assert len(page_entries(page)) == max_keys


def test_list_pages_ending_on_common_prefix(s3: Any, listing_bucket: str) -> None:
    first = s3.list_objects_v2(Bucket=listing_bucket, Delimiter="/", MaxKeys=3)
    assert [o["Key"] for o in first["Contents"]] == ["a0", "a1"]
    assert first["CommonPrefixes"] == [{"Prefix": "b/"}]
    assert first["IsTruncated"] is True
    second = s3.list_objects_v2(
        Bucket=listing_bucket,
        Delimiter="/",
        MaxKeys=3,
        ContinuationToken=first["NextContinuationToken"],
    )
    assert page_entries(second) == ["c", "d/", "e0"]
    v1 = s3.list_objects(Bucket=listing_bucket, Delimiter="/", MaxKeys=3)
    assert v1["NextMarker"] == "b/"
    v1_next = s3.list_objects(Bucket=listing_bucket, Delimiter="/", MaxKeys=3, Marker="b/")
    assert page_entries(v1_next) == ["c", "d/", "e0"]


def test_list_nested_common_prefixes(s3: Any, listing_bucket: str) -> None:
    top = s3.list_objects_v2(Bucket=listing_bucket, Prefix="d/", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["d/x/", "d/y/"]
    assert [o["Key"] for o in top["Contents"]] == ["d/z"]
    deeper = s3.list_objects_v2(Bucket=listing_bucket, Prefix="j/a/", Delimiter="/")
    assert [p["Prefix"] for p in deeper["CommonPrefixes"]] == ["j/a/b/"]
    assert "Contents" not in deeper
    # A key equal to a common prefix rolls up into it.
    roll = s3.list_objects_v2(Bucket=listing_bucket, Prefix="l", Delimiter="/")
    assert [p["Prefix"] for p in roll["CommonPrefixes"]] == ["l/"]
    assert "Contents" not in roll


def test_list_v2_start_after(s3: Any, listing_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="e2")
    assert page["StartAfter"] == "e2"
    assert [o["Key"] for o in page["Contents"]] == [k for k in utf8_order(LIST_KEYS) if k > "e2"]
    entries, _ = list_v2_all(s3, listing_bucket, StartAfter="c", Delimiter="/", MaxKeys=2)
    assert entries == [e for e in expected_entries(LIST_KEYS, "", "/") if e > "c"]
    empty = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="zzz")
    assert empty["KeyCount"] == 0
    assert "Contents" not in empty


def test_list_v1_marker(s3: Any, listing_bucket: str) -> None:
    page = s3.list_objects(Bucket=listing_bucket, Marker="h/0", Delimiter="/")
    assert page["Marker"] == "h/0"
    assert page_entries(page) == ["i0", "i1", "j/", "k", "l/", "m"]
    assert page["IsTruncated"] is False


def test_list_v2_fetch_owner(s3: Any, listing_bucket: str) -> None:
    plain = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=2)
    assert all("Owner" not in o for o in plain["Contents"])
    owned = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=2, FetchOwner=True)
    owner_id = s3.list_buckets()["Owner"]["ID"]
    assert [o["Owner"]["ID"] for o in owned["Contents"]] == [owner_id, owner_id]
    v1 = s3.list_objects(Bucket=listing_bucket, MaxKeys=1)
    assert v1["Contents"][0]["Owner"]["ID"] == owner_id


def test_list_entry_fields(s3: Any, listing_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=listing_bucket, Prefix="c")
    (entry,) = page["Contents"]
    assert entry["Key"] == "c"
    assert entry["Size"] == 1
    assert entry["ETag"] == md5_etag(b"c")
    assert entry["StorageClass"] == "STANDARD"
    assert entry["LastModified"] == s3.head_object(Bucket=listing_bucket, Key="c")["LastModified"]
    # botocore sends a CRC32 with every upload; listings name the algorithm.
    assert entry["ChecksumAlgorithm"] == ["CRC32"]
    assert page["Name"] == listing_bucket


def test_list_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="it-missing-" + secrets.token_hex(6))
    assert error_of(exc) == ("NoSuchBucket", 404)


def test_list_bad_continuation_token(s3: Any, listing_bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=listing_bucket, ContinuationToken="!!not a token!!")
    assert error_of(exc) == ("InvalidArgument", 400)


ODD_KEYS = [
    "with space",
    "plus+sign",
    "percent%25and%",
    "ünïcödé/日本語",
    "tab\there",
    "amp&eq=q?",
    "emoji 😀",
    "tilde~",
    "quote'\"",
    "<tag>",
]


@pytest.fixture(scope="module")
def odd_bucket(s3: Any) -> str:
    """A bucket whose keys need URL encoding."""
    name = "it-odd-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=name)
    for key in ODD_KEYS:
        s3.put_object(Bucket=name, Key=key, Body=b"x")
    return name


def test_list_encoding_type_url_decoded_by_client(s3: Any, odd_bucket: str) -> None:
    # boto3 asks for encoding-type=url on its own and decodes the answer.
    page = s3.list_objects_v2(Bucket=odd_bucket)
    assert [o["Key"] for o in page["Contents"]] == utf8_order(ODD_KEYS)
    v1 = s3.list_objects(Bucket=odd_bucket)
    assert [o["Key"] for o in v1["Contents"]] == utf8_order(ODD_KEYS)
    prefixed = s3.list_objects_v2(Bucket=odd_bucket, Prefix="ünïcödé/", Delimiter="/")
    assert [o["Key"] for o in prefixed["Contents"]] == ["ünïcödé/日本語"]
    assert prefixed["Prefix"] == "ünïcödé/"


def test_list_encoding_type_url_raw(s3: Any, odd_bucket: str) -> None:
    # Asked for explicitly, boto3 leaves the encoded keys alone: check them ourselves.
    page = s3.list_objects_v2(Bucket=odd_bucket, EncodingType="url", Prefix="ü", Delimiter="/")
    assert page["EncodingType"] == "url"
    assert urllib.parse.unquote_plus(page["Prefix"]) == "ü"
    (common,) = page["CommonPrefixes"]
    assert urllib.parse.unquote_plus(common["Prefix"]) == "ünïcödé/"
    full = s3.list_objects_v2(Bucket=odd_bucket, EncodingType="url")
    raw = [o["Key"] for o in full["Contents"]]
    for encoded in raw:
        assert encoded.isascii()
        assert " " not in encoded
    assert [urllib.parse.unquote_plus(k) for k in raw] == utf8_order(ODD_KEYS)


def test_list_invalid_encoding_type(s3: Any, odd_bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=odd_bucket, EncodingType="base64")
    assert error_of(exc) == ("InvalidArgument", 400)


def test_list_sorts_by_utf8_bytes(s3: Any, bucket: str) -> None:
    # U+E000 (3 UTF-8 bytes) sorts before U+1F600 (4 bytes); UTF-16 order would invert them.
    keys = ["b", "a", "B", "é", "\ue000x", "😀x", "~", "a/b", "a-b", "A"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == utf8_order(keys)
    assert listed.index("\ue000x") < listed.index("😀x")
    paged, _ = list_v2_all(s3, bucket, MaxKeys=3)
    assert paged == listed


def test_list_object_versions_unversioned(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="v/one", Body=b"1")
    s3.put_object(Bucket=bucket, Key="v/two", Body=b"22")
    s3.put_object(Bucket=bucket, Key="w", Body=b"")
    listed = s3.list_object_versions(Bucket=bucket, Prefix="v/")
    versions = listed["Versions"]
    assert [v["Key"] for v in versions] == ["v/one", "v/two"]
    assert [v["VersionId"] for v in versions] == ["null", "null"]
    assert all(v["IsLatest"] for v in versions)
    assert [v["Size"] for v in versions] == [1, 2]
    assert versions[0]["ETag"] == md5_etag(b"1")
    assert "DeleteMarkers" not in listed
    assert listed["IsTruncated"] is False
    grouped = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["v/"]
    assert [v["Key"] for v in grouped["Versions"]] == ["w"]


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


def test_tagging_missing_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object_tagging(Bucket=bucket, Key="nope")
    assert error_of(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=bucket, Key="nope", Tagging={"TagSet": []})
    assert error_of(exc) == ("NoSuchKey", 404)


@pytest.mark.parametrize(
    "tags",
    [
        [("k" * 129, "v")],
        [("k", "v" * 257)],
        [("aws:reserved", "v")],
        [("dup", "1"), ("dup", "2")],
    ],
    ids=["key-too-long", "value-too-long", "aws-prefix", "duplicate"],
)
def test_invalid_tags(s3: Any, bucket: str, tags: list[tuple[str, str]]) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="keep=me")
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(
            Bucket=bucket,
            Key="t",
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags]},
        )
    assert error_of(exc) == ("InvalidTag", 400)
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == tag_set({"keep": "me"})


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


# --- integrity -------------------------------------------------------------------------------


def test_content_md5_good(s3: Any, bucket: str) -> None:
    data = b"integrity matters"
    md5 = b64(hashlib.md5(data, usedforsecurity=False).digest())
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ContentMD5=md5)
    assert put["ETag"] == md5_etag(data)


def test_content_md5_mismatch(s3: Any, bucket: str) -> None:
    wrong = b64(hashlib.md5(b"something else", usedforsecurity=False).digest())
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"payload", ContentMD5=wrong)
    assert error_of(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(exc) == ("404", 404)


@pytest.mark.parametrize("value", ["not-base64!!", b64(b"short")])
def test_content_md5_malformed(s3: Any, bucket: str, value: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"payload", ContentMD5=value)
    assert error_of(exc) == ("InvalidDigest", 400)


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
    # The failed write left the previous object in place.
    assert read(s3.get_object(Bucket=bucket, Key="c")) == data


def test_checksum_malformed_value(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c", Body=b"x", ChecksumSHA256="bm90IGEgc2hhMjU2")
    assert error_of(exc) == ("InvalidRequest", 400)


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


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=abc", "bytes=9-3", "items=0-5"])
def test_range_ignored_when_unsupported_or_malformed(
    s3: Any, bucket: str, ranged: str, spec: str
) -> None:
    got = s3.get_object(Bucket=bucket, Key=ranged, Range=spec)
    assert status_of(got) == 200
    assert read(got) == RANGE_DATA
    assert "ContentRange" not in got


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


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_conditional_reads(
    s3: Any, bucket: str, cond: tuple[str, str, dt.datetime], method: str
) -> None:
    key, etag, modified = cond

    def status(**conditions: Any) -> int:
        return conditional_status(s3, bucket, key, method, **conditions)

    assert status(IfMatch=etag) == 200
    assert status(IfMatch='"0123"') == 412
    assert status(IfMatch="*") == 200
    assert status(IfNoneMatch=etag) == 304
    assert status(IfNoneMatch='"0123"') == 200
    assert status(IfNoneMatch="*") == 304
    assert status(IfModifiedSince=PAST) == 200
    assert status(IfModifiedSince=FUTURE) == 304
    assert status(IfModifiedSince=modified) == 304
    assert status(IfUnmodifiedSince=PAST) == 412
    assert status(IfUnmodifiedSince=FUTURE) == 200
    assert status(IfUnmodifiedSince=modified) == 200
    # AWS's documented combinations.
    assert status(IfMatch=etag, IfUnmodifiedSince=PAST) == 200
    assert status(IfNoneMatch=etag, IfModifiedSince=PAST) == 304
    assert status(IfMatch='"0123"', IfNoneMatch=etag) == 412
    assert status(IfNoneMatch='"0123"', IfModifiedSince=FUTURE) == 200


def test_not_modified_response_headers(
    s3: Any, bucket: str, cond: tuple[str, str, dt.datetime]
) -> None:
    key, etag, _ = cond
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key, IfNoneMatch=etag)
    assert error_of(exc) == ("304", 304)
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag


def test_conditions_on_missing_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nope", IfMatch='"abc"')
    assert error_of(exc) == ("NoSuchKey", 404)


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
    assert error_of(exc) == ("InvalidPartNumber", 416)
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


def test_copy_onto_itself(s3: Any, bucket: str, source: tuple[str, bytes, str]) -> None:
    key, data, _ = source
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key})
    assert error_of(exc) == ("InvalidRequest", 400)
    s3.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",
        Metadata={"edited": "1"},
    )
    got = s3.get_object(Bucket=bucket, Key=key)
    assert read(got) == data
    assert got["Metadata"] == {"edited": "1"}


def test_copy_source_conditions(s3: Any, bucket: str, source: tuple[str, bytes, str]) -> None:
    key, _, etag = source
    src = {"Bucket": bucket, "Key": key}
    failing: list[dict[str, Any]] = [
        {"CopySourceIfMatch": '"0123"'},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfModifiedSince": FUTURE},
        {"CopySourceIfUnmodifiedSince": PAST},
    ]
    for conditions in failing:
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, **conditions)
        assert error_of(exc) == ("PreconditionFailed", 412), conditions
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="dst")
    assert error_of(exc) == ("404", 404)
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource=src,
        CopySourceIfMatch=etag,
        CopySourceIfNoneMatch='"0123"',
    )
    assert s3.head_object(Bucket=bucket, Key="dst")["ETag"] == etag


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


def test_copy_missing_source(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "nope"})
    assert error_of(exc) == ("NoSuchKey", 404)


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


# --- conditional writes ----------------------------------------------------------------------


def test_put_if_none_match_star(s3: Any, bucket: str) -> None:
    created = s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    assert created["ETag"] == md5_etag(b"first")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert error_of(exc) == ("PreconditionFailed", 412)
    assert read(s3.get_object(Bucket=bucket, Key="once")) == b"first"


def test_put_if_match(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="v", Body=b"lost", IfMatch='"' + "0" * 32 + '"')
    assert error_of(exc) == ("PreconditionFailed", 412)
    updated = s3.put_object(Bucket=bucket, Key="v", Body=b"two", IfMatch=etag)
    assert updated["ETag"] == md5_etag(b"two")
    # The old ETag no longer matches.
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="v", Body=b"three", IfMatch=etag)
    assert error_of(exc) == ("PreconditionFailed", 412)
    assert read(s3.get_object(Bucket=bucket, Key="v")) == b"two"


def test_put_if_match_on_missing_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch='"abc"')
    assert error_of(exc) == ("NoSuchKey", 404)


def test_copy_if_none_match_star(s3: Any, bucket: str, source: tuple[str, bytes, str]) -> None:
    src = {"Bucket": bucket, "Key": source[0]}
    s3.copy_object(Bucket=bucket, Key="fresh", CopySource=src, IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="fresh", CopySource=src, IfNoneMatch="*")
    assert error_of(exc) == ("PreconditionFailed", 412)


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


def test_overwrite_is_atomic_for_readers(server: Any, bucket: str) -> None:
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
