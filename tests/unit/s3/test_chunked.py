"""``aws-chunked`` bodies: AWS's worked examples, what boto3 really sends, and hostile input."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.crt.auth
import pytest
from botocore.awsrequest import AWSResponse

from andromede.auth import sigv4
from andromede.auth.sigv4 import AuthContext, PayloadMode, SignedRequest
from andromede.core import checksums, errors
from andromede.core.checksums import ChecksumAlgorithm
from andromede.s3.chunked import (
    MAX_LINE,
    OFFLOAD_THRESHOLD,
    AwsChunkedDecoder,
    PayloadHashVerifier,
    chunk_signature,
    expected_trailer_names,
    trailer_signature,
)

# --- the worked examples of sigv4-streaming.html and sigv4-streaming-trailers.html -------------
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_KEY = sigv4.signing_key(DOC_SECRET, "20130524", "us-east-1", "s3")
DOC_SCOPE = "20130524/us-east-1/s3/aws4_request"
DOC_SIGNED = (
    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ],
)
DOC_TRAILER = (
    "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
    [
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ],
)
DOC_TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
DOC_PAYLOAD = b"a" * 66560


def doc_ctx(mode: PayloadMode, seed: str) -> AuthContext:
    return AuthContext(
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        signing_key=DOC_KEY,
        scope=DOC_SCOPE,
        amz_date="20130524T000000Z",
        seed_signature=seed,
        payload_mode=mode,
    )


def doc_body(signatures: list[str], trailer: bytes = b"") -> bytes:
    return (
        b"10000;chunk-signature=" + signatures[0].encode() + b"\r\n" + b"a" * 65536 + b"\r\n"
        b"400;chunk-signature=" + signatures[1].encode() + b"\r\n" + b"a" * 1024 + b"\r\n"
        b"0;chunk-signature=" + signatures[2].encode() + b"\r\n" + trailer + b"\r\n"
    )


DOC_TRAILER_LINES = (
    b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
    b"x-amz-trailer-signature:" + DOC_TRAILER_SIGNATURE.encode() + b"\r\n"
)


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def from_list(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def decode_all(decoder: AwsChunkedDecoder, body: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in decoder.decode(body)])


def test_doc_chunk_signatures_step_by_step() -> None:
    ctx = doc_ctx(PayloadMode.STREAMING_SIGNED, DOC_SIGNED[0])
    first = chunk_signature(ctx, DOC_SIGNED[0], hashlib.sha256(b"a" * 65536).hexdigest())
    assert first == DOC_SIGNED[1][0]
    second = chunk_signature(ctx, first, hashlib.sha256(b"a" * 1024).hexdigest())
    assert second == DOC_SIGNED[1][1]
    assert chunk_signature(ctx, second, sigv4.EMPTY_SHA256) == DOC_SIGNED[1][2]


def test_doc_trailer_signature_step_by_step() -> None:
    ctx = doc_ctx(PayloadMode.STREAMING_SIGNED_TRAILER, DOC_TRAILER[0])
    crc = [("x-amz-checksum-crc32c", "sOO8/Q==")]
    assert trailer_signature(ctx, DOC_TRAILER[1][2], crc) == DOC_TRAILER_SIGNATURE


@pytest.mark.parametrize("piece_size", [1, 7, 88, 4096, 65536, 10**6])
async def test_doc_signed_example_decodes(piece_size: int) -> None:
    body = doc_body(DOC_SIGNED[1])
    assert len(body) == 66824  # the Content-Length the documentation gives
    decoder = AwsChunkedDecoder(
        doc_ctx(PayloadMode.STREAMING_SIGNED, DOC_SIGNED[0]), decoded_length=66560
    )
    assert await decode_all(decoder, pieces(body, piece_size)) == DOC_PAYLOAD
    assert decoder.trailers == {}
    assert decoder.decoded_length == 66560


@pytest.mark.parametrize("piece_size", [3, 1000, 10**6])
async def test_doc_trailer_example_decodes(piece_size: int) -> None:
    body = doc_body(DOC_TRAILER[1], DOC_TRAILER_LINES)
    decoder = AwsChunkedDecoder(
        doc_ctx(PayloadMode.STREAMING_SIGNED_TRAILER, DOC_TRAILER[0]), decoded_length=66560
    )
    assert await decode_all(decoder, pieces(body, piece_size)) == DOC_PAYLOAD
    assert decoder.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    expected = checksums.checksum(ChecksumAlgorithm.CRC32C, DOC_PAYLOAD)
    assert checksums.decode_b64_checksum(ChecksumAlgorithm.CRC32C, "sOO8/Q==") == expected


async def test_decoded_length_is_optional() -> None:
    decoder = AwsChunkedDecoder(
        doc_ctx(PayloadMode.STREAMING_SIGNED, DOC_SIGNED[0]), decoded_length=None
    )
    assert await decode_all(decoder, pieces(doc_body(DOC_SIGNED[1]), 5000)) == DOC_PAYLOAD


async def test_missing_final_crlf_is_tolerated_without_trailers() -> None:
    body = doc_body(DOC_SIGNED[1])[:-2]
    decoder = AwsChunkedDecoder(
        doc_ctx(PayloadMode.STREAMING_SIGNED, DOC_SIGNED[0]), decoded_length=66560
    )
    assert await decode_all(decoder, pieces(body, 5000)) == DOC_PAYLOAD


# --- what boto3 sends -------------------------------------------------------------------------
NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
SECRET = "boto-secret"


class _EmptyRaw:
    def stream(self, **_: Any) -> Iterable[bytes]:
        return iter([b""])


def capture_put(endpoint: str, body: bytes, **params: Any) -> tuple[SignedRequest, bytes]:
    """Run boto3's real PutObject pipeline and catch the request just before it is sent."""
    caught: dict[str, Any] = {}

    def before_send(request: Any, **_: Any) -> AWSResponse:
        raw = request.body
        caught["body"] = raw.read() if hasattr(raw, "read") else bytes(raw or b"")
        caught["request"] = request
        return AWSResponse(request.url, 200, {"ETag": '"0"'}, _EmptyRaw())

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="AKIDBOTO",
        aws_secret_access_key=SECRET,
        region_name="eu-west-3",
    )
    client.meta.events.register("before-send", before_send)
    client.put_object(Bucket="bucket", Key="some key", Body=io.BytesIO(body), **params)
    request = caught["request"]
    url = urlsplit(request.url)
    headers = [
        (name.lower(), value.decode("latin-1") if isinstance(value, bytes) else str(value))
        for name, value in request.headers.items()
    ]
    return SignedRequest(request.method, url.path, url.query, headers), caught["body"]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # With awscrt installed, boto3 clients sign with the CRT signer (botocore.crt.auth).
    def fixed(remove_tzinfo: bool = True) -> datetime:
        return NOW.replace(tzinfo=None) if remove_tzinfo else NOW

    monkeypatch.setattr(botocore.auth, "get_current_datetime", fixed)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", fixed)


