"""Server-side encryption through the S3 API: CopyObject and UploadPartCopy between every
pair of modes (none, SSE-S3, SSE-KMS, SSE-C), and a copy onto itself that changes only the
encryption."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.multipart import PART, random_data
from support.s3errors import error_of
from support.s3objects import read
from support.server import Server
from support.sse import (
    MODES,
    assert_reports,
    copy_source_args,
    new_customer_key,
    read_args,
    sse_args,
)


# --- copies ----------------------------------------------------------------------------------
@pytest.mark.parametrize("target_mode", MODES)
@pytest.mark.parametrize("source_mode", MODES)
def test_copy_between_modes(
    s3: Any, bucket: str, kms_key: dict[str, Any], source_mode: str, target_mode: str
) -> None:
    source_key, target_key = new_customer_key(), new_customer_key()
    data = random_data(70_000, 5)
    kms_id = kms_key["key_id"]
    s3.put_object(Bucket=bucket, Key="src", Body=data, **sse_args(source_mode, kms_id, source_key))
    copied = s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        **copy_source_args(source_mode, source_key),
        **sse_args(target_mode, kms_id, target_key),
    )
    arn = kms_key["arn"] if target_mode == "aws:kms" else None
    assert_reports(copied, target_mode, arn=arn, key=target_key)
    got = s3.get_object(Bucket=bucket, Key="dst", **read_args(target_mode, target_key))
    assert read(got) == data
    assert_reports(got, target_mode, arn=arn, key=target_key)
    assert got["ETag"] == copied["CopyObjectResult"]["ETag"]


def test_copy_of_sse_c_source_needs_its_key(s3: Any, bucket: str) -> None:
    key = new_customer_key()
    s3.put_object(Bucket=bucket, Key="src", Body=b"secret", **sse_args("SSE-C", key=key))
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert error_of(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            **copy_source_args("SSE-C", new_customer_key()),
        )
    assert error_of(exc) == ("AccessDenied", 403)
    # The target's SSE-C key is not the source's.
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            **sse_args("SSE-C", key=key),
        )
    assert error_of(exc) == ("InvalidRequest", 400)


@pytest.mark.parametrize(("before", "after"), [("AES256", "aws:kms"), ("aws:kms", "SSE-C")])
def test_copy_onto_itself_changing_only_encryption(
    s3: Any, bucket: str, kms_key: dict[str, Any], before: str, after: str
) -> None:
    key = new_customer_key()
    s3.put_object(
        Bucket=bucket,
        Key="k",
        Body=b"same bytes",
        Metadata={"colour": "blue"},
        **sse_args(before, kms_key["key_id"]),
    )
    copied = s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource={"Bucket": bucket, "Key": "k"},
        **sse_args(after, kms_key["key_id"], key),
    )
    arn = kms_key["arn"] if after == "aws:kms" else None
    assert_reports(copied, after, arn=arn, key=key)
    got = s3.get_object(Bucket=bucket, Key="k", **read_args(after, key))
    assert read(got) == b"same bytes"
    assert got["Metadata"] == {"colour": "blue"}
    assert_reports(got, after, arn=arn, key=key)


def test_copy_onto_itself_without_change_is_still_illegal(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"})
    assert error_of(exc) == ("InvalidRequest", 400)


@pytest.mark.parametrize("target_mode", ["none", "SSE-C"])
def test_upload_part_copy_from_an_sse_c_source(s3: Any, bucket: str, target_mode: str) -> None:
    source_key, target_key = new_customer_key(), new_customer_key()
    data = random_data(PART + 100, 21)
    s3.put_object(Bucket=bucket, Key="src", Body=data, **sse_args("SSE-C", key=source_key))
    target = sse_args(target_mode, key=target_key)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp", **target)["UploadId"]
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, CopySource=source, **target
        )
    assert error_of(exc) == ("InvalidRequest", 400)
    listed = []
    for number, byte_range in enumerate([f"bytes=0-{PART - 1}", f"bytes={PART}-{PART + 99}"], 1):
        part = s3.upload_part_copy(
            Bucket=bucket,
            Key="mp",
            UploadId=upload_id,
            PartNumber=number,
            CopySource=source,
            CopySourceRange=byte_range,
            **copy_source_args("SSE-C", source_key),
            **target,
        )
        if target_mode == "SSE-C":
            assert_reports(part, "SSE-C", key=target_key)
        listed.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": listed}
    )
    got = s3.get_object(Bucket=bucket, Key="mp", **read_args(target_mode, target_key))
    assert read(got) == data
    assert_reports(got, target_mode, key=target_key)


# --- bucket default encryption ---------------------------------------------------------------
def _rule(algorithm: str, key_id: str | None = None, bucket_key: bool = False) -> dict[str, Any]:
    default: dict[str, Any] = {"SSEAlgorithm": algorithm}
    if key_id is not None:
        default["KMSMasterKeyID"] = key_id
    return {
        "Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": bucket_key}]
    }


def test_bucket_encryption_round_trip(s3: Any, bucket: str, kms_key: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_of(exc) == ("ServerSideEncryptionConfigurationNotFoundError", 404)

    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration=_rule("aws:kms", kms_key["arn"], bucket_key=True),
    )
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert len(rules) == 1
    default = rules[0]["ApplyServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "aws:kms"
    assert default["KMSMasterKeyID"] in (kms_key["arn"], kms_key["key_id"])
    assert rules[0]["BucketKeyEnabled"] is True

    # A write without a header gets the bucket's key; a header still wins.
    put = s3.put_object(Bucket=bucket, Key="default", Body=b"d")
    assert_reports(put, "aws:kms", arn=kms_key["arn"])
    assert_reports(s3.head_object(Bucket=bucket, Key="default"), "aws:kms", arn=kms_key["arn"])
    assert_reports(
        s3.put_object(Bucket=bucket, Key="explicit", Body=b"e", ServerSideEncryption="AES256"),
        "AES256",
    )
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    assert_reports(upload, "aws:kms", arn=kms_key["arn"])
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])

    deleted = s3.delete_bucket_encryption(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_of(exc) == ("ServerSideEncryptionConfigurationNotFoundError", 404)
    assert_reports(s3.put_object(Bucket=bucket, Key="after", Body=b"a"), "AES256")
    # Objects written under the old default keep their key.
    got = s3.get_object(Bucket=bucket, Key="default")
    assert read(got) == b"d"
    assert_reports(got, "aws:kms", arn=kms_key["arn"])


def test_bucket_encryption_aes256_and_default_kms_key(
    s3: Any, bucket: str, default_key_arn: str
) -> None:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_rule("AES256"))
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert_reports(s3.put_object(Bucket=bucket, Key="k", Body=b"x"), "AES256")

    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_rule("aws:kms"))
    assert_reports(s3.put_object(Bucket=bucket, Key="k", Body=b"x"), "aws:kms", arn=default_key_arn)


def test_bucket_encryption_refuses_bad_keys(
    s3: Any, bucket: str, foreign_key: dict[str, Any]
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration=_rule("aws:kms", foreign_key["arn"])
        )
    assert error_of(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration=_rule("aws:kms", str(uuid.uuid4()))
        )
    assert error_of(exc) == ("KMS.NotFoundException", 400)
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration=_rule("AES256", str(uuid.uuid4()))
        )
    assert error_of(exc) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_rule("DES"))
    assert error_of(exc) == ("MalformedXML", 400)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_of(exc)[1] == 404


def _encryption_calls(bucket: str) -> list[tuple[str, dict[str, Any]]]:
    """The three bucket-encryption operations, as (boto3 method, arguments)."""
    return [
        ("get_bucket_encryption", {"Bucket": bucket}),
        ("delete_bucket_encryption", {"Bucket": bucket}),
        (
            "put_bucket_encryption",
            {"Bucket": bucket, "ServerSideEncryptionConfiguration": _rule("AES256")},
        ),
    ]


def test_bucket_encryption_of_a_missing_bucket(s3: Any) -> None:
    missing = "it-missing-" + secrets.token_hex(6)
    for method, args in _encryption_calls(missing):
        with pytest.raises(ClientError) as exc:
            getattr(s3, method)(**args)
        assert error_of(exc) == ("NoSuchBucket", 404), method


def test_another_tenant_cannot_touch_the_bucket_encryption(
    server: Server, s3: Any, bucket: str
) -> None:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_rule("AES256"))
    _, access, secret = server.new_tenant()
    other = server.client(access, secret)
    for method, args in _encryption_calls(bucket):
        with pytest.raises(ClientError) as exc:
            getattr(other, method)(**args)
        assert error_of(exc) == ("AccessDenied", 403), method
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
