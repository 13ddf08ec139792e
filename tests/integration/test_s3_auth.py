"""Authentication and request validation against the real server.

boto3 covers what real clients send; a small SigV4 signer written here from the AWS docs (not
the server's code) builds what boto3 cannot: the signed ``aws-chunked`` variants, tampered
requests, skewed clocks, ``Expect: 100-continue`` by hand, and malformed bodies.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import socket
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError
from tests.support.server import Server

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
REGION = "us-east-1"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _quote(text: str, safe: str = "") -> str:
    return quote(text, safe="-_.~" + safe)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@dataclass
class Reply:
    """A raw HTTP response, read to its end."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        """The S3 error code in the body, if any."""
        if not self.body.startswith(b"<"):
            return None
        return ET.fromstring(self.body).findtext("Code")  # noqa: S314 - our own server's reply


@dataclass
class Signed:
    """A request signed by :class:`Signer`: what to send, and the seed signature."""

    method: str
    target: str
    headers: dict[str, str]
    signature: str
    amz_date: str
    scope: str
    key: bytes = field(repr=False)


@dataclass
class Signer:
    """SigV4 with the Authorization header, as the AWS docs describe it."""

    server: Server
    access_key: str
    secret_key: str

    def sign(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        payload: str = EMPTY_SHA256,
        when: dt.datetime | None = None,
    ) -> Signed:
        """Sign; every header given is signed, with host, x-amz-date and x-amz-content-sha256."""
        now = when or dt.datetime.now(dt.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
        all_headers = {k.lower(): v for k, v in (headers or {}).items()}
        all_headers.update(
            {
                "host": f"127.0.0.1:{self.server.port}",
                "x-amz-date": amz_date,
                "x-amz-content-sha256": payload,
            }
        )
        names = sorted(all_headers)
        canonical_headers = "".join(f"{n}:{' '.join(all_headers[n].split())}\n" for n in names)
        pairs = sorted((_quote(k), _quote(v)) for k, v in query or [])
        canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
        canonical = "\n".join(
            [
                method,
                _quote(path, safe="/"),
                canonical_query,
                canonical_headers,
                ";".join(names),
                payload,
            ]
        )
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, _sha256(canonical.encode())])
        key = ("AWS4" + self.secret_key).encode()
        for part in (amz_date[:8], REGION, "s3", "aws4_request"):
            key = _hmac(key, part)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        target = _quote(path, safe="/") + ("?" + canonical_query if canonical_query else "")
        return Signed(method, target, all_headers, signature, amz_date, scope, key)


def _send(
    server: Server, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def _send_signed(server: Server, signed: Signed, body: bytes = b"") -> Reply:
    return _send(server, signed.method, signed.target, signed.headers, body)


@pytest.fixture(scope="module")
def signer(server: Server) -> Signer:
    """The root key's signer."""
    return Signer(server, server.access_key, server.secret_key)


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        if status != 404:
            raise
        return False
    return True


def _get(s3: Any, bucket: str, key: str) -> bytes:
    with s3.get_object(Bucket=bucket, Key=key)["Body"] as body:
        data: bytes = body.read()
    return data


# --- what boto3 sends -------------------------------------------------------------------------
def _record_payload_modes(client: Any) -> list[str]:
    seen: list[str] = []

    def record(request: Any, **_: Any) -> None:
        if request.method in ("PUT", "POST"):
            seen.append(request.headers["x-amz-content-sha256"].decode())

    client.meta.events.register("before-send.s3", record)
    return seen


def _trailer_over_http(params: dict[str, Any], **_: Any) -> None:
    # botocore sends checksums as aws-chunked trailers only over TLS; this is the switch it
    # flips there, so the plain-HTTP test server sees what a TLS endpoint would.
    algorithm = params.get("context", {}).get("checksum", {}).get("request_algorithm")
    if algorithm is not None:
        algorithm["in"] = "trailer"