async def _lookup(access_key_id: str) -> str | None:
    return SECRET if access_key_id == "AKIDBOTO" else None


def _header(req: SignedRequest, name: str) -> str:
    return next(value for key, value in req.headers if key == name)


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize(
    ("algorithm", "size"),
    [
        (ChecksumAlgorithm.CRC32, 0),
        (ChecksumAlgorithm.CRC32, 11),
        (ChecksumAlgorithm.CRC32, 2_621_440 + 3),  # several of boto3's 1 MiB chunks
        (ChecksumAlgorithm.CRC32C, 70_000),
        (ChecksumAlgorithm.CRC64NVME, 1_048_576),
        (ChecksumAlgorithm.SHA1, 5),
        (ChecksumAlgorithm.SHA256, 5),
    ],
)
async def test_boto3_streaming_unsigned_trailer_over_https(
    algorithm: ChecksumAlgorithm, size: int
) -> None:
    payload = bytes(i % 251 for i in range(size))
    req, body = capture_put("https://s3.local", payload, ChecksumAlgorithm=algorithm.value)
    assert _header(req, "x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert _header(req, "content-encoding") == "aws-chunked"
    assert expected_trailer_names(req.headers) == [algorithm.header]

    ctx = await sigv4.authenticate(req, _lookup, NOW)
    assert ctx.payload_mode is PayloadMode.STREAMING_UNSIGNED_TRAILER
    decoded_length = int(_header(req, "x-amz-decoded-content-length"))
    decoder = AwsChunkedDecoder(ctx, decoded_length=decoded_length)
    assert await decode_all(decoder, pieces(body, 65536)) == payload
    assert list(decoder.trailers) == [algorithm.header]
    value = decoder.trailers[algorithm.header]
    assert checksums.decode_b64_checksum(algorithm, value) == checksums.checksum(algorithm, payload)


@pytest.mark.usefixtures("frozen_clock")
async def test_boto3_default_checksum_over_https_is_crc32_trailer() -> None:
    req, body = capture_put("https://s3.local", b"hello")
    assert expected_trailer_names(req.headers) == ["x-amz-checksum-crc32"]
    assert body == b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"


@pytest.mark.usefixtures("frozen_clock")
async def test_boto3_over_plain_http_signs_the_payload_instead() -> None:
    payload = b"hello world"
    req, body = capture_put("http://s3.local", payload)
    ctx = await sigv4.authenticate(req, _lookup, NOW)
    assert ctx.payload_mode is PayloadMode.SIGNED
    assert body == payload
    verifier = PayloadHashVerifier(ctx.payload_sha256 or "")
    verifier.update(body)
    verifier.verify()
    assert _header(req, "x-amz-checksum-crc32") == checksums.encode_b64(
        checksums.checksum(ChecksumAlgorithm.CRC32, payload)
    )


# --- signed streams built here ----------------------------------------------------------------
def ctx_for(mode: PayloadMode) -> AuthContext:
    key = sigv4.signing_key("k", "20260314", "us-east-1", "s3")
    return AuthContext(
        "AK", key, "20260314/us-east-1/s3/aws4_request", "20260314T000000Z", "0" * 64, mode
    )


def encode_signed(
    ctx: AuthContext, chunks: list[bytes], trailers: list[tuple[str, str]] | None = None
) -> bytes:
    out = bytearray()
    previous = ctx.seed_signature
    for chunk in [*chunks, b""]:
        previous = chunk_signature(ctx, previous, hashlib.sha256(chunk).hexdigest())
        out += b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode())
        if chunk:
            out += chunk + b"\r\n"
    if trailers is not None:
        for name, value in trailers:
            out += f"{name}:{value}\r\n".encode()
        out += f"x-amz-trailer-signature:{trailer_signature(ctx, previous, trailers)}\r\n".encode()
    return bytes(out + b"\r\n")


