"""Server-side encryption through the S3 API: SSE-S3, SSE-KMS, SSE-C and bucket defaults.

Driven by boto3 against the real server; raw signed requests only where boto3 cannot send
what is tested (a wrong key MD5, a header an operation refuses).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from andromede.cli.client import AdminClient
from support.multipart import PART, random_data
from support.s3errors import error_of
from support.s3objects import read
from support.server import Server
from support.sigv4 import Reply, Signer, send_signed, sha256_hex

ARN = re.compile(r"^arn:aws:kms:[^:]+:[^:]+:key/[0-9a-f-]{36}$")
C_PREFIX = "x-amz-server-side-encryption-customer-"
MODES = ("none", "AES256", "aws:kms", "SSE-C")


def _md5_b64(raw: bytes) -> str:
    return base64.b64encode(hashlib.md5(raw, usedforsecurity=False).digest()).decode()


def _new_customer_key() -> bytes:
    return secrets.token_bytes(32)


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def admin(server: Server) -> AdminClient:
    """The admin API with the root credentials (an operator)."""
    return AdminClient(server.endpoint, server.access_key, server.secret_key)


@pytest.fixture(scope="module")
def tenant(s3: Any) -> str:
    """The root's tenant: the canonical owner of the buckets it creates."""
    name = "it-owner-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=name)
    return str(s3.get_bucket_acl(Bucket=name)["Owner"]["ID"])


def _create_key(admin: AdminClient, tenant: str) -> dict[str, Any]:
    out: dict[str, Any] = admin.request(
        "POST", "/v1/kms/keys", {"tenant": tenant, "description": "integration test"}
    )
    return out


@pytest.fixture(scope="module")
def kms_key(admin: AdminClient, tenant: str) -> dict[str, Any]:
    """A key of the root's tenant, made through the admin API: ``key_id`` and ``arn``."""
    return _create_key(admin, tenant)


@pytest.fixture(scope="module")
def default_key_arn(admin: AdminClient, tenant: str) -> str:
    """The ARN of the tenant's default key (what aws:kms without a key id uses)."""
    keys = admin.request("GET", "/v1/kms/keys", params={"tenant": tenant})
    defaults = [k["arn"] for k in keys if k["alias"] == "default"]
    assert len(defaults) == 1, keys
    return str(defaults[0])


@pytest.fixture(scope="module")
def foreign_key(server: Server, admin: AdminClient) -> dict[str, Any]:
    """A key of another tenant."""
    other, _, _ = server.new_tenant()
    return _create_key(admin, other)


# --- helpers ---------------------------------------------------------------------------------
def _sse_args(mode: str, kms_key_id: str | None = None, key: bytes | None = None) -> dict[str, Any]:
    """boto3 parameters asking for ``mode`` on a write (boto3 adds the SSE-C key's MD5)."""
    if mode == "none":
        return {}
    if mode == "SSE-C":
        assert key is not None
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    args: dict[str, Any] = {"ServerSideEncryption": mode}
    if mode == "aws:kms" and kms_key_id is not None:
        args["SSEKMSKeyId"] = kms_key_id
    return args


def _read_args(mode: str, key: bytes | None) -> dict[str, Any]:
    return _sse_args("SSE-C", key=key) if mode == "SSE-C" else {}


def _copy_source_args(mode: str, key: bytes | None) -> dict[str, Any]:
    if mode != "SSE-C":
        return {}
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def _assert_reports(
    response: dict[str, Any], mode: str, *, arn: str | None = None, key: bytes | None = None
) -> None:
    """The response's encryption fields say ``mode`` (no header at all means SSE-S3)."""
    if mode in ("none", "AES256"):
        assert response.get("ServerSideEncryption") == "AES256"
        assert "SSEKMSKeyId" not in response
        assert "SSECustomerAlgorithm" not in response
    elif mode == "aws:kms":
        assert response.get("ServerSideEncryption") == "aws:kms"
        assert ARN.match(response["SSEKMSKeyId"]), response["SSEKMSKeyId"]
        if arn is not None:
            assert response["SSEKMSKeyId"] == arn
        assert "SSECustomerAlgorithm" not in response
    else:
        assert "ServerSideEncryption" not in response
        assert response["SSECustomerAlgorithm"] == "AES256"
        assert key is not None
        assert response["SSECustomerKeyMD5"] == _md5_b64(key)


