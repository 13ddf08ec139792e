"""Multipart upload checksums against the real server: composite and full-object CRC32,
CRC64NVME and SHA256, and wrong or mismatched part checksums.

Every expected checksum is computed here from the bytes sent, never read back from the
server first.
"""

from __future__ import annotations

import hashlib
from typing import Any

from awscrt import checksums

from support.multipart import PART
from support.multipart import complete_upload as _complete
from support.multipart import crc32 as _crc32
from support.multipart import create_upload as _create
from support.multipart import random_data as _data
from support.multipart import read_object as _read
from support.multipart import upload_part as _upload
from support.s3objects import b64 as _b64


def _crc64nvme(data: bytes) -> bytes:
    return int(checksums.crc64nvme(data)).to_bytes(8, "big")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- checksums --------------------------------------------------------------------------------
def _checksummed_upload(
    s3: Any, bucket: str, key: str, algorithm: str, parts: list[bytes], **create: Any
) -> tuple[str, list[dict[str, Any]]]:
    upload_id = _create(s3, bucket, key, ChecksumAlgorithm=algorithm, **create)
    field = "Checksum" + algorithm
    listed = []
    for number, data in enumerate(parts, start=1):
        response = _upload(s3, bucket, key, upload_id, number, data, ChecksumAlgorithm=algorithm)
        listed.append({"PartNumber": number, "ETag": response["ETag"], field: response[field]})
    return upload_id, listed


def test_crc32_composite_checksum(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 40), _data(777, 41)]
    created = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")
    assert created["ChecksumAlgorithm"] == "CRC32"
    upload_id = created["UploadId"]
    listed = []
    for number, data in enumerate(parts, start=1):
        response = _upload(s3, bucket, "k", upload_id, number, data, ChecksumAlgorithm="CRC32")
        assert response["ChecksumCRC32"] == _b64(_crc32(data))  # echoed per part
        listed.append(
            {
                "PartNumber": number,
                "ETag": response["ETag"],
                "ChecksumCRC32": response["ChecksumCRC32"],
            }
        )
    page = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    assert [p["ChecksumCRC32"] for p in page["Parts"]] == [_b64(_crc32(p)) for p in parts]

    done = _complete(s3, bucket, "k", upload_id, listed)

    composite = _b64(_crc32(b"".join(_crc32(p) for p in parts))) + "-2"
    assert done["ChecksumCRC32"] == composite
    assert done["ChecksumType"] == "COMPOSITE"
    response, body = _read(s3, bucket, "k", ChecksumMode="ENABLED")
    assert body == b"".join(parts)
    assert response["ChecksumCRC32"] == composite
    assert response["ChecksumType"] == "COMPOSITE"
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == composite
    attributes = s3.get_object_attributes(
        Bucket=bucket, Key="k", ObjectAttributes=["Checksum", "ObjectParts"]
    )
    assert attributes["Checksum"]["ChecksumCRC32"] == composite
    assert attributes["ObjectParts"]["TotalPartsCount"] == 2


def test_crc32_full_object_checksum(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 42), _data(PART, 43), _data(5, 44)]
    whole = b"".join(parts)
    upload_id, listed = _checksummed_upload(
        s3, bucket, "k", "CRC32", parts, ChecksumType="FULL_OBJECT"
    )

    done = _complete(
        s3,
        bucket,
        "k",
        upload_id,
        listed,
        ChecksumType="FULL_OBJECT",
        ChecksumCRC32=_b64(_crc32(whole)),
    )

    assert done["ChecksumCRC32"] == _b64(_crc32(whole))
    assert done["ChecksumType"] == "FULL_OBJECT"
    # botocore checks the body against a full-object checksum it is given.
    response, body = _read(s3, bucket, "k", ChecksumMode="ENABLED")
    assert body == whole
    assert response["ChecksumCRC32"] == _b64(_crc32(whole))
    assert response["ChecksumType"] == "FULL_OBJECT"


def test_crc64nvme_full_object_checksum(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 47), _data(PART + 3, 48)]
    whole = b"".join(parts)
    upload_id, listed = _checksummed_upload(s3, bucket, "k", "CRC64NVME", parts)
    assert [p["ChecksumCRC64NVME"] for p in listed] == [_b64(_crc64nvme(p)) for p in parts]

    done = _complete(s3, bucket, "k", upload_id, listed)

    assert done["ChecksumCRC64NVME"] == _b64(_crc64nvme(whole))
    assert done["ChecksumType"] == "FULL_OBJECT"
    response, body = _read(s3, bucket, "k", ChecksumMode="ENABLED")
    assert body == whole
    assert response["ChecksumCRC64NVME"] == _b64(_crc64nvme(whole))


def test_sha256_composite_checksum(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 49), _data(PART, 50), _data(1, 51)]
    upload_id, listed = _checksummed_upload(s3, bucket, "k", "SHA256", parts)
    assert [p["ChecksumSHA256"] for p in listed] == [_b64(_sha256(p)) for p in parts]

    done = _complete(s3, bucket, "k", upload_id, listed)

    composite = _b64(_sha256(b"".join(_sha256(p) for p in parts))) + "-3"
    assert done["ChecksumSHA256"] == composite
    assert done["ChecksumType"] == "COMPOSITE"
    response, body = _read(s3, bucket, "k", ChecksumMode="ENABLED")
    assert body == b"".join(parts)
    assert response["ChecksumSHA256"] == composite


def test_object_parts_in_get_object_attributes(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 52), _data(PART, 53), _data(9, 54)]
    upload_id, listed = _checksummed_upload(s3, bucket, "k", "SHA256", parts)
    _complete(s3, bucket, "k", upload_id, listed)

    first = s3.get_object_attributes(
        Bucket=bucket, Key="k", ObjectAttributes=["ObjectParts", "ObjectSize"], MaxParts=2
    )
    assert first["ObjectSize"] == 2 * PART + 9
    page = first["ObjectParts"]
    assert page["TotalPartsCount"] == 3
    assert page["IsTruncated"] is True
    assert [(p["PartNumber"], p["Size"], p["ChecksumSHA256"]) for p in page["Parts"]] == [
        (1, PART, _b64(_sha256(parts[0]))),
        (2, PART, _b64(_sha256(parts[1]))),
    ]
    rest = s3.get_object_attributes(
        Bucket=bucket,
        Key="k",
        ObjectAttributes=["ObjectParts"],
        PartNumberMarker=page["NextPartNumberMarker"],
    )["ObjectParts"]
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    assert rest["IsTruncated"] is False
