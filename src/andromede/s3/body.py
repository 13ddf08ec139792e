"""Request bodies: Content-Length, aws-chunked decoding and payload-hash checks."""

from __future__ import annotations

import base64
import binascii
import hashlib

from andromede.auth.sigv4 import AuthContext, PayloadMode
from andromede.core import errors
from andromede.core.checksums import decode_b64_checksum, new_hasher
from andromede.s3.chunked import AwsChunkedDecoder, PayloadHashVerifier
from andromede.s3.headers import integrity
from andromede.s3.http import Request
from andromede.services.body import IncomingBody

_STREAMING = (
    PayloadMode.STREAMING_SIGNED,
    PayloadMode.STREAMING_SIGNED_TRAILER,
    PayloadMode.STREAMING_UNSIGNED_TRAILER,
)


def _int_header(req: Request, name: str) -> int | None:
    value = req.header(name)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise errors.InvalidArgument(f"Invalid {name} header.")
    return int(value)


def incoming_body(req: Request, auth: AuthContext, *, required: bool = True) -> IncomingBody:
    """The payload of a PUT/POST as services read it, with its integrity checks attached."""
    if auth.payload_mode in _STREAMING:
        decoded = _int_header(req, "x-amz-decoded-content-length")
        if decoded is None:
            raise errors.MissingContentLength()
        decoder = AwsChunkedDecoder(auth, decoded_length=decoded)
        return IncomingBody(
            decoder.decode(req.stream()), decoded, trailers=lambda: dict(decoder.trailers)
        )
    length = _int_header(req, "content-length")
    if length is None and required and "chunked" not in (req.header("transfer-encoding") or ""):
        raise errors.MissingContentLength()
    body = IncomingBody(req.stream(), length)
    if auth.payload_mode is PayloadMode.SIGNED and auth.payload_sha256 is not None:
        verifier = PayloadHashVerifier(auth.payload_sha256)
        body.observers.append(verifier.update)
        body.finish = verifier.verify
    return body


async def read_small_body(req: Request, auth: AuthContext, limit: int) -> bytes:
    """Read a whole (XML) body, at most ``limit`` bytes, verifying its hash."""
    body = incoming_body(req, auth, required=False)
    if body.length is not None and body.length > limit:
        raise errors.MalformedXML("The XML you provided was larger than the maximum allowed.")
    parts: list[bytes] = []
    size = 0
    async for chunk in body.chunks:
        size += len(chunk)
        if size > limit:
            raise errors.MalformedXML("The XML you provided was larger than the maximum allowed.")
        parts.append(chunk)
    data = b"".join(parts)
    for observe in body.observers:
        observe(data)
    body.finish()
    return data


def check_digests(req: Request, body: bytes, *, required: bool) -> None:
    """Check a whole small body against its Content-MD5 and ``x-amz-checksum-*`` headers, if
    sent; with ``required``, one of them must be (as S3 requires on DeleteObjects)."""
    claims = integrity(req)
    md5 = req.header("content-md5")
    if required and md5 is None and claims.algorithm is None:
        raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
    if md5 is not None:
        try:
            expected = base64.b64decode(md5, validate=True)
        except (binascii.Error, ValueError):
            raise errors.InvalidDigest() from None
        if expected != hashlib.md5(body, usedforsecurity=False).digest():
            raise errors.BadDigest()
    if claims.algorithm is not None and claims.checksum is not None:
        hasher = new_hasher(claims.algorithm)
        hasher.update(body)
        if decode_b64_checksum(claims.algorithm, claims.checksum) != hasher.digest():
            raise errors.BadDigest()