def _raw(
    server: Server,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    query: list[tuple[str, str]] | None = None,
) -> Reply:
    signer = Signer(server, server.access_key, server.secret_key)
    signed = signer.sign(method, path, query=query, headers=headers, payload=sha256_hex(body))
    return send_signed(server, signed, body)


# --- SSE-S3 and SSE-KMS ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["none", "AES256"])
def test_sse_s3_put_get_head(s3: Any, bucket: str, mode: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"hello", **_sse_args(mode))
    _assert_reports(put, mode)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert read(got) == b"hello"
    _assert_reports(got, mode)
    _assert_reports(s3.head_object(Bucket=bucket, Key="k"), mode)


def test_kms_without_key_id_uses_the_tenant_default_key(
    s3: Any, bucket: str, default_key_arn: str
) -> None:
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"kms", ServerSideEncryption="aws:kms")
    _assert_reports(put, "aws:kms", arn=default_key_arn)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert read(got) == b"kms"
    _assert_reports(got, "aws:kms", arn=default_key_arn)
    _assert_reports(s3.head_object(Bucket=bucket, Key="k"), "aws:kms", arn=default_key_arn)


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
    _assert_reports(put, "aws:kms", arn=kms_key["arn"])
    got = s3.get_object(Bucket=bucket, Key="k")
    assert read(got) == b"kms"
    _assert_reports(got, "aws:kms", arn=kms_key["arn"])
    _assert_reports(s3.head_object(Bucket=bucket, Key="k"), "aws:kms", arn=kms_key["arn"])


def test_kms_key_of_another_tenant_is_access_denied(
    s3: Any, bucket: str, foreign_key: dict[str, Any]
) -> None:
    for given in (foreign_key["key_id"], foreign_key["arn"]):
        with pytest.raises(ClientError) as exc:
            s3.put_object(
                Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=given
            )
        assert error_of(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(exc)[1] == 404


def test_unknown_kms_key_is_not_found(s3: Any, bucket: str) -> None:
    for given in (str(uuid.uuid4()), "not-a-key-id"):
        with pytest.raises(ClientError) as exc:
            s3.put_object(
                Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=given
            )
        assert error_of(exc) == ("KMS.NotFoundException", 400)


# Another worker may serve a key's cached state this long after a change (kms_cache_seconds).
KEY_STATE_STALENESS = 2.0


def _eventually_error(call: Callable[[], object]) -> tuple[str, int]:
    """The error ``call`` fails with once every worker has seen a key's new state."""
    deadline = time.monotonic() + KEY_STATE_STALENESS + 3
    while True:
        try:
            call()
        except ClientError as exc:
            response = exc.response
            return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]
        assert time.monotonic() < deadline, "still served after the key state changed"
        time.sleep(0.2)


def _eventually(call: Callable[[], bytes]) -> bytes:
    """What ``call`` returns once every worker has seen a key's new state."""
    deadline = time.monotonic() + KEY_STATE_STALENESS + 3
    while True:
        try:
            return call()
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_disabled_kms_key_refuses_writes_and_reads(
    s3: Any, bucket: str, admin: AdminClient, tenant: str
) -> None:
    key = _create_key(admin, tenant)
    sse_kms = _sse_args("aws:kms", key["key_id"])
    s3.put_object(Bucket=bucket, Key="k", Body=b"sealed", **sse_kms)
    admin.request("POST", f"/v1/kms/keys/{key['key_id']}/disable")
    try:
        put = _eventually_error(lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"", **sse_kms))
        assert put == ("KMS.DisabledException", 400)
        get = _eventually_error(lambda: read(s3.get_object(Bucket=bucket, Key="k")))
        assert get == ("KMS.DisabledException", 400)
    finally:
        admin.request("POST", f"/v1/kms/keys/{key['key_id']}/enable")
    assert _eventually(lambda: read(s3.get_object(Bucket=bucket, Key="k"))) == b"sealed"


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
    reply = _raw(server, "GET", f"/{bucket}/k", {"x-amz-server-side-encryption": "AES256"})
    assert (reply.status, reply.code) == (400, "InvalidArgument")


