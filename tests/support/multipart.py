"""Helpers for the multipart upload tests: seeded data, and the calls with their boilerplate."""

from __future__ import annotations

import random
import zlib
from typing import Any

from support.s3objects import MiB

PART = 5 * MiB


def random_data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def read_object(s3: Any, bucket: str, key: str, **kwargs: Any) -> tuple[dict[str, Any], bytes]:
    response = s3.get_object(Bucket=bucket, Key=key, **kwargs)
    with response["Body"] as body:
        return response, body.read()


def upload_part(
    s3: Any, bucket: str, key: str, upload_id: str, number: int, data: bytes, **kwargs: Any
) -> dict[str, Any]:
    response: dict[str, Any] = s3.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, **kwargs
    )
    return response


def complete_upload(
    s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], **kwargs: Any
) -> dict[str, Any]:
    response: dict[str, Any] = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **kwargs
    )
    return response


def create_upload(s3: Any, bucket: str, key: str, **kwargs: Any) -> str:
    return str(s3.create_multipart_upload(Bucket=bucket, Key=key, **kwargs)["UploadId"])