@pytest.mark.parametrize(
    ("calculation", "trailer", "expected"),
    [
        ("when_supported", True, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        ("when_supported", False, "sha256"),
        ("when_required", False, "sha256"),
    ],
)
def test_boto3_checksum_modes(
    server: Server, bucket: str, calculation: str, trailer: bool, expected: str
) -> None:
    client = server.client(request_checksum_calculation=calculation)
    if trailer:
        client.meta.events.register("before-call.s3", _trailer_over_http)
    seen = _record_payload_modes(client)
    data = b"payload " * 10_000

    put = client.put_object(Bucket=bucket, Key="k", Body=data)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = client.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=data)
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )

    assert put["ETag"] == f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
    assert _get(client, bucket, "k") == data
    assert _get(client, bucket, "mp") == data
    streamed = [mode for mode in seen if not mode.startswith("STREAMING-")]
    if expected == "sha256":
        assert all(len(mode) == 64 for mode in seen)
    else:
        assert seen.count(expected) == 2  # the PutObject and the UploadPart
        assert all(len(mode) == 64 for mode in streamed)
    if calculation == "when_supported":
        assert put["ChecksumCRC32"] == _crc32_b64(data)


def test_trailer_checksum_mismatch_is_refused(server: Server, bucket: str) -> None:
    client = server.client()
    client.meta.events.register("before-call.s3", _trailer_over_http)
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=bucket, Key="k", Body=b"data", ChecksumCRC32=wrong)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert not _exists(client, bucket, "k")


def test_payload_signing_enabled_sends_a_signed_sha256(server: Server, bucket: str) -> None:
    client = server.client(s3={"addressing_style": "path", "payload_signing_enabled": True})
    seen = _record_payload_modes(client)
    client.put_object(Bucket=bucket, Key="k", Body=b"signed body")
    assert seen == [_sha256(b"signed body")]
    assert _get(client, bucket, "k") == b"signed body"


def test_unsigned_payload_from_boto3(server: Server, bucket: str) -> None:
    client = server.client(s3={"addressing_style": "path", "payload_signing_enabled": False})
    seen = _record_payload_modes(client)
    client.put_object(Bucket=bucket, Key="k", Body=b"unsigned body")
    assert seen == ["UNSIGNED-PAYLOAD"]
    assert _get(client, bucket, "k") == b"unsigned body"


# --- aws-chunked bodies built by hand ---------------------------------------------------------
def _chunk_signature(signed: Signed, previous: str, data: bytes) -> str:
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            signed.amz_date,
            signed.scope,
            previous,
            EMPTY_SHA256,
            _sha256(data),
        ]
    )
    return hmac.new(signed.key, to_sign.encode(), hashlib.sha256).hexdigest()


def _trailer_signature(signed: Signed, previous: str, trailer: str) -> str:
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-TRAILER",
            signed.amz_date,
            signed.scope,
            previous,
            _sha256(trailer.encode()),
        ]
    )
    return hmac.new(signed.key, to_sign.encode(), hashlib.sha256).hexdigest()


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _chunked_put(
    signer: Signer,
    path: str,
    data: bytes,
    mode: str,
    *,
    chunk: int = 64 * 1024,
    tamper: Callable[[list[bytes]], None] | None = None,
    trailer_value: str | None = None,
) -> tuple[Signed, bytes]:
    """A PUT with an aws-chunked body in ``mode``; ``tamper`` edits the chunks after signing."""
    trailer = "STREAMING-UNSIGNED" in mode or mode.endswith("-TRAILER")
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
    }
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    signed = signer.sign("PUT", path, headers=headers, payload=mode)
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    sign_chunks = mode.startswith("STREAMING-AWS4")
    previous = signed.signature
    frames: list[tuple[bytes, str]] = []
    for piece in [*pieces, b""]:
        signature = ""
        if sign_chunks:
            previous = _chunk_signature(signed, previous, piece)
            signature = previous
        frames.append((piece, signature))
    if tamper is not None:
        payloads = [p for p, _ in frames]
        tamper(payloads)
        frames = [(p, s) for p, (_, s) in zip(payloads, frames, strict=True)]
    body = b""
    for piece, signature in frames:
        extension = f";chunk-signature={signature}" if signature else ""
        body += f"{len(piece):x}{extension}\r\n".encode() + piece
        if piece:
            body += b"\r\n"
    if trailer:
        value = _crc32_b64(data)
        line = f"x-amz-checksum-crc32:{value}"
        body += line.encode() + b"\r\n"
        if sign_chunks:
            signature = _trailer_signature(signed, previous, line + "\n")
            if trailer_value is not None:
                body = body.replace(value.encode(), trailer_value.encode())
            body += f"x-amz-trailer-signature:{signature}\r\n".encode()
        elif trailer_value is not None:
            body = body.replace(value.encode(), trailer_value.encode())
    body += b"\r\n"
    signed.headers["content-length"] = str(len(body))
    return signed, body


