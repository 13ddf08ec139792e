"""Authentication against the real server: credentials, signatures, presigned URLs.

boto3 covers what real clients send; the small SigV4 signer in ``support.sigv4`` builds what
boto3 cannot: tampered requests, skewed clocks, header and query auth together.
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from support.s3errors import error_code as _code
from support.s3objects import get_bytes as _get
from support.s3objects import object_exists as _exists
from support.server import Server
from support.sigv4 import Signer
from support.sigv4 import send as _send
from support.sigv4 import send_signed as _send_signed
from support.sigv4 import sha256_hex as _sha256


# --- whole-payload modes by hand ----------------------------------------------------------------
def test_unsigned_payload_by_hand(server: Server, s3: Any, signer: Signer, bucket: str) -> None:
    signed = signer.sign("PUT", f"/{bucket}/k", payload="UNSIGNED-PAYLOAD")
    assert _send_signed(server, signed, b"anything").status == 200
    assert _get(s3, bucket, "k") == b"anything"


def test_content_sha256_mismatch(server: Server, s3: Any, signer: Signer, bucket: str) -> None:
    signed = signer.sign("PUT", f"/{bucket}/k", payload=_sha256(b"what was signed"))
    reply = _send_signed(server, signed, b"what was sent")
    assert reply.status == 400
    assert reply.code == "XAmzContentSHA256Mismatch"
    assert not _exists(s3, bucket, "k")


def test_missing_content_sha256_is_invalid_request(
    server: Server, signer: Signer, bucket: str
) -> None:
    signed = signer.sign("GET", f"/{bucket}")
    headers = {k: v for k, v in signed.headers.items() if k != "x-amz-content-sha256"}
    reply = _send(server, "GET", signed.target, headers)
    assert reply.status == 400
    assert reply.code == "InvalidRequest"


def test_unsigned_amz_header_is_access_denied(
    server: Server, s3: Any, signer: Signer, bucket: str
) -> None:
    signed = signer.sign("PUT", f"/{bucket}/k", payload=_sha256(b"x"))
    reply = _send(server, "PUT", signed.target, {**signed.headers, "x-amz-meta-sneaky": "1"}, b"x")
    assert reply.status == 403
    assert reply.code == "AccessDenied"
    assert not _exists(s3, bucket, "k")


def test_changed_signed_header_is_signature_does_not_match(
    server: Server, s3: Any, signer: Signer, bucket: str
) -> None:
    signed = signer.sign(
        "PUT", f"/{bucket}/k", headers={"x-amz-meta-colour": "blue"}, payload=_sha256(b"x")
    )
    reply = _send(
        server, "PUT", signed.target, {**signed.headers, "x-amz-meta-colour": "red"}, b"x"
    )
    assert reply.status == 403
    assert reply.code == "SignatureDoesNotMatch"
    assert not _exists(s3, bucket, "k")


def test_header_and_query_auth_together_is_refused(
    server: Server, s3: Any, signer: Signer, bucket: str
) -> None:
    url = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket})
    signed = signer.sign("GET", f"/{bucket}")
    reply = _send(server, "GET", url.split(str(server.port), 1)[1], signed.headers)
    assert reply.status == 400
    assert reply.code == "InvalidArgument"


# --- credentials ------------------------------------------------------------------------------
def test_wrong_secret_is_signature_does_not_match(server: Server, bucket: str) -> None:
    client = server.client(server.access_key, "not-the-secret")
    with pytest.raises(ClientError) as exc:
        client.list_objects_v2(Bucket=bucket)
    assert _code(exc) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert _code(exc) == "SignatureDoesNotMatch"


def test_unknown_key_is_invalid_access_key_id(server: Server, bucket: str) -> None:
    client = server.client("AKNOSUCHKEY000000000", "whatever")
    with pytest.raises(ClientError) as exc:
        client.list_buckets()
    assert _code(exc) == "InvalidAccessKeyId"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_anonymous_is_access_denied(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    anonymous = server.client(signature_version=UNSIGNED)
    calls: list[Callable[[], object]] = [
        anonymous.list_buckets,
        lambda: anonymous.list_objects_v2(Bucket=bucket),
        lambda: anonymous.get_object(Bucket=bucket, Key="k"),
        lambda: anonymous.put_object(Bucket=bucket, Key="k2", Body=b"x"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "AccessDenied"
    with pytest.raises(urllib.error.HTTPError) as http_exc:
        urllib.request.urlopen(f"{server.endpoint}/{bucket}/k", timeout=10)
    with http_exc.value as error:
        assert error.code == 403
        assert b"<Code>AccessDenied</Code>" in error.read()


@pytest.mark.parametrize("minutes", [20, -20])
def test_clock_skew_is_request_time_too_skewed(
    server: Server, signer: Signer, bucket: str, minutes: int
) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    reply = _send_signed(server, signer.sign("GET", f"/{bucket}", when=when))
    assert reply.status == 403
    assert reply.code == "RequestTimeTooSkewed"


def test_clock_skew_with_boto3(
    server: Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.auth
    import botocore.crt.auth

    # With awscrt installed botocore signs through the CRT signer; patch both clocks.
    for module in (botocore.auth, botocore.crt.auth):
        real = module.get_current_datetime
        monkeypatch.setattr(
            module,
            "get_current_datetime",
            lambda real=real, **kw: real(**kw) - dt.timedelta(minutes=20),
        )
    with pytest.raises(ClientError) as exc:
        server.client().list_objects_v2(Bucket=bucket)
    assert _code(exc) == "RequestTimeTooSkewed"


def test_signature_request_matches_with_own_signer(
    server: Server, s3: Any, signer: Signer, bucket: str
) -> None:
    # The hand-made signer agrees with the server (so its failures elsewhere mean something).
    s3.put_object(Bucket=bucket, Key="a b/ü", Body=b"x")
    reply = _send_signed(
        server, signer.sign("GET", f"/{bucket}", query=[("list-type", "2"), ("prefix", "a b/")])
    )
    assert reply.status == 200
    assert "<Key>a b/ü</Key>".encode() in reply.body


# --- presigned URLs -----------------------------------------------------------------------------
def test_presigned_get_and_put(s3: Any, bucket: str) -> None:
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300
    )
    with httpx.Client(timeout=30) as client:
        assert client.put(put_url, content=b"via presigned PUT").status_code == 200
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300
    )
    with urllib.request.urlopen(get_url, timeout=10) as response:
        assert response.read() == b"via presigned PUT"


def test_expired_presigned_url_is_access_denied(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.auth
    import botocore.crt.auth

    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    # Signed ten seconds ago for one second: expired, without waiting for it to expire. Both
    # botocore clocks, as in test_clock_skew_with_boto3.
    for module in (botocore.auth, botocore.crt.auth):
        real = module.get_current_datetime
        monkeypatch.setattr(
            module,
            "get_current_datetime",
            lambda real=real, **kw: real(**kw) - dt.timedelta(seconds=10),
        )
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )
    monkeypatch.undo()
    with httpx.Client(timeout=30) as client:
        response = client.get(url)
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.content


def test_presigned_upload_part(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    url = s3.generate_presigned_url(
        "upload_part",
        Params={"Bucket": bucket, "Key": "k", "UploadId": upload_id, "PartNumber": 1},
    )
    with httpx.Client(timeout=30) as client:
        response = client.put(url, content=b"part via presigned URL")
    assert response.status_code == 200
    etag = response.headers["etag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert _get(s3, bucket, "k") == b"part via presigned URL"


def test_presigned_expiry_over_seven_days_is_refused(s3: Any, bucket: str) -> None:
    url = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket}, ExpiresIn=604_801)
    with httpx.Client(timeout=30) as client:
        response = client.get(url)
    assert response.status_code == 400
    assert b"<Code>AuthorizationQueryParametersError</Code>" in response.content


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.replace("X-Amz-Expires=300", "X-Amz-Expires=301"),
        lambda url: url.replace("/k?", "/other?"),
        lambda url: url + "&extra=1",
    ],
    ids=["expires", "key", "extra-param"],
)
def test_tampered_presigned_url_is_signature_does_not_match(
    s3: Any, bucket: str, tamper: Callable[[str], str]
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object(Bucket=bucket, Key="other", Body=b"y")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300
    )
    tampered = tamper(url)
    assert tampered != url
    with httpx.Client(timeout=30) as client:
        response = client.get(tampered)
    assert response.status_code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in response.content