# --- SSE-C -----------------------------------------------------------------------------------
def test_sse_c_put_get_head_and_range(s3: Any, bucket: str) -> None:
    key = _new_customer_key()
    data = random_data(100_000, 1)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, **_sse_args("SSE-C", key=key))
    _assert_reports(put, "SSE-C", key=key)
    got = s3.get_object(Bucket=bucket, Key="k", **_read_args("SSE-C", key))
    assert read(got) == data
    _assert_reports(got, "SSE-C", key=key)
    head = s3.head_object(Bucket=bucket, Key="k", **_read_args("SSE-C", key))
    assert head["ContentLength"] == len(data)
    _assert_reports(head, "SSE-C", key=key)
    ranged = s3.get_object(
        Bucket=bucket, Key="k", Range="bytes=70000-70099", **_read_args("SSE-C", key)
    )
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert read(ranged) == data[70000:70100]


def test_sse_c_get_without_the_key_is_refused(s3: Any, bucket: str) -> None:
    key = _new_customer_key()
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret", **_sse_args("SSE-C", key=key))
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_of(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(exc)[1] == 400


def test_sse_c_object_attributes_need_the_key(s3: Any, bucket: str) -> None:
    key = _new_customer_key()
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret", **_sse_args("SSE-C", key=key))

    def attributes(customer: bytes | None) -> dict[str, Any]:
        # boto3 encodes the SSE-C key of this operation only if told to: do it by hand.
        extra = (
            {}
            if customer is None
            else {
                "SSECustomerAlgorithm": "AES256",
                "SSECustomerKey": base64.b64encode(customer).decode(),
                "SSECustomerKeyMD5": _md5_b64(customer),
            }
        )
        out: dict[str, Any] = s3.get_object_attributes(
            Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"], **extra
        )
        return out

    with pytest.raises(ClientError) as exc:
        attributes(None)
    assert error_of(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        attributes(b"x" * 32)
    assert error_of(exc) == ("AccessDenied", 403)
    assert attributes(key)["ObjectSize"] == len(b"secret")


def test_sse_c_wrong_key_is_access_denied(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret", **_sse_args("SSE-C", key=b"a" * 32))
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", **_read_args("SSE-C", b"b" * 32))
    assert error_of(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k", **_read_args("SSE-C", b"b" * 32))
    assert error_of(exc)[1] == 403


def test_customer_key_on_an_object_without_sse_c_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"plain")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", **_read_args("SSE-C", _new_customer_key()))
    assert error_of(exc)[1] == 400


def test_sse_c_bad_md5_is_invalid_argument(server: Server, s3: Any, bucket: str) -> None:
    key = _new_customer_key()
    headers = {
        C_PREFIX + "algorithm": "AES256",
        C_PREFIX + "key": base64.b64encode(key).decode(),
        C_PREFIX + "key-MD5": _md5_b64(b"not the key"),
    }
    reply = _raw(server, "PUT", f"/{bucket}/k", headers, b"data")
    assert (reply.status, reply.code) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(exc)[1] == 404
    # The same on a read.
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", **_sse_args("SSE-C", key=key))
    reply = _raw(server, "GET", f"/{bucket}/k", headers)
    assert (reply.status, reply.code) == (400, "InvalidArgument")


def test_sse_c_key_of_the_wrong_size_is_invalid_argument(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", **_sse_args("SSE-C", key=b"k" * 16))
    assert error_of(exc) == ("InvalidArgument", 400)


def test_sse_c_with_another_method_is_invalid_argument(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(
            Bucket=bucket,
            Key="k",
            Body=b"x",
            ServerSideEncryption="AES256",
            **_sse_args("SSE-C", key=_new_customer_key()),
        )
    assert error_of(exc) == ("InvalidArgument", 400)


# --- SSE-C multipart -------------------------------------------------------------------------
def test_sse_c_multipart_round_trip(s3: Any, bucket: str) -> None:
    key = _new_customer_key()
    sse_c = _sse_args("SSE-C", key=key)
    parts = [random_data(PART, 11), random_data(1000, 12)]
    created = s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse_c)
    _assert_reports(created, "SSE-C", key=key)
    upload_id = created["UploadId"]
    listed = []
    for number, data in enumerate(parts, start=1):
        response = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number, Body=data, **sse_c
        )
        _assert_reports(response, "SSE-C", key=key)
        listed.append({"PartNumber": number, "ETag": response["ETag"]})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": listed}
    )
    assert done.get("ServerSideEncryption") is None
    got = s3.get_object(Bucket=bucket, Key="mp", **sse_c)
    assert read(got) == b"".join(parts)
    _assert_reports(got, "SSE-C", key=key)
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2, **sse_c)
    assert read(second) == parts[1]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="mp")
    assert error_of(exc) == ("InvalidRequest", 400)


