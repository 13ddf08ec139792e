"""A small SigV4 signer written from the AWS docs (not the server's code), and raw HTTP.

It builds what boto3 cannot: the signed ``aws-chunked`` variants, tampered requests, skewed
clocks, ``Expect: 100-continue`` by hand, and malformed bodies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import quote

from support.server import Server

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
REGION = "us-east-1"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _quote(text: str, safe: str = "") -> str:
    return quote(text, safe="-_.~" + safe)


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
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, sha256_hex(canonical.encode())])
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


def send(
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


def send_signed(server: Server, signed: Signed, body: bytes = b"") -> Reply:
    return send(server, signed.method, signed.target, signed.headers, body)
