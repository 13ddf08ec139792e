"""Helpers for object tests through boto3: reading answers, expected ETags and checksums."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from typing import Any

from awscrt import checksums as crt
from botocore.exceptions import ClientError

MiB = 1024 * 1024


def status_of(response: dict[str, Any]) -> int:
    """HTTP status of a successful call."""
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


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


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether HeadObject finds the key (any answer but 200 or 404 raises)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        if status != 404:
            raise
        return False
    return True


def get_bytes(s3: Any, bucket: str, key: str) -> bytes:
    """The whole body of an object."""
    with s3.get_object(Bucket=bucket, Key=key)["Body"] as body:
        data: bytes = body.read()
    return data
