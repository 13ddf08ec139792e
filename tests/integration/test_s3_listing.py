"""Object listings (V1, V2, versions) through boto3, asserted as AWS S3 answers them."""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.s3errors import error_of
from support.s3objects import md5_etag, utf8_order

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
    # V1 encodes its keys, markers and common prefixes but not its Prefix, as S3 does (and
    # botocore decodes V1's Prefix no more than S3 encodes it).
    v1_prefixed = s3.list_objects(Bucket=odd_bucket, Prefix="ünïcödé/", Delimiter="/")
    assert v1_prefixed["Prefix"] == "ünïcödé/"
    assert s3.list_objects(Bucket=odd_bucket, Prefix="\n")["Prefix"] == "\n"


def test_list_v2_empty_continuation_token(s3: Any, odd_bucket: str) -> None:
    """An empty token is no token: the listing starts at the beginning, the token echoed."""
    page = s3.list_objects_v2(Bucket=odd_bucket, ContinuationToken="")
    assert page["ContinuationToken"] == ""
    assert [o["Key"] for o in page["Contents"]] == utf8_order(ODD_KEYS)


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
