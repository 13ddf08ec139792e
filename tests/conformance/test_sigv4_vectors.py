"""AWS's published SigV4 vectors, step by step: canonical request, string to sign, signature.

The generic suite (``data/aws4_testsuite``) pins the signing algorithm; the S3 documentation
examples below pin the S3 flavour end to end through ``authenticate``, including the
``aws-chunked`` seed signatures.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from andromede.auth import sigv4
from andromede.auth.sigv4 import PayloadMode, SignedRequest

SUITE = Path(__file__).parent / "data" / "aws4_testsuite"
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_DATE = "20150830T123600Z"
SUITE_SCOPE = "20150830/us-east-1/service/aws4_request"

# Paths S3 keeps verbatim where the generic suite normalises them.
NORMALISING = {"get-relative", "get-relative-relative", "get-slash", "get-slash-dot-slash",
               "get-slash-pointless-dot", "get-slashes"}  # fmt: skip


def _cases() -> list[Path]:
    return sorted(path.parent for path in SUITE.rglob("*.req"))


def _parse_req(raw: bytes) -> tuple[SignedRequest, bytes]:
    # The .req files are UTF-8 on disk; read as latin-1, like bytes off the wire.
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode("latin-1").split("\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rsplit(" ", 1)[0]
    path, _, query = target.partition("?")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.lower(), value))
    return SignedRequest(method, path, query, headers), body


def _load(case: Path) -> tuple[SignedRequest, bytes, str, str, str]:
    name = case.name
    req, body = _parse_req((case / f"{name}.req").read_bytes())
    creq = (case / f"{name}.creq").read_text("utf-8")
    sts = (case / f"{name}.sts").read_text("utf-8")
    authz = (case / f"{name}.authz").read_text("utf-8")
    return req, body, creq, sts, authz


def _authz_parts(authz: str) -> tuple[list[str], str]:
    match = re.search(r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})", authz)
    assert match is not None
    return match.group(1).split(";"), match.group(2)


def _canonical(req: SignedRequest, body: bytes, signed: list[str]) -> str:
    return sigv4.canonical_request(
        req.method,
        sigv4.canonical_uri(req.raw_path),
        sigv4.canonical_query(req.query_string),
        headers=req.headers,
        signed_headers=signed,
        payload_hash=hashlib.sha256(body).hexdigest(),
    )


APPLICABLE = [case for case in _cases() if case.name not in NORMALISING]


def test_the_suite_is_present() -> None:
    assert len(APPLICABLE) >= 20
    assert {case.name for case in _cases()} >= NORMALISING


@pytest.mark.parametrize("case", APPLICABLE, ids=lambda case: case.name)
def test_suite_vector(case: Path) -> None:
    req, body, creq, sts, authz = _load(case)
    signed, signature = _authz_parts(authz)

    canonical = _canonical(req, body, signed)
    assert canonical == creq
    to_sign = sigv4.string_to_sign(SUITE_DATE, SUITE_SCOPE, canonical)
    assert to_sign == sts
    key = sigv4.signing_key(SUITE_SECRET, "20150830", "us-east-1", "service")
    assert sigv4.compute_signature(key, to_sign) == signature


@pytest.mark.parametrize("name", sorted(NORMALISING))
def test_s3_does_not_normalise_paths(name: str) -> None:
    """The generic suite removes dot segments and duplicate slashes; S3 signs the raw path."""
    req, body, creq, _, _ = _load(SUITE / "normalize-path" / name)
    assert sigv4.canonical_uri(req.raw_path) == req.raw_path
    signed, _ = _authz_parts((SUITE / "normalize-path" / name / f"{name}.authz").read_text())
    ours = _canonical(req, body, signed).split("\n")
    theirs = creq.split("\n")
    assert ours[1] != theirs[1]  # only the path differs ...
    assert ours[:1] + ours[2:] == theirs[:1] + theirs[2:]  # ... everything else agrees


def test_signing_key_from_the_sigv4_documentation() -> None:
    key = sigv4.signing_key(SUITE_SECRET, "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


# --- S3 documentation examples (docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-*) ----------
DOC_KEY = "AKIAIOSFODNN7EXAMPLE"
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_NOW = datetime(2013, 5, 24, 0, 5, tzinfo=UTC)
DOC_HOST = ("host", "examplebucket.s3.amazonaws.com")
EMPTY = sigv4.EMPTY_SHA256


async def _doc_lookup(access_key_id: str) -> str | None:
    return DOC_SECRET if access_key_id == DOC_KEY else None


def _doc_authorization(signed: str, signature: str) -> tuple[str, str]:
    return (
        "authorization",
        f"AWS4-HMAC-SHA256 Credential={DOC_KEY}/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed},Signature={signature}",
    )


DOC_EXAMPLES = {
    "get-object": SignedRequest(
        "GET",
        "/test.txt",
        "",
        [
            DOC_HOST,
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY),
            ("x-amz-date", "20130524T000000Z"),
            _doc_authorization(
                "host;range;x-amz-content-sha256;x-amz-date",
                "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        ],
    ),
    "put-object": SignedRequest(
        "PUT",
        "/test%24file.text",
        "",
        [
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            DOC_HOST,
            ("x-amz-content-sha256", hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            _doc_authorization(
                "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
            ),
        ],
    ),
    "get-bucket-lifecycle": SignedRequest(
        "GET",
        "/",
        "lifecycle",
        [
            DOC_HOST,
            ("x-amz-content-sha256", EMPTY),
            ("x-amz-date", "20130524T000000Z"),
            _doc_authorization(
                "host;x-amz-content-sha256;x-amz-date",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
        ],
    ),
    "list-objects": SignedRequest(
        "GET",
        "/",
        "max-keys=2&prefix=J",
        [
            DOC_HOST,
            ("x-amz-content-sha256", EMPTY),
            ("x-amz-date", "20130524T000000Z"),
            _doc_authorization(
                "host;x-amz-content-sha256;x-amz-date",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ],
    ),
    "presigned-get": SignedRequest(
        "GET",
        "/test.txt",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        [DOC_HOST],
    ),
    "streaming-put": SignedRequest(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        [
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            _doc_authorization(
                "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                "x-amz-decoded-content-length;x-amz-storage-class",
                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
        ],
    ),
    "streaming-put-with-trailer": SignedRequest(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        [
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            _doc_authorization(
                "content-encoding;host;x-amz-content-sha256;x-amz-date;"
                "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
                "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
            ),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
        ],
    ),
}

DOC_MODES = {
    "put-object": PayloadMode.SIGNED,
    "presigned-get": PayloadMode.UNSIGNED,
    "streaming-put": PayloadMode.STREAMING_SIGNED,
    "streaming-put-with-trailer": PayloadMode.STREAMING_SIGNED_TRAILER,
}


@pytest.mark.parametrize("name", sorted(DOC_EXAMPLES))
async def test_s3_documentation_example_authenticates(name: str) -> None:
    ctx = await sigv4.authenticate(DOC_EXAMPLES[name], _doc_lookup, DOC_NOW)
    assert ctx.access_key_id == DOC_KEY
    assert ctx.scope == "20130524/us-east-1/s3/aws4_request"
    assert ctx.payload_mode is DOC_MODES.get(name, PayloadMode.SIGNED)
    assert ctx.presigned == (name == "presigned-get")


def test_s3_documentation_get_object_step_by_step() -> None:
    req = DOC_EXAMPLES["get-object"]
    canonical = sigv4.canonical_request(
        "GET",
        sigv4.canonical_uri(req.raw_path),
        sigv4.canonical_query(req.query_string),
        headers=req.headers,
        signed_headers=["host", "range", "x-amz-content-sha256", "x-amz-date"],
        payload_hash=EMPTY,
    )
    to_sign = sigv4.string_to_sign(
        "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", canonical
    )
    assert to_sign.endswith("7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")


def test_s3_documentation_presigned_canonical_request() -> None:
    req = DOC_EXAMPLES["presigned-get"]
    canonical = sigv4.canonical_request(
        "GET",
        sigv4.canonical_uri(req.raw_path),
        sigv4.canonical_query(req.query_string, exclude_signature=True),
        headers=req.headers,
        signed_headers=["host"],
        payload_hash="UNSIGNED-PAYLOAD",
    )
    to_sign = sigv4.string_to_sign(
        "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", canonical
    )
    assert to_sign.endswith("3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04")