STREAMING_MODES = [
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
]


@pytest.mark.parametrize("mode", STREAMING_MODES)
def test_aws_chunked_upload(
    server: Server, s3: Any, signer: Signer, bucket: str, mode: str
) -> None:
    data = bytes(range(256)) * 600  # three chunks of 64 KiB and a short one
    signed, body = _chunked_put(signer, f"/{bucket}/k", data, mode)
    reply = _send_signed(server, signed, body)
    assert reply.status == 200, reply.body
    assert reply.headers["etag"] == f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
    assert _get(s3, bucket, "k") == data
    if mode.endswith("-TRAILER"):
        head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == _crc32_b64(data)


def _flip(index: int) -> Callable[[list[bytes]], None]:
    def tamper(payloads: list[bytes]) -> None:
        piece = bytearray(payloads[index])
        piece[7] ^= 0x01
        payloads[index] = bytes(piece)

    return tamper


@pytest.mark.parametrize("mode", STREAMING_MODES[:2])
def test_tampered_chunk_is_refused_and_leaves_no_object(
    server: Server, s3: Any, signer: Signer, bucket: str, mode: str
) -> None:
    data = b"0123456789abcdef" * 10_000
    for index in (0, 2):
        signed, body = _chunked_put(signer, f"/{bucket}/k", data, mode, tamper=_flip(index))
        reply = _send_signed(server, signed, body)
        assert reply.status == 403
        assert reply.code == "SignatureDoesNotMatch"
        assert not _exists(s3, bucket, "k")


def test_dropped_chunk_is_refused(server: Server, s3: Any, signer: Signer, bucket: str) -> None:
    data = b"x" * 200_000
    signed, body = _chunked_put(
        signer, f"/{bucket}/k", data, STREAMING_MODES[0], tamper=lambda p: p.__setitem__(1, b"")
    )
    reply = _send_signed(server, signed, body)
    assert reply.status in (400, 403)
    assert not _exists(s3, bucket, "k")


def test_tampered_signed_trailer_is_refused(
    server: Server, s3: Any, signer: Signer, bucket: str
) -> None:
    data = b"trailer data" * 1000
    signed, body = _chunked_put(
        signer, f"/{bucket}/k", data, STREAMING_MODES[1], trailer_value=_crc32_b64(b"other")
    )
    reply = _send_signed(server, signed, body)
    assert reply.status == 403
    assert reply.code == "SignatureDoesNotMatch"
    assert not _exists(s3, bucket, "k")


def test_wrong_unsigned_trailer_checksum_is_refused(
    server: Server, s3: Any, signer: Signer, bucket: str
) -> None:
    data = b"trailer data" * 1000
    signed, body = _chunked_put(
        signer, f"/{bucket}/k", data, STREAMING_MODES[2], trailer_value=_crc32_b64(b"other")
    )
    reply = _send_signed(server, signed, body)
    assert reply.status == 400
    assert not _exists(s3, bucket, "k")


@pytest.mark.parametrize("delta", [1, -1])
def test_decoded_length_that_lies_is_refused(
    server: Server, s3: Any, signer: Signer, bucket: str, delta: int
) -> None:
    data = b"z" * 100_000
    signed, body = _chunked_put(signer, f"/{bucket}/k", data, STREAMING_MODES[2])
    signed.headers["x-amz-decoded-content-length"] = str(len(data) + delta)
    # The decoded length is not signed in the unsigned-trailer mode; the framing still is.
    reply = _send(server, "PUT", signed.target, signed.headers, body)
    assert reply.status in (400, 403)
    assert not _exists(s3, bucket, "k")


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


