"""Multipart uploads against the real server, driven by boto3.

Every expected ETag and checksum is computed here from the bytes sent, never read back from
the server first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from support.multipart import PART
from support.multipart import complete_upload as _complete
from support.multipart import crc32 as _crc32
from support.multipart import create_upload as _create
from support.multipart import random_data as _data
from support.multipart import read_object as _read
from support.multipart import upload_part as _upload
from support.s3errors import error_code as _code
from support.s3objects import MiB
from support.s3objects import b64 as _b64


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _etag(data: bytes) -> str:
    return f'"{_md5(data).hex()}"'


def _multipart_etag(parts: list[bytes]) -> str:
    joined = b"".join(_md5(p) for p in parts)
    return f'"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(parts)}"'


# --- the basic flow ---------------------------------------------------------------------------
def test_upload_and_complete_has_multipart_etag(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 1), _data(PART, 2), _data(1234, 3)]
    created = s3.create_multipart_upload(
        Bucket=bucket, Key="big", ContentType="text/plain", Metadata={"colour": "blue"}
    )
    assert created["Bucket"] == bucket
    assert created["Key"] == "big"
    upload_id = created["UploadId"]
    listed = []
    for number, data in enumerate(parts, start=1):
        response = _upload(s3, bucket, "big", upload_id, number, data)
        assert response["ETag"] == _etag(data)
        listed.append({"PartNumber": number, "ETag": response["ETag"]})

    done = _complete(s3, bucket, "big", upload_id, listed)

    expected = _multipart_etag(parts)
    assert done["ETag"] == expected
    assert done["Key"] == "big"
    assert done["Bucket"] == bucket
    response, body = _read(s3, bucket, "big")
    assert body == b"".join(parts)
    assert response["ETag"] == expected
    assert response["ContentLength"] == 2 * PART + 1234
    assert response["ContentType"] == "text/plain"
    assert response["Metadata"] == {"colour": "blue"}
    assert s3.head_object(Bucket=bucket, Key="big")["ETag"] == expected
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []


def test_get_by_part_number_and_range_across_parts(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 4), _data(100, 5)]
    upload_id = _create(s3, bucket, "k")
    etags = [_upload(s3, bucket, "k", upload_id, n, d)["ETag"] for n, d in enumerate(parts, 1)]
    _complete(
        s3, bucket, "k", upload_id, [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
    )

    first, body = _read(s3, bucket, "k", PartNumber=1)
    assert body == parts[0]
    assert first["PartsCount"] == 2
    second, body = _read(s3, bucket, "k", PartNumber=2)
    assert body == parts[1]
    assert second["ContentRange"] == f"bytes {PART}-{PART + 99}/{PART + 100}"
    _, body = _read(s3, bucket, "k", Range=f"bytes={PART - 10}-{PART + 9}")
    assert body == parts[0][-10:] + parts[1][:10]


# --- completion errors ------------------------------------------------------------------------
@pytest.fixture
def two_parts(s3: Any, bucket: str) -> tuple[str, list[dict[str, Any]]]:
    """An upload of key ``k`` with two full-size parts: (upload id, part list)."""
    upload_id = _create(s3, bucket, "k")
    listed = []
    for number in (1, 2):
        etag = _upload(s3, bucket, "k", upload_id, number, _data(PART, 10 + number))["ETag"]
        listed.append({"PartNumber": number, "ETag": etag})
    return upload_id, listed


def test_a_retried_completion_gets_the_same_answer(
    s3: Any, bucket: str, two_parts: tuple[str, list[dict[str, Any]]]
) -> None:
    """An SDK that lost the response of a completion sends it again: S3 answers the same
    result (s3-tests' test_multipart_upload), and the object's checksum is the same whichever
    way it is asked for."""
    upload_id, listed = two_parts
    done = _complete(s3, bucket, "k", upload_id, listed)
    again = _complete(s3, bucket, "k", upload_id, listed)
    assert (again["ETag"], again["ChecksumType"]) == (done["ETag"], "FULL_OBJECT")
    assert again["ChecksumCRC64NVME"] == done["ChecksumCRC64NVME"]
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == done["ChecksumCRC64NVME"]
    attributes = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Checksum"])
    assert attributes["Checksum"]["ChecksumCRC64NVME"] == done["ChecksumCRC64NVME"]
    (listed_object,) = s3.list_objects_v2(Bucket=bucket, Prefix="k")["Contents"]
    assert listed_object["ChecksumAlgorithm"] == ["CRC64NVME"]
    assert len(s3.list_objects_v2(Bucket=bucket)["Contents"]) == 1
    s3.put_object(Bucket=bucket, Key="k", Body=b"overwritten")
    with pytest.raises(ClientError) as exc:  # the object it made is no longer the key's
        _complete(s3, bucket, "k", upload_id, listed)
    assert _code(exc) == "NoSuchUpload"


def test_empty_part_list_is_malformed_xml(s3: Any, bucket: str) -> None:
    upload_id = _create(s3, bucket, "k")
    _upload(s3, bucket, "k", upload_id, 1, b"data")
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "k", upload_id, [])
    assert _code(exc) == "MalformedXML"


# --- UploadPartCopy ---------------------------------------------------------------------------
def test_upload_part_copy_whole_and_ranged(s3: Any, bucket: str) -> None:
    source = _data(PART + 4096, 30)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    upload_id = _create(s3, bucket, "dst")

    whole = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"},
    )
    ranged = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=upload_id,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceRange="bytes=100-1123",
    )
    assert whole["CopyPartResult"]["ETag"] == _etag(source)
    assert ranged["CopyPartResult"]["ETag"] == _etag(source[100:1124])
    assert "LastModified" in ranged["CopyPartResult"]
    listed = s3.list_parts(Bucket=bucket, Key="dst", UploadId=upload_id)["Parts"]
    assert [p["Size"] for p in listed] == [len(source), 1024]

    done = _complete(
        s3,
        bucket,
        "dst",
        upload_id,
        [
            {"PartNumber": 1, "ETag": whole["CopyPartResult"]["ETag"]},
            {"PartNumber": 2, "ETag": ranged["CopyPartResult"]["ETag"]},
        ],
    )
    assert done["ETag"] == _multipart_etag([source, source[100:1124]])
    assert _read(s3, bucket, "dst")[1] == source + source[100:1124]


def test_upload_part_copy_range_across_parts_with_conditions(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 31), _data(2048, 32)]
    upload_id = _create(s3, bucket, "src")
    etags = [_upload(s3, bucket, "src", upload_id, n, d)["ETag"] for n, d in enumerate(parts, 1)]
    done = _complete(
        s3, bucket, "src", upload_id, [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
    )
    source = b"".join(parts)
    copy_id = _create(s3, bucket, "dst")
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="dst",
            UploadId=copy_id,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceIfMatch='"0000"',
        )
    assert _code(exc) == "PreconditionFailed"

    copied = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=copy_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceIfMatch=done["ETag"],
        CopySourceRange=f"bytes={PART - 100}-{PART + 99}",
    )
    assert copied["CopyPartResult"]["ETag"] == _etag(source[PART - 100 : PART + 100])
    _complete(
        s3, bucket, "dst", copy_id, [{"PartNumber": 1, "ETag": copied["CopyPartResult"]["ETag"]}]
    )
    assert _read(s3, bucket, "dst")[1] == source[PART - 100 : PART + 100]


# --- ListParts --------------------------------------------------------------------------------
def test_list_parts_paginates(s3: Any, bucket: str) -> None:
    upload_id = _create(s3, bucket, "k")
    etags = {n: _upload(s3, bucket, "k", upload_id, n, b"p" * n)["ETag"] for n in range(1, 6)}

    seen: list[int] = []
    marker = 0
    pages = 0
    while True:
        page = s3.list_parts(
            Bucket=bucket, Key="k", UploadId=upload_id, MaxParts=2, PartNumberMarker=marker
        )
        pages += 1
        assert page["MaxParts"] == 2
        assert page["UploadId"] == upload_id
        for part in page["Parts"]:
            assert part["ETag"] == etags[part["PartNumber"]]
            assert part["Size"] == part["PartNumber"]
            seen.append(part["PartNumber"])
        if not page["IsTruncated"]:
            break
        assert page["NextPartNumberMarker"] == seen[-1]
        marker = page["NextPartNumberMarker"]
    assert seen == [1, 2, 3, 4, 5]
    assert pages == 3

    everything = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    assert [p["PartNumber"] for p in everything["Parts"]] == [1, 2, 3, 4, 5]
    assert everything["IsTruncated"] is False


# --- ListMultipartUploads ---------------------------------------------------------------------
def test_list_multipart_uploads_prefix_delimiter_and_markers(s3: Any, bucket: str) -> None:
    keys = ["a/1", "a/2", "a/b/3", "b", "c"]
    ids = {key: _create(s3, bucket, key) for key in keys}
    same = [_create(s3, bucket, "m") for _ in range(3)]

    everything = s3.list_multipart_uploads(Bucket=bucket)
    listed = [(u["Key"], u["UploadId"]) for u in everything["Uploads"]]
    assert [k for k, _ in listed] == ["a/1", "a/2", "a/b/3", "b", "c", "m", "m", "m"]
    assert [u for k, u in listed if k == "m"] == same  # oldest first for one key
    assert everything["IsTruncated"] is False

    by_prefix = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in by_prefix["Uploads"]] == ["a/1", "a/2", "a/b/3"]
    assert by_prefix["Prefix"] == "a/"

    grouped = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in grouped["Uploads"]] == ["b", "c", "m", "m", "m"]
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/"]

    nested = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [u["Key"] for u in nested["Uploads"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["a/b/"]

    after_key = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="b")
    assert [u["Key"] for u in after_key["Uploads"]] == ["c", "m", "m", "m"]

    after_id = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="m", UploadIdMarker=same[0])
    assert [u["UploadId"] for u in after_id["Uploads"]] == same[1:]
    assert ids["a/1"] not in [u["UploadId"] for u in after_id["Uploads"]]


def test_list_multipart_uploads_paginates(s3: Any, bucket: str) -> None:
    created = [("k" + str(i), _create(s3, bucket, "k" + str(i))) for i in range(5)]
    seen: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2, **kwargs)
        assert page["MaxUploads"] == 2
        assert len(page.get("Uploads", [])) <= 2
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        kwargs = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert seen == created


def test_list_multipart_uploads_paginates_over_common_prefixes(s3: Any, bucket: str) -> None:
    for key in ["a/1", "a/2", "a/3", "a/4", "b", "c/1", "c/2", "c/3", "d"]:
        _create(s3, bucket, key)
    keys: list[str] = []
    prefixes: list[str] = []
    pages = s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2}
    )
    for page in pages:
        entries = page.get("Uploads", []) + page.get("CommonPrefixes", [])
        assert 0 < len(entries) <= 2
        keys += [u["Key"] for u in page.get("Uploads", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert prefixes == ["a/", "c/"]
    assert keys == ["b", "d"]


# --- boto3's transfer manager -----------------------------------------------------------------
def test_upload_file_and_download_file_multipart(s3: Any, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    data = _data(40 * MiB, 60)
    source.write_bytes(data)
    config = TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=4
    )

    s3.upload_file(str(source), bucket, "big.bin", Config=config)

    head = s3.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    chunks = [data[i : i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]
    assert head["ETag"] == _multipart_etag(chunks)
    # s3transfer declares CRC32 on CreateMultipartUpload and sends each part's CRC32.
    assert head["ChecksumCRC32"] == _b64(_crc32(b"".join(_crc32(c) for c in chunks))) + "-5"
    target = tmp_path / "target.bin"
    s3.download_file(bucket, "big.bin", str(target), Config=config)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
