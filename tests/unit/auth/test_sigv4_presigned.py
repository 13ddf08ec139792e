"""The SigV4 verifier on presigned URLs, with botocore as the oracle: what it presigns must
authenticate until it expires, and a malformed query must be refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest

from andromede.auth.sigv4 import PayloadMode, SignedRequest
from andromede.core import errors
from support.botocore_signing import (
    ACCESS_KEY,
    NOW,
    check,
    presigned,
    with_header,
)


# --- presigned ----------------------------------------------------------------------------------
async def test_presigned_url_authenticates() -> None:
    ctx = await check(presigned("GET", "/bucket/some%20key", "versionId=3"))
    assert ctx.presigned
    assert ctx.payload_mode is PayloadMode.UNSIGNED
    assert ctx.region == "eu-west-3"


async def test_presigned_put_with_signed_headers() -> None:
    req = presigned("PUT", headers={"Content-Type": "text/plain", "x-amz-meta-a": "b"})
    ctx = await check(req)
    assert "x-amz-meta-a" in ctx.signed_headers
    with pytest.raises(errors.SignatureDoesNotMatch):
        await check(with_header(req, "content-type", "text/html"))


async def test_presigned_url_expires() -> None:
    req = presigned(expires=60)
    await check(req, NOW + timedelta(seconds=60))
    with pytest.raises(errors.RequestExpired):
        await check(req, NOW + timedelta(seconds=61))


async def test_presigned_url_not_yet_valid() -> None:
    req = presigned()
    await check(req, NOW - timedelta(minutes=15))
    with pytest.raises(errors.AccessDenied):
        await check(req, NOW - timedelta(minutes=16))


@pytest.mark.parametrize("expires", [604_801, 10**9])
async def test_presigned_lifetime_is_at_most_a_week(expires: int) -> None:
    with pytest.raises(errors.AuthorizationQueryParametersError):
        await check(presigned(expires=expires))


async def test_presigned_with_payload_hash_header() -> None:
    digest = "a" * 64
    req = presigned("PUT", headers={"X-Amz-Content-SHA256": digest})
    ctx = await check(req)
    assert ctx.payload_mode is PayloadMode.SIGNED
    assert ctx.payload_sha256 == digest


def _replace_param(req: SignedRequest, name: str, value: str) -> SignedRequest:
    items = [item for item in req.query_string.split("&") if not item.startswith(name + "=")]
    return dataclasses.replace(req, query_string="&".join([*items, f"{name}={value}"]))


def _drop_param(req: SignedRequest, name: str) -> SignedRequest:
    items = [item for item in req.query_string.split("&") if not item.startswith(name + "=")]
    return dataclasses.replace(req, query_string="&".join(items))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda r: _drop_param(r, "X-Amz-Date"),
        lambda r: _drop_param(r, "X-Amz-Expires"),
        lambda r: _drop_param(r, "X-Amz-SignedHeaders"),
        lambda r: _drop_param(r, "X-Amz-Signature"),
        lambda r: _replace_param(r, "X-Amz-Algorithm", "AWS4-HMAC-SHA1"),
        lambda r: _replace_param(r, "X-Amz-Expires", "-5"),
        lambda r: _replace_param(r, "X-Amz-Expires", "0"),
        lambda r: _replace_param(r, "X-Amz-Expires", "1h"),
        lambda r: _replace_param(r, "X-Amz-Date", "2026-03-14T15:09:26Z"),
        lambda r: _replace_param(r, "X-Amz-Credential", "AK%2F20260314%2Fus-east-1%2Fs3"),
        lambda r: _replace_param(
            r, "X-Amz-Credential", f"{ACCESS_KEY}%2F20260315%2Fx%2Fs3%2Faws4_request"
        ),
        lambda r: _replace_param(r, "X-Amz-SignedHeaders", "x-amz-date"),
        lambda r: _replace_param(r, "X-Amz-Signature", "zz"),
        lambda r: dataclasses.replace(
            r, query_string=r.query_string + "&X-Amz-Date=20260314T150926Z"
        ),
    ],
)
async def test_malformed_presigned_query(mangle: Callable[[SignedRequest], SignedRequest]) -> None:
    with pytest.raises(errors.AuthorizationQueryParametersError):
        await check(mangle(presigned()))