def encode_unsigned(chunks: list[bytes], trailer: bytes = b"") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return out + b"0\r\n" + trailer + b"\r\n"


async def test_signed_trailer_round_trip() -> None:
    ctx = ctx_for(PayloadMode.STREAMING_SIGNED_TRAILER)
    trailers = [("x-amz-checksum-sha256", "abc="), ("x-amz-checksum-crc32", "AAAAAA==")]
    body = encode_signed(ctx, [b"x" * 9000, b"y" * 10], trailers)
    decoder = AwsChunkedDecoder(ctx, decoded_length=9010)
    assert await decode_all(decoder, pieces(body, 1000)) == b"x" * 9000 + b"y" * 10
    assert decoder.trailers == dict(trailers)


async def test_unsigned_trailer_ignores_chunk_extensions() -> None:
    body = b"3;foo=bar\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n"
    decoder = AwsChunkedDecoder(ctx_for(PayloadMode.STREAMING_UNSIGNED_TRAILER), decoded_length=3)
    assert await decode_all(decoder, pieces(body, 4)) == b"abc"
    assert decoder.trailers == {"x-amz-checksum-crc32": "NSRBwg=="}


async def test_data_is_passed_on_without_buffering_a_chunk() -> None:
    size = 8 * 1024 * 1024
    ctx = ctx_for(PayloadMode.STREAMING_UNSIGNED_TRAILER)
    decoder = AwsChunkedDecoder(ctx, decoded_length=size)

    async def body() -> AsyncIterator[bytes]:
        yield b"%x\r\n" % size
        for _ in range(size // 65536):
            yield b"z" * 65536
        yield b"\r\n0\r\n\r\n"

    largest = total = 0
    async for piece in decoder.decode(body()):
        largest = max(largest, len(piece))
        total += len(piece)
    assert total == size
    assert largest <= 65536


async def test_large_pieces_are_hashed_off_the_event_loop() -> None:
    ctx = ctx_for(PayloadMode.STREAMING_SIGNED)
    chunk = b"q" * (OFFLOAD_THRESHOLD + 1)
    decoder = AwsChunkedDecoder(ctx, decoded_length=len(chunk))
    assert await decode_all(decoder, pieces(encode_signed(ctx, [chunk]), 4 * 1024 * 1024)) == chunk


# --- hostile and broken bodies ------------------------------------------------------------------
SIGNED = ctx_for(PayloadMode.STREAMING_SIGNED)
TRAILED = ctx_for(PayloadMode.STREAMING_SIGNED_TRAILER)
UNSIGNED = ctx_for(PayloadMode.STREAMING_UNSIGNED_TRAILER)
GOOD = encode_signed(SIGNED, [b"a" * 100, b"b" * 50])


async def expect_error(
    error: type[errors.AndromedeError],
    body: bytes,
    ctx: AuthContext = SIGNED,
    decoded_length: int | None = 150,
    max_chunk_size: int = 1 << 24,
) -> None:
    decoder = AwsChunkedDecoder(ctx, decoded_length=decoded_length, max_chunk_size=max_chunk_size)
    with pytest.raises(error):
        await decode_all(decoder, pieces(body, 7))


async def test_good_body_decodes() -> None:
    decoder = AwsChunkedDecoder(SIGNED, decoded_length=150)
    assert await decode_all(decoder, pieces(GOOD, 7)) == b"a" * 100 + b"b" * 50


async def test_endless_chunk_size_line_is_refused_early() -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"f" * 1024

    decoder = AwsChunkedDecoder(UNSIGNED, decoded_length=None)
    with pytest.raises(errors.InvalidRequest, match="too long"):
        await decode_all(decoder, endless())
    assert pulled <= MAX_LINE // 1024 + 2


@pytest.mark.parametrize(
    "header",
    [b"-10", b"zz", b"0x10", b"", b" 10", b"1" * 17, b"10 ;chunk-signature=" + b"0" * 64],
)
async def test_bad_chunk_size(header: bytes) -> None:
    await expect_error(errors.InvalidRequest, header + b"\r\nabc\r\n0\r\n\r\n", UNSIGNED, None)


async def test_chunk_larger_than_the_limit() -> None:
    body = encode_unsigned([b"x" * 100])
    await expect_error(errors.InvalidRequest, body, UNSIGNED, None, max_chunk_size=99)


@pytest.mark.parametrize("cut", [1, 5, 60, 100, 200, len(GOOD) - 3])
async def test_truncated_body(cut: int) -> None:
    await expect_error(errors.IncompleteBody, GOOD[:cut])


async def test_missing_final_chunk() -> None:
    body = encode_signed(SIGNED, [b"a" * 100, b"b" * 50])
    final = body.rindex(b"0;chunk-signature=")
    await expect_error(errors.IncompleteBody, body[:final])


async def test_wrong_chunk_signature() -> None:
    body = GOOD.replace(GOOD[GOOD.index(b"=") + 1 : GOOD.index(b"=") + 5], b"ffff", 1)
    await expect_error(errors.SignatureDoesNotMatch, body)


async def test_altered_chunk_data() -> None:
    await expect_error(errors.SignatureDoesNotMatch, GOOD.replace(b"a" * 100, b"a" * 99 + b"A"))


async def test_reordered_chunks() -> None:
    first = encode_signed(SIGNED, [b"a" * 100])
    second = encode_signed(SIGNED, [b"b" * 50])
    spliced = second[: second.index(b"\r\n0;")] + b"\r\n" + first
    await expect_error(errors.SignatureDoesNotMatch, spliced)


async def test_missing_chunk_signature_in_signed_mode() -> None:
    await expect_error(errors.InvalidRequest, encode_unsigned([b"a" * 150]))


@pytest.mark.parametrize("declared", [149, 151, 0])
async def test_wrong_decoded_length(declared: int) -> None:
    await expect_error(errors.IncompleteBody, GOOD, decoded_length=declared)


async def test_chunk_longer_than_its_size() -> None:
    body = b"3\r\nabcd\r\n0\r\n\r\n"
    await expect_error(errors.InvalidRequest, body, UNSIGNED, None)


async def test_data_after_the_end() -> None:
    await expect_error(errors.InvalidRequest, GOOD + b"junk")


async def test_trailer_in_a_mode_without_trailers() -> None:
    body = GOOD[:-2] + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    await expect_error(errors.InvalidRequest, body)


async def test_missing_trailer_signature() -> None:
    body = encode_signed(TRAILED, [b"a" * 150], [("x-amz-checksum-crc32", "AAAAAA==")])
    cut = body.index(b"x-amz-trailer-signature")
    await expect_error(errors.SignatureDoesNotMatch, body[:cut] + b"\r\n", TRAILED)


async def test_altered_trailer_value() -> None:
    body = encode_signed(TRAILED, [b"a" * 150], [("x-amz-checksum-crc32", "AAAAAA==")])
    await expect_error(
        errors.SignatureDoesNotMatch, body.replace(b"AAAAAA==", b"AAAAAB=="), TRAILED
    )


async def test_trailer_after_the_trailer_signature() -> None:
    body = encode_signed(TRAILED, [b"a" * 150], [("x-amz-checksum-crc32", "AAAAAA==")])
    await expect_error(errors.InvalidRequest, body[:-2] + b"x-amz-meta-late:1\r\n\r\n", TRAILED)


@pytest.mark.parametrize(
    "trailer",
    [
        b"no-colon-here\r\n",
        b"bad name:1\r\n",
        b"x-amz-checksum-crc32:AAAAAA==\r\nX-Amz-Checksum-CRC32:AAAAAA==\r\n",
        b"".join(b"x-amz-meta-%d:1\r\n" % i for i in range(40)),
    ],
)
async def test_malformed_trailers(trailer: bytes) -> None:
    body = encode_unsigned([b"a" * 150], trailer)
    await expect_error(errors.InvalidRequest, body, UNSIGNED)


async def test_missing_end_of_trailers() -> None:
    body = encode_unsigned([b"a" * 150], b"x-amz-checksum-crc32:AAAAAA==\r\n")[:-2]
    await expect_error(errors.IncompleteBody, body, UNSIGNED)


def test_decoder_refuses_non_streaming_modes() -> None:
    with pytest.raises(ValueError, match="aws-chunked"):
        AwsChunkedDecoder(ctx_for(PayloadMode.SIGNED), decoded_length=0)


# --- helpers ----------------------------------------------------------------------------------
def test_expected_trailer_names() -> None:
    headers = [("x-amz-trailer", "X-Amz-Checksum-CRC32, x-amz-checksum-sha256"), ("host", "h")]
    assert expected_trailer_names(headers) == ["x-amz-checksum-crc32", "x-amz-checksum-sha256"]
    assert expected_trailer_names([]) == []


async def test_payload_hash_verifier() -> None:
    data = b"x" * (OFFLOAD_THRESHOLD + 5)
    good = PayloadHashVerifier(hashlib.sha256(data).hexdigest().upper())
    await good.aupdate(data[:10])
    await good.aupdate(data[10:])
    good.verify()

    bad = PayloadHashVerifier(hashlib.sha256(b"other").hexdigest())
    bad.update(data)
    with pytest.raises(errors.ContentSHA256Mismatch):
        bad.verify()


def test_context_replace_keeps_mode() -> None:
    ctx = dataclasses.replace(SIGNED, payload_mode=PayloadMode.STREAMING_SIGNED_TRAILER)
    assert ctx.payload_mode.has_trailer
    assert ctx.payload_mode.signs_chunks
    assert not PayloadMode.STREAMING_UNSIGNED_TRAILER.signs_chunks
