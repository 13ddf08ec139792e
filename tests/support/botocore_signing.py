"""Requests signed by botocore (pure Python or awscrt), as the SigV4 verifier receives them,
and small edits of them: the oracle of tests/unit/auth."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from urllib.parse import urlsplit

import botocore.auth
import botocore.crt.auth
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.crt.auth import CrtS3SigV4Auth, CrtS3SigV4QueryAuth

from andromede.auth.sigv4 import AuthContext, SignedRequest, authenticate

ACCESS_KEY = "AKIDANDROMEDE"
SECRET = "s3cr3t/with+odd=chars"
NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
ENDPOINT = "http://s3.local:9000"


def freeze_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs at ``NOW``, so the vectors are fixed and the verifier's clock can be too."""

    def fixed(remove_tzinfo: bool = True) -> datetime:
        return NOW.replace(tzinfo=None) if remove_tzinfo else NOW

    monkeypatch.setattr(botocore.auth, "get_current_datetime", fixed)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", fixed)


async def lookup(access_key_id: str) -> str | None:
    return SECRET if access_key_id == ACCESS_KEY else None


def received(request: AWSRequest) -> SignedRequest:
    """What the server sees for a request botocore signed (headers lowercased, latin-1)."""
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    headers = []
    for name, value in prepared.headers.items():
        # botocore's connection writes text header values as UTF-8.
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        headers.append((name.lower(), raw.decode("latin-1")))
    if not any(name == "host" for name, _ in headers):
        headers.append(("host", url.netloc))
    return SignedRequest(prepared.method, url.path, url.query, headers)


class _FixedPayloadAuth(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 signer, announcing a chosen ``x-amz-content-sha256``."""

    def __init__(self, credentials: Credentials, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


def signed(
    method: str = "GET",
    path: str = "/bucket/key",
    query: str = "",
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    region: str = "us-east-1",
    secret: str = SECRET,
    access_key: str = ACCESS_KEY,
    payload: str | None = None,
    crt: bool = False,
) -> SignedRequest:
    """Sign as botocore does: pure Python, or awscrt's signer (``crt``), which boto3 clients
    use whenever awscrt is installed."""
    url = ENDPOINT + path + ("?" + query if query else "")
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    credentials = Credentials(access_key, secret)
    if crt:
        CrtS3SigV4Auth(credentials, "s3", region).add_auth(request)
    elif payload is None:
        S3SigV4Auth(credentials, "s3", region).add_auth(request)
    else:
        _FixedPayloadAuth(credentials, region, payload).add_auth(request)
    return received(request)


def presigned(
    method: str = "GET",
    path: str = "/bucket/key",
    query: str = "",
    *,
    expires: int = 3600,
    headers: dict[str, str] | None = None,
    crt: bool = False,
) -> SignedRequest:
    url = ENDPOINT + path + ("?" + query if query else "")
    request = AWSRequest(method=method, url=url, headers=headers or {})
    signer = CrtS3SigV4QueryAuth if crt else S3SigV4QueryAuth
    signer(Credentials(ACCESS_KEY, SECRET), "s3", "eu-west-3", expires).add_auth(request)
    return received(request)


def with_header(req: SignedRequest, name: str, value: str) -> SignedRequest:
    headers = [(k, v) for k, v in req.headers if k != name] + [(name, value)]
    return dataclasses.replace(req, headers=headers)


def without_header(req: SignedRequest, name: str) -> SignedRequest:
    return dataclasses.replace(req, headers=[(k, v) for k, v in req.headers if k != name])


def header(req: SignedRequest, name: str) -> str:
    return next(v for k, v in req.headers if k == name)


async def check(req: SignedRequest, now: datetime = NOW) -> AuthContext:
    return await authenticate(req, lookup, now)