# --- Expect: 100-continue -----------------------------------------------------------------------
def _read_reply(sock: socket.socket, buffer: bytes = b"") -> tuple[Reply, bytes]:
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed mid-response: {buffer!r}")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            break
        rest += data
    return Reply(int(status_line.split()[1]), headers, rest[:length]), rest[length:]


def _request_head(signed: Signed, length: int) -> bytes:
    lines = [f"{signed.method} {signed.target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in signed.headers.items()]
    lines += [f"content-length: {length}", "expect: 100-continue", "", ""]
    return "\r\n".join(lines).encode()


@pytest.fixture
def raw_socket(server: Server) -> Iterator[socket.socket]:
    """A plain TCP connection to the server, with a short timeout."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        yield sock


def test_expect_100_continue(
    raw_socket: socket.socket, s3: Any, signer: Signer, bucket: str
) -> None:
    body = b"sent after 100 Continue"
    signed = signer.sign("PUT", f"/{bucket}/k", payload=_sha256(body))
    raw_socket.sendall(_request_head(signed, len(body)))

    interim, rest = _read_reply(raw_socket)
    assert interim.status == 100
    raw_socket.sendall(body)
    final, _ = _read_reply(raw_socket, rest)
    assert final.status == 200
    assert _get(s3, bucket, "k") == body


def test_expect_100_continue_auth_failure_answers_at_once(
    server: Server, raw_socket: socket.socket, s3: Any, bucket: str
) -> None:
    body = b"never sent"
    signed = Signer(server, server.access_key, "wrong secret").sign(
        "PUT", f"/{bucket}/k", payload=_sha256(body)
    )
    raw_socket.sendall(_request_head(signed, len(body)))

    started = time.monotonic()
    reply, _ = _read_reply(raw_socket)  # the body is never sent: a wait here would time out
    assert time.monotonic() - started < 3
    assert reply.status == 403
    assert reply.code == "SignatureDoesNotMatch"
    assert reply.headers.get("connection") == "close"
    assert not _exists(s3, bucket, "k")


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


def test_expired_presigned_url_is_access_denied(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )
    time.sleep(2)
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


# --- request validation -------------------------------------------------------------------------
def test_user_metadata_over_2_kib_is_metadata_too_large(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"big": "m" * 3 * 1024})
    assert _code(exc) == "MetadataTooLarge"
    assert not _exists(s3, bucket, "k")


def test_huge_header_section_is_400(server: Server, signer: Signer, bucket: str) -> None:
    signed = signer.sign("GET", f"/{bucket}", headers={"x-padding": "p" * 10 * 1024})
    reply = _send_signed(server, signed)
    assert reply.status == 400
    assert "x-amz-request-id" in reply.headers


def _xml_request(
    signer: Signer,
    server: Server,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
    method: str = "POST",
) -> Reply:
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    signed = signer.sign(
        method, path, query=query, headers={"content-md5": md5}, payload=_sha256(body)
    )
    return _send_signed(server, signed, body)


BAD_XML = [
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
    b"not xml at all",
    b"<Wrong><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Wrong>",
    b"",
]

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Tagging><TagSet><Tag><Key>k</Key><Value>&lol9;</Value></Tag></TagSet></Tagging>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""


@pytest.mark.parametrize("body", BAD_XML, ids=["unclosed", "text", "wrong-root", "empty"])
def test_malformed_xml_bodies(
    server: Server, s3: Any, signer: Signer, bucket: str, body: bytes
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    replies = {
        "complete": _xml_request(signer, server, f"/{bucket}/k", [("uploadId", upload_id)], body),
        "delete": _xml_request(signer, server, f"/{bucket}", [("delete", "")], body),
        "tagging": _xml_request(signer, server, f"/{bucket}/k", [("tagging", "")], body, "PUT"),
    }
    for name, reply in replies.items():
        assert (name, reply.status, reply.code) == (name, 400, "MalformedXML")
    assert _exists(s3, bucket, "k")


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["laughs", "xxe"])
def test_xml_with_entities_is_refused_fast(
    server: Server, s3: Any, signer: Signer, bucket: str, body: bytes
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    started = time.monotonic()
    replies = [
        _xml_request(signer, server, f"/{bucket}/k", [("tagging", "")], body, "PUT"),
        _xml_request(signer, server, f"/{bucket}", [("delete", "")], body),
        _xml_request(signer, server, f"/{bucket}/k", [("uploadId", upload_id)], body),
    ]
    assert time.monotonic() - started < 5
    assert [(r.status, r.code) for r in replies] == [(400, "MalformedXML")] * 3
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 64,
        "UPPERCASE",
        "under_score",
        "-leading",
        "trailing-",
        "two..dots",
        "192.168.1.1",
        "xn--prefixed",
        "bucket-s3alias",
        ".dot-first",
    ],
)
def test_invalid_bucket_names(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert _code(exc) == "InvalidBucketName"


def test_ranges(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    for header, expected in (
        ("bytes=2-4", b"234"),
        ("bytes=7-", b"789"),
        ("bytes=-3", b"789"),
        ("bytes=5-100", b"56789"),
    ):
        response = s3.get_object(Bucket=bucket, Key="k", Range=header)
        with response["Body"] as body:
            assert body.read() == expected
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 206
    for unsatisfiable in ("bytes=10-20", "bytes=100-"):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key="k", Range=unsatisfiable)
        assert _code(exc) == "InvalidRange"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    # A Range that does not parse is ignored, as RFC 9110 says: the whole object comes back.
    for ignored in ("bytes=5-2", "bytes=abc", "items=0-1"):
        response = s3.get_object(Bucket=bucket, Key="k", Range=ignored)
        with response["Body"] as body:
            assert body.read() == b"0123456789"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "99999999999999999999"])
def test_invalid_max_keys_is_invalid_argument(
    server: Server, signer: Signer, bucket: str, value: str
) -> None:
    for query in ([("max-keys", value)], [("list-type", "2"), ("max-keys", value)]):
        reply = _send_signed(server, signer.sign("GET", f"/{bucket}", query=query))
        assert (reply.status, reply.code) == (400, "InvalidArgument")


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "TRACE"])
def test_unknown_method_is_method_not_allowed(
    server: Server, signer: Signer, bucket: str, method: str
) -> None:
    reply = _send_signed(server, signer.sign(method, f"/{bucket}/k"))
    assert reply.status == 405
    assert reply.code == "MethodNotAllowed"
    assert "x-amz-request-id" in reply.headers


def test_request_id_on_every_response(server: Server, s3: Any, signer: Signer, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    requests = [
        signer.sign("GET", f"/{bucket}/k"),
        signer.sign("HEAD", f"/{bucket}/k"),
        signer.sign("GET", f"/{bucket}/missing"),
        signer.sign("HEAD", f"/{bucket}/missing"),
        signer.sign("GET", "/no-such-bucket-here"),
        signer.sign("DELETE", f"/{bucket}"),
        Signer(server, server.access_key, "wrong").sign("GET", f"/{bucket}"),
        Signer(server, "AKUNKNOWN00000000000", "x").sign("GET", f"/{bucket}"),
        signer.sign("PATCH", f"/{bucket}"),
    ]
    statuses = set()
    ids = set()
    for signed in requests:
        reply = _send_signed(server, signed)
        statuses.add(reply.status)
        assert reply.headers.get("x-amz-request-id"), (signed.method, signed.target, reply)
        ids.add(reply.headers["x-amz-request-id"])
    anonymous = _send(server, "GET", f"/{bucket}/k", {})
    assert anonymous.headers.get("x-amz-request-id")
    ids.add(anonymous.headers["x-amz-request-id"])
    assert statuses >= {200, 403, 404, 405, 409}
    assert len(ids) == len(requests) + 1
