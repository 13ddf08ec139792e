"""Payload signing against the real server: what boto3 sends, ``aws-chunked`` bodies built by
hand (signed chunks, trailers, tampering), and ``Expect: 100-continue``.

The SigV4 signer in ``support.sigv4`` is written from the AWS docs, not the server's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.s3objects import get_bytes as _get
from support.s3objects import object_exists as _exists
from support.server import Server
from support.sigv4 import EMPTY_SHA256, Reply, Signed, Signer
from support.sigv4 import send as _send
from support.sigv4 import send_signed as _send_signed
from support.sigv4 import sha256_hex as _sha256


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


def _signed_frames(
    signed: Signed, pieces: list[bytes], sign_chunks: bool
) -> tuple[list[tuple[bytes, str]], str]:
    """Each chunk (and the final empty one) with its signature (empty when unsigned), and the
    last signature, which the trailer's chains from."""
    previous = signed.signature
    frames: list[tuple[bytes, str]] = []
    for piece in [*pieces, b""]:
        signature = ""
        if sign_chunks:
            previous = _chunk_signature(signed, previous, piece)
            signature = previous
        frames.append((piece, signature))
    return frames, previous


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
    frames, previous = _signed_frames(signed, pieces, sign_chunks)
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
