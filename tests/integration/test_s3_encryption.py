"""Server-side encryption through the S3 API: SSE-S3, SSE-KMS, SSE-C and bucket defaults.

Driven by boto3 against the real server; raw signed requests only where boto3 cannot send
what is tested (a wrong key MD5, a header an operation refuses).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.multipart import PART, random_data
from support.s3errors import error_of
from support.s3objects import read
from support.server import Server
from support.sse import (
    C_PREFIX,
    assert_reports,
    md5_b64,
    new_customer_key,
    raw_request,
    read_args,
    sse_args,
)
from support.waiting import wait_until

SSE_HEADER = "x-amz-server-side-encryption"


# --- SSE-S3 and SSE-KMS ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["none", "AES256"])
def test_sse_s3_put_get_head(s3: Any, bucket: str, mode: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"hello", **sse_args(mode))
    assert_reports(put, mode)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert read(got) == b"hello"
    assert_reports(got, mode)
    assert_reports(s3.head_object(Bucket=bucket, Key="k"), mode)


def test_kms_without_key_id_uses_the_tenant_default_key(
    s3: Any, bucket: str, default_key_arn: str
) -> None:
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"kms", ServerSideEncryption="aws:kms")
    assert_reports(put, "aws:kms", arn=default_key_arn)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert read(got) == b"kms"
    assert_reports(got, "aws:kms", arn=default_key_arn)
    assert_reports(s3.head_object(Bucket=bucket, Key="k"), "aws:kms", arn=default_key_arn)


@pytest.mark.parametrize("given", ["key_id", "arn"])
def test_kms_with_a_tenant_key_echoes_its_arn(
    s3: Any, bucket: str, kms_key: dict[str, Any], given: str
) -> None:
    put = s3.put_object(
        Bucket=bucket,
        Key="k",
        Body=b"kms",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=kms_key[given],
    )
    assert_reports(put, "aws:kms", arn=kms_key["arn"])
    got = s3.get_object(Bucket=bucket, Key="k")
    assert read(got) == b"kms"
    assert_reports(got, "aws:kms", arn=kms_key["arn"])
    assert_reports(s3.head_object(Bucket=bucket, Key="k"), "aws:kms", arn=kms_key["arn"])


# Another worker may serve a key's cached state this long after a change (kms_cache_seconds).
KEY_STATE_STALENESS = 2.0


def _eventually_error(call: Callable[[], object]) -> tuple[str, int]:
    """The error ``call`` fails with once every worker has seen a key's new state."""

    def error() -> tuple[str, int] | None:
        try:
            call()
        except ClientError as exc:
            response = exc.response
            return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]
        return None

    return wait_until(error, KEY_STATE_STALENESS + 3, 0.2, "a refusal after the key changed")


def _eventually(call: Callable[[], bytes]) -> bytes:
    """What ``call`` returns once every worker has seen a key's new state."""

    def served() -> tuple[bytes] | None:
        try:
            return (call(),)  # a tuple: an empty body is an answer too
        except ClientError:
            return None

    return wait_until(served, KEY_STATE_STALENESS + 3, 0.2, "the object served again")[0]


