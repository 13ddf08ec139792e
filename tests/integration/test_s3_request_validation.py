"""Request validation against the real server: metadata and header limits, malformed and
hostile XML, bucket names, ranges, query arguments, methods, and request ids.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.s3errors import error_code as _code
from support.s3objects import object_exists as _exists
from support.server import Server, running_server
from support.sigv4 import Reply, Signer
from support.sigv4 import send as _send
from support.sigv4 import send_signed as _send_signed
from support.sigv4 import sha256_hex as _sha256


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


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that waits 1 s for a stalled body, instead of S3's 20."""
    data = tmp_path_factory.mktemp("impatient") / "data"
    with running_server(data, ANDROMEDE_BODY_IDLE_TIMEOUT_SECONDS="1") as srv:
        yield srv


def test_a_stalled_body_is_request_timeout(impatient: Server) -> None:
    """A client that announces more bytes than it sends holds no request forever (s3-tests'
    bad_contentlength_mismatch_above): 400 RequestTimeout, and nothing is stored."""
    _, access, secret = impatient.new_tenant()
    s3 = impatient.client(access, secret)
    s3.create_bucket(Bucket="stall")
    signed = Signer(impatient, access, secret).sign(
        "PUT", "/stall/k", headers={"content-length": "10"}, payload="UNSIGNED-PAYLOAD"
    )
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=15) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in signed.headers.items())
        sock.sendall(f"PUT {signed.target} HTTP/1.1\r\n{head}\r\n".encode() + b"abc")
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    assert time.monotonic() - started < 10
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"<Code>RequestTimeout</Code>" in answer
    assert not _exists(s3, "stall", "k")


def test_canned_acls(s3: Any, server: Server, signer: Signer, bucket: str) -> None:
    """What every object already is is accepted; a canned ACL asking for grants is refused as
    not built (never silently ignored); a value that is no canned ACL is a bad argument."""
    s3.put_object(Bucket=bucket, Key="acl", Body=b"x", ACL="private")
    s3.put_object(Bucket=bucket, Key="acl", Body=b"x", ACL="bucket-owner-full-control")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="acl", Body=b"x", ACL="public-read")
    assert _code(exc) == "NotImplemented"
    for method, target in (("PUT", f"/{bucket}/acl"), ("PUT", "/acl-bad-canned")):
        signed = signer.sign(method, target, headers={"x-amz-acl": "public-ready"})
        reply = _send_signed(server, signed)
        assert (reply.status, reply.code) == (400, "InvalidArgument")
