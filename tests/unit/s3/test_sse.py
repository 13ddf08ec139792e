"""Server-side encryption headers in and out, and the bucket encryption document."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from andromede.core import errors
from andromede.core.keys import (
    BucketEncryption,
    CustomerKey,
    EncryptionMode,
    ObjectEncryption,
    SseRequest,
)
from andromede.s3 import sse, xml
from andromede.s3.handlers.encryption import parse_configuration, render_configuration
from andromede.s3.http import Request


def md5_b64(raw: bytes) -> str:
    """What S3 clients send as ``...-customer-key-MD5``."""
    return base64.b64encode(hashlib.md5(raw, usedforsecurity=False).digest()).decode()


KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()
KEY_MD5 = md5_b64(KEY)
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
C = "x-amz-server-side-encryption-customer-"
CS = "x-amz-copy-source-server-side-encryption-customer-"


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def request(**headers: str) -> Request:
    """A request with these headers (underscores in names stand for dashes)."""
    pairs = [(k.replace("_", "-").lower(), v) for k, v in headers.items()]
    return _request(pairs)


def _request(pairs: list[tuple[str, str]]) -> Request:
    return Request(
        method="PUT",
        raw_path="/b/k",
        query_string="",
        query={},
        header_list=pairs,
        headers=dict(pairs),
        bucket="b",
        key="k",
        client="127.0.0.1",
        receive=_receive,
        request_id="rid",
    )


def customer_headers(
    prefix: str = C, key: str = KEY_B64, md5: str = KEY_MD5, algorithm: str = "AES256"
) -> Request:
    return _request(
        [(prefix + "algorithm", algorithm), (prefix + "key", key), (prefix + "key-md5", md5)]
    )


def _context(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


# --- x-amz-server-side-encryption --------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("AES256", EncryptionMode.SSE_S3),
        ("aws:kms", EncryptionMode.SSE_KMS),
        ("aws:kms:dsse", EncryptionMode.SSE_KMS),
    ],
)
def test_write_modes(value: str, mode: EncryptionMode) -> None:
    assert sse.write_request(request(x_amz_server_side_encryption=value)) == SseRequest(mode)


def test_no_header_leaves_the_choice_to_the_bucket() -> None:
    assert sse.write_request(request()) == SseRequest()


@pytest.mark.parametrize("value", ["aes256", "AES128", "", "kms", "SSE-C"])
def test_unknown_method_is_invalid_argument(value: str) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        sse.write_request(request(x_amz_server_side_encryption=value))
    assert exc.value.message == "The encryption method specified is not supported"
    assert exc.value.details["ArgumentName"] == "x-amz-server-side-encryption"


def test_kms_key_id_is_passed_as_given() -> None:
    arn = f"arn:aws:kms:us-east-1:acme:key/{KEY_ID}"
    for given in (KEY_ID, arn, " " + KEY_ID + " "):
        req = request(
            x_amz_server_side_encryption="aws:kms",
            x_amz_server_side_encryption_aws_kms_key_id=given,
        )
        assert sse.write_request(req) == SseRequest(
            EncryptionMode.SSE_KMS, kms_key_id=given.strip()
        )


@pytest.mark.parametrize("mode", [None, "AES256"])
@pytest.mark.parametrize(
    "header",
    ["x-amz-server-side-encryption-aws-kms-key-id", "x-amz-server-side-encryption-context"],
)
def test_kms_headers_need_aws_kms(mode: str | None, header: str) -> None:
    pairs = [(header, KEY_ID if header.endswith("key-id") else _context({"a": "b"}))]
    if mode is not None:
        pairs.append(("x-amz-server-side-encryption", mode))
    with pytest.raises(errors.InvalidArgument) as exc:
        sse.write_request(_request(pairs))
    assert "requires HTTP header x-amz-server-side-encryption : aws:kms" in exc.value.message
    assert exc.value.details["ArgumentName"] == header


def test_valid_context_and_bucket_key_are_accepted() -> None:
    req = request(
        x_amz_server_side_encryption="aws:kms",
        x_amz_server_side_encryption_context=_context({"project": "andromede"}),
        x_amz_server_side_encryption_bucket_key_enabled="true",
    )
    assert sse.write_request(req) == SseRequest(EncryptionMode.SSE_KMS)


@pytest.mark.parametrize(
    "context",
    [
        "not base64!",
        base64.b64encode(b"not json").decode(),
        _context(["a", "list"]),
        _context({"n": 1}),
        base64.b64encode(b"\xff\xfe").decode(),
    ],
)
def test_malformed_context_is_invalid_argument(context: str) -> None:
    req = request(
        x_amz_server_side_encryption="aws:kms", x_amz_server_side_encryption_context=context
    )
    with pytest.raises(errors.InvalidArgument) as exc:
        sse.write_request(req)
    assert exc.value.details["ArgumentName"] == "x-amz-server-side-encryption-context"


def test_bucket_key_must_be_a_boolean() -> None:
    req = request(
        x_amz_server_side_encryption="aws:kms",
        x_amz_server_side_encryption_bucket_key_enabled="yes",
    )
    with pytest.raises(errors.InvalidArgument):
        sse.write_request(req)


# --- SSE-C -----------------------------------------------------------------------------------
def test_customer_key_good() -> None:
    key = sse.customer_key(customer_headers())
    assert key == CustomerKey(KEY, KEY_MD5)
    assert KEY_B64 not in repr(key)


def test_customer_key_absent() -> None:
    assert sse.customer_key(request()) is None
    assert sse.source_customer_key(customer_headers()) is None


def test_customer_write_request() -> None:
    assert sse.write_request(customer_headers()) == SseRequest(
        EncryptionMode.SSE_C, customer_key=CustomerKey(KEY, KEY_MD5)
    )


def test_copy_source_key_uses_its_own_headers() -> None:
    req = customer_headers(CS)
    assert sse.source_customer_key(req) == CustomerKey(KEY, KEY_MD5)
    assert sse.customer_key(req) is None


@pytest.mark.parametrize("prefix", [C, CS])
@pytest.mark.parametrize(
    ("missing", "words"),
    [
        ("algorithm", "valid encryption algorithm"),
        ("key", "appropriate secret key"),
        ("key-md5", "MD5 of the secret key"),
    ],
)
def test_customer_key_partial_headers(prefix: str, missing: str, words: str) -> None:
    pairs = [
        (prefix + "algorithm", "AES256"),
        (prefix + "key", KEY_B64),
        (prefix + "key-md5", KEY_MD5),
    ]
    req = _request([(n, v) for n, v in pairs if n != prefix + missing])
    with pytest.raises(errors.InvalidArgument) as exc:
        sse.customer_key(req, prefix)
    assert words in exc.value.message
    assert exc.value.details["ArgumentName"].lower() == prefix + missing


@pytest.mark.parametrize("algorithm", ["AES128", "aes256", "aws:kms", ""])
def test_customer_algorithm_must_be_aes256(algorithm: str) -> None:
    with pytest.raises(errors.InvalidEncryptionAlgorithm):
        sse.customer_key(customer_headers(algorithm=algorithm))


@pytest.mark.parametrize("raw", [b"", b"x" * 16, b"x" * 31, b"x" * 33, b"x" * 64, b"not base64!"])
def test_customer_key_must_be_32_bytes_of_base64(raw: bytes) -> None:
    encoded = raw.decode() if raw == b"not base64!" else base64.b64encode(raw).decode()
    md5 = md5_b64(raw)
    with pytest.raises(errors.InvalidArgument) as exc:
        sse.customer_key(customer_headers(key=encoded, md5=md5))
    assert exc.value.message == "The secret key was invalid for the specified algorithm."
    assert not isinstance(exc.value, errors.SseCustomerKeyMd5Mismatch)


@pytest.mark.parametrize(
    "md5",
    [
        md5_b64(b"other"),
        hashlib.md5(KEY, usedforsecurity=False).hexdigest(),  # hex, not base64
        "",
        "!!",
    ],
)
def test_customer_key_md5_mismatch(md5: str) -> None:
    with pytest.raises(errors.SseCustomerKeyMd5Mismatch):
        sse.customer_key(customer_headers(md5=md5))


def test_customer_key_md5_mismatch_on_copy_source() -> None:
    wrong = md5_b64(b"other")
    with pytest.raises(errors.SseCustomerKeyMd5Mismatch) as exc:
        sse.source_customer_key(customer_headers(CS, md5=wrong))
    assert exc.value.details["ArgumentName"].lower() == CS + "key-md5"


@pytest.mark.parametrize(
    "header",
    [
        ("x-amz-server-side-encryption", "AES256"),
        ("x-amz-server-side-encryption", "aws:kms"),
        ("x-amz-server-side-encryption-aws-kms-key-id", KEY_ID),
        ("x-amz-server-side-encryption-context", _context({})),
    ],
)
def test_customer_key_with_another_method_is_invalid(header: tuple[str, str]) -> None:
    req = customer_headers()
    req.header_list.append(header)
    req.headers[header[0]] = header[1]
    with pytest.raises(errors.InvalidArgument) as exc:
        sse.write_request(req)
    assert "incompatible" in exc.value.message


# --- reads and parts -------------------------------------------------------------------------
def test_read_key() -> None:
    assert sse.read_key(request()) is None
    assert sse.read_key(customer_headers()) == CustomerKey(KEY, KEY_MD5)


@pytest.mark.parametrize(
    "name",
    [
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-server-side-encryption-context",
    ],
)
def test_read_refuses_write_side_headers(name: str) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        sse.read_key(_request([(name, "AES256")]))
    assert exc.value.message == (
        "x-amz-server-side-encryption header is not supported for this operation."
    )


def test_read_checks_the_customer_key() -> None:
    with pytest.raises(errors.SseCustomerKeyMd5Mismatch):
        sse.read_key(customer_headers(md5=base64.b64encode(b"x" * 16).decode()))


# --- response headers ------------------------------------------------------------------------
def test_response_headers_legacy_object_has_none() -> None:
    assert sse.response_headers(None, region="eu-west-3", tenant="acme") == []


def test_response_headers_sse_s3() -> None:
    enc = ObjectEncryption(EncryptionMode.SSE_S3, key_id=KEY_ID)
    assert sse.response_headers(enc, region="eu-west-3", tenant="acme") == [
        ("x-amz-server-side-encryption", "AES256")
    ]


def test_response_headers_sse_kms_gives_the_arn() -> None:
    enc = ObjectEncryption(EncryptionMode.SSE_KMS, key_id=KEY_ID)
    assert sse.response_headers(enc, region="eu-west-3", tenant="acme") == [
        ("x-amz-server-side-encryption", "aws:kms"),
        (
            "x-amz-server-side-encryption-aws-kms-key-id",
            f"arn:aws:kms:eu-west-3:acme:key/{KEY_ID}",
        ),
    ]


def test_response_headers_sse_c_echoes_the_request_md5() -> None:
    enc = ObjectEncryption(EncryptionMode.SSE_C, None, b"h" * 32, b"s" * 16)
    customer = CustomerKey(KEY, KEY_MD5)
    headers = sse.response_headers(enc, region="r", tenant="t", customer=customer)
    assert headers == [
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        ("x-amz-server-side-encryption-customer-key-MD5", KEY_MD5),
    ]
    assert sse.response_headers(enc, region="r", tenant="t") == headers[:1]
    assert all(KEY_B64 not in v for _, v in headers)


# --- ServerSideEncryptionConfiguration ------------------------------------------------------
def _config(inner: str, rules: int = 1) -> bytes:
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    rule = f"<Rule>{inner}</Rule>"
    return (
        f"<ServerSideEncryptionConfiguration {ns}>{rule * rules}"
        "</ServerSideEncryptionConfiguration>"
    ).encode()


def _default(algorithm: str, key: str | None = None) -> str:
    key_el = f"<KMSMasterKeyID>{key}</KMSMasterKeyID>" if key is not None else ""
    return (
        "<ApplyServerSideEncryptionByDefault>"
        f"<SSEAlgorithm>{algorithm}</SSEAlgorithm>{key_el}"
        "</ApplyServerSideEncryptionByDefault>"
    )


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        (_default("AES256"), BucketEncryption(EncryptionMode.SSE_S3)),
        (_default("aws:kms"), BucketEncryption(EncryptionMode.SSE_KMS)),
        (_default("aws:kms:dsse"), BucketEncryption(EncryptionMode.SSE_KMS)),
        (_default("aws:kms", KEY_ID), BucketEncryption(EncryptionMode.SSE_KMS, KEY_ID)),
        (
            _default("aws:kms", KEY_ID) + "<BucketKeyEnabled>true</BucketKeyEnabled>",
            BucketEncryption(EncryptionMode.SSE_KMS, KEY_ID, bucket_key_enabled=True),
        ),
        (
            _default("AES256") + "<BucketKeyEnabled>false</BucketKeyEnabled>",
            BucketEncryption(EncryptionMode.SSE_S3),
        ),
    ],
)
def test_parse_configuration(inner: str, expected: BucketEncryption) -> None:
    assert parse_configuration(_config(inner)) == expected


@pytest.mark.parametrize(
    "body",
    [
        _config(_default("AES256"), rules=2),
        _config(_default("AES256"), rules=0),
        _config("<BucketKeyEnabled>true</BucketKeyEnabled>"),
        _config(_default("AES128")),
        _config(_default("")),
        _config(_default("AES256") + "<BucketKeyEnabled>maybe</BucketKeyEnabled>"),
        b"<Other><Rule>" + _default("AES256").encode() + b"</Rule></Other>",
        b"<ServerSideEncryptionConfiguration>",
    ],
)
def test_parse_configuration_malformed(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        parse_configuration(body)


def test_kms_key_only_with_aws_kms() -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        parse_configuration(_config(_default("AES256", KEY_ID)))
    assert "KMSMasterKeyID is not applicable" in exc.value.message


@pytest.mark.parametrize(
    "config",
    [
        BucketEncryption(EncryptionMode.SSE_S3),
        BucketEncryption(EncryptionMode.SSE_KMS, f"arn:aws:kms:r:t:key/{KEY_ID}", True),
    ],
)
def test_render_configuration_round_trips(config: BucketEncryption) -> None:
    body = render_configuration(config)
    root = xml.parse(body)
    assert root.find("Rule/BucketKeyEnabled") is not None
    assert parse_configuration(body) == config