def test_unsupported_method_is_invalid_argument(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES128")
    assert error_of(exc) == ("InvalidArgument", 400)


def test_kms_key_id_without_aws_kms_is_invalid(
    s3: Any, bucket: str, kms_key: dict[str, Any]
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(
            Bucket=bucket,
            Key="k",
            Body=b"x",
            ServerSideEncryption="AES256",
            SSEKMSKeyId=kms_key["key_id"],
        )
    assert error_of(exc) == ("InvalidArgument", 400)


def test_get_refuses_the_encryption_header(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    reply = raw_request(server, "GET", f"/{bucket}/k", {"x-amz-server-side-encryption": "AES256"})
    assert (reply.status, reply.code) == (400, "InvalidArgument")


# --- SSE-C -----------------------------------------------------------------------------------
def test_sse_c_put_get_head_and_range(s3: Any, bucket: str) -> None:
    key = new_customer_key()
    data = random_data(100_000, 1)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, **sse_args("SSE-C", key=key))
    assert_reports(put, "SSE-C", key=key)
    got = s3.get_object(Bucket=bucket, Key="k", **read_args("SSE-C", key))
    assert read(got) == data
    assert_reports(got, "SSE-C", key=key)
    head = s3.head_object(Bucket=bucket, Key="k", **read_args("SSE-C", key))
    assert head["ContentLength"] == len(data)
    assert_reports(head, "SSE-C", key=key)
    ranged = s3.get_object(
        Bucket=bucket, Key="k", Range="bytes=70000-70099", **read_args("SSE-C", key)
    )
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert read(ranged) == data[70000:70100]


def test_sse_c_bad_md5_is_invalid_argument(server: Server, s3: Any, bucket: str) -> None:
    key = new_customer_key()
    headers = {
        C_PREFIX + "algorithm": "AES256",
        C_PREFIX + "key": base64.b64encode(key).decode(),
        C_PREFIX + "key-MD5": md5_b64(b"not the key"),
    }
    reply = raw_request(server, "PUT", f"/{bucket}/k", headers, b"data")
    assert (reply.status, reply.code) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(exc)[1] == 404
    # The same on a read.
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", **sse_args("SSE-C", key=key))
    reply = raw_request(server, "GET", f"/{bucket}/k", headers)
    assert (reply.status, reply.code) == (400, "InvalidArgument")


def test_sse_c_key_of_the_wrong_size_is_invalid_argument(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", **sse_args("SSE-C", key=b"k" * 16))
    assert error_of(exc) == ("InvalidArgument", 400)


def test_sse_c_with_another_method_is_invalid_argument(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(
            Bucket=bucket,
            Key="k",
            Body=b"x",
            ServerSideEncryption="AES256",
            **sse_args("SSE-C", key=new_customer_key()),
        )
    assert error_of(exc) == ("InvalidArgument", 400)


# --- SSE-C multipart -------------------------------------------------------------------------
def test_sse_c_multipart_round_trip(s3: Any, bucket: str) -> None:
    key = new_customer_key()
    sse_c = sse_args("SSE-C", key=key)
    parts = [random_data(PART, 11), random_data(1000, 12)]
    created = s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse_c)
    assert_reports(created, "SSE-C", key=key)
    upload_id = created["UploadId"]
    listed = []
    for number, data in enumerate(parts, start=1):
        response = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number, Body=data, **sse_c
        )
        assert_reports(response, "SSE-C", key=key)
        listed.append({"PartNumber": number, "ETag": response["ETag"]})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": listed}
    )
    assert done.get("ServerSideEncryption") is None
    got = s3.get_object(Bucket=bucket, Key="mp", **sse_c)
    assert read(got) == b"".join(parts)
    assert_reports(got, "SSE-C", key=key)
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2, **sse_c)
    assert read(second) == parts[1]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="mp")
    assert error_of(exc) == ("InvalidRequest", 400)


@pytest.mark.parametrize("mode", ["none", "AES256", "aws:kms"])
def test_multipart_reports_its_encryption(
    s3: Any, bucket: str, kms_key: dict[str, Any], mode: str
) -> None:
    kms_id = kms_key["key_id"] if mode == "aws:kms" else None
    created = s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse_args(mode, kms_id))
    arn = kms_key["arn"] if mode == "aws:kms" else None
    assert_reports(created, mode, arn=arn)
    upload_id = created["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"one")
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert_reports(done, mode, arn=arn)
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert read(got) == b"one"
    assert_reports(got, mode, arn=arn)


def test_parts_take_the_uploads_encryption_headers(server: Server, s3: Any, bucket: str) -> None:
    """SDKs repeat the upload's SSE headers on its parts and its completion (s3-tests does):
    S3 takes them, the upload's encryption governing; a header that is no encryption is
    still refused."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="AES256")[
        "UploadId"
    ]
    query = [("partNumber", "1"), ("uploadId", upload_id)]
    bad = raw_request(server, "PUT", f"/{bucket}/mp", {SSE_HEADER: "rot13"}, b"part", query=query)
    assert (bad.status, bad.code) == (400, "InvalidArgument")
    part = raw_request(server, "PUT", f"/{bucket}/mp", {SSE_HEADER: "AES256"}, b"part", query=query)
    assert part.status == 200
    assert part.headers[SSE_HEADER] == "AES256"
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"]
    body = (
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        f"<ETag>{listed[0]['ETag']}</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    done = raw_request(
        server,
        "POST",
        f"/{bucket}/mp",
        {SSE_HEADER: "AES256"},
        body,
        query=[("uploadId", upload_id)],
    )
    assert done.status == 200
    assert done.headers[SSE_HEADER] == "AES256"
    assert read(s3.get_object(Bucket=bucket, Key="mp")) == b"part"