def test_sse_c_part_with_another_key_is_access_denied(s3: Any, bucket: str) -> None:
    created = s3.create_multipart_upload(
        Bucket=bucket, Key="mp", **_sse_args("SSE-C", key=_new_customer_key())
    )
    upload_id = created["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(
            Bucket=bucket,
            Key="mp",
            UploadId=upload_id,
            PartNumber=1,
            Body=b"part",
            **_sse_args("SSE-C", key=_new_customer_key()),
        )
    assert error_of(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"part")
    assert error_of(exc) == ("InvalidRequest", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)


@pytest.mark.parametrize("mode", ["none", "AES256", "aws:kms"])
def test_multipart_reports_its_encryption(
    s3: Any, bucket: str, kms_key: dict[str, Any], mode: str
) -> None:
    kms_id = kms_key["key_id"] if mode == "aws:kms" else None
    created = s3.create_multipart_upload(Bucket=bucket, Key="mp", **_sse_args(mode, kms_id))
    arn = kms_key["arn"] if mode == "aws:kms" else None
    _assert_reports(created, mode, arn=arn)
    upload_id = created["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"one")
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    _assert_reports(done, mode, arn=arn)
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert read(got) == b"one"
    _assert_reports(got, mode, arn=arn)


def test_upload_part_refuses_the_encryption_header(server: Server, s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    reply = _raw(
        server,
        "PUT",
        f"/{bucket}/mp",
        {"x-amz-server-side-encryption": "AES256"},
        b"part",
        query=[("partNumber", "1"), ("uploadId", upload_id)],
    )
    assert (reply.status, reply.code) == (400, "InvalidArgument")
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)


# --- copies ----------------------------------------------------------------------------------
@pytest.mark.parametrize("target_mode", MODES)
@pytest.mark.parametrize("source_mode", MODES)
def test_copy_between_modes(
    s3: Any, bucket: str, kms_key: dict[str, Any], source_mode: str, target_mode: str
) -> None:
    source_key, target_key = _new_customer_key(), _new_customer_key()
    data = random_data(70_000, 5)
    kms_id = kms_key["key_id"]
    s3.put_object(Bucket=bucket, Key="src", Body=data, **_sse_args(source_mode, kms_id, source_key))
    copied = s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        **_copy_source_args(source_mode, source_key),
        **_sse_args(target_mode, kms_id, target_key),
    )
    arn = kms_key["arn"] if target_mode == "aws:kms" else None
    _assert_reports(copied, target_mode, arn=arn, key=target_key)
    got = s3.get_object(Bucket=bucket, Key="dst", **_read_args(target_mode, target_key))
    assert read(got) == data
    _assert_reports(got, target_mode, arn=arn, key=target_key)
    assert got["ETag"] == copied["CopyObjectResult"]["ETag"]


def test_copy_of_sse_c_source_needs_its_key(s3: Any, bucket: str) -> None:
    key = _new_customer_key()
    s3.put_object(Bucket=bucket, Key="src", Body=b"secret", **_sse_args("SSE-C", key=key))
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert error_of(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            **_copy_source_args("SSE-C", _new_customer_key()),
        )
    assert error_of(exc) == ("AccessDenied", 403)
    # The target's SSE-C key is not the source's.
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            **_sse_args("SSE-C", key=key),
        )
    assert error_of(exc) == ("InvalidRequest", 400)


@pytest.mark.parametrize(("before", "after"), [("AES256", "aws:kms"), ("aws:kms", "SSE-C")])
def test_copy_onto_itself_changing_only_encryption(
    s3: Any, bucket: str, kms_key: dict[str, Any], before: str, after: str
) -> None:
    key = _new_customer_key()
    s3.put_object(
        Bucket=bucket,
        Key="k",
        Body=b"same bytes",
        Metadata={"colour": "blue"},
        **_sse_args(before, kms_key["key_id"]),
    )
    copied = s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource={"Bucket": bucket, "Key": "k"},
        **_sse_args(after, kms_key["key_id"], key),
    )
    arn = kms_key["arn"] if after == "aws:kms" else None
    _assert_reports(copied, after, arn=arn, key=key)
    got = s3.get_object(Bucket=bucket, Key="k", **_read_args(after, key))
    assert read(got) == b"same bytes"
    assert got["Metadata"] == {"colour": "blue"}
    _assert_reports(got, after, arn=arn, key=key)


def test_copy_onto_itself_without_change_is_still_illegal(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"})
    assert error_of(exc) == ("InvalidRequest", 400)


@pytest.mark.parametrize("target_mode", ["none", "SSE-C"])
def test_upload_part_copy_from_an_sse_c_source(s3: Any, bucket: str, target_mode: str) -> None:
    source_key, target_key = _new_customer_key(), _new_customer_key()
    data = random_data(PART + 100, 21)
    s3.put_object(Bucket=bucket, Key="src", Body=data, **_sse_args("SSE-C", key=source_key))
    target = _sse_args(target_mode, key=target_key)
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
            **_copy_source_args("SSE-C", source_key),
            **target,
        )
        if target_mode == "SSE-C":
            _assert_reports(part, "SSE-C", key=target_key)
        listed.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": listed}
    )
    got = s3.get_object(Bucket=bucket, Key="mp", **_read_args(target_mode, target_key))
    assert read(got) == data
    _assert_reports(got, target_mode, key=target_key)


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
    _assert_reports(put, "aws:kms", arn=kms_key["arn"])
    _assert_reports(s3.head_object(Bucket=bucket, Key="default"), "aws:kms", arn=kms_key["arn"])
    _assert_reports(
        s3.put_object(Bucket=bucket, Key="explicit", Body=b"e", ServerSideEncryption="AES256"),
        "AES256",
    )
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    _assert_reports(upload, "aws:kms", arn=kms_key["arn"])
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])

    deleted = s3.delete_bucket_encryption(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_of(exc) == ("ServerSideEncryptionConfigurationNotFoundError", 404)
    _assert_reports(s3.put_object(Bucket=bucket, Key="after", Body=b"a"), "AES256")
    # Objects written under the old default keep their key.
    got = s3.get_object(Bucket=bucket, Key="default")
    assert read(got) == b"d"
    _assert_reports(got, "aws:kms", arn=kms_key["arn"])


def test_bucket_encryption_aes256_and_default_kms_key(
    s3: Any, bucket: str, default_key_arn: str
) -> None:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_rule("AES256"))
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    _assert_reports(s3.put_object(Bucket=bucket, Key="k", Body=b"x"), "AES256")

    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_rule("aws:kms"))
    _assert_reports(
        s3.put_object(Bucket=bucket, Key="k", Body=b"x"), "aws:kms", arn=default_key_arn
    )


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
