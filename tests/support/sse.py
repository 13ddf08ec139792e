"""Server-side encryption through the S3 API: what the SSE test modules share (request
parameters per mode, keys made through the admin API, raw signed requests)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any

import pytest

from andromede.cli.client import AdminClient
from support.server import Server
from support.sigv4 import Reply, Signer, send_signed, sha256_hex

ARN = re.compile(r"^arn:aws:kms:[^:]+:[^:]+:key/[0-9a-f-]{36}$")
C_PREFIX = "x-amz-server-side-encryption-customer-"
MODES = ("none", "AES256", "aws:kms", "SSE-C")


def md5_b64(raw: bytes) -> str:
    return base64.b64encode(hashlib.md5(raw, usedforsecurity=False).digest()).decode()


def new_customer_key() -> bytes:
    return secrets.token_bytes(32)


# --- fixtures (import them by name into a test module) ----------------------------------
@pytest.fixture(scope="module")
def admin(server: Server) -> AdminClient:
    """The admin API with the root credentials (an operator)."""
    return AdminClient(server.endpoint, server.access_key, server.secret_key)


@pytest.fixture(scope="module")
def tenant(s3: Any) -> str:
    """The root's tenant: the canonical owner of the buckets it creates."""
    name = "it-owner-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=name)
    return str(s3.get_bucket_acl(Bucket=name)["Owner"]["ID"])


def create_key(admin: AdminClient, tenant: str) -> dict[str, Any]:
    out: dict[str, Any] = admin.request(
        "POST", "/v1/kms/keys", {"tenant": tenant, "description": "integration test"}
    )
    return out


@pytest.fixture(scope="module")
def kms_key(admin: AdminClient, tenant: str) -> dict[str, Any]:
    """A key of the root's tenant, made through the admin API: ``key_id`` and ``arn``."""
    return create_key(admin, tenant)


@pytest.fixture(scope="module")
def default_key_arn(s3: Any, admin: AdminClient, tenant: str) -> str:
    """The ARN of the tenant's default key (what aws:kms without a key id uses).

    The key is made at its tenant's first such write; one is made here, so that the key
    exists whichever tests ran before on this server (under xdist, maybe none)."""
    scratch = "it-default-key-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=scratch)
    s3.put_object(Bucket=scratch, Key="first-use", Body=b"", ServerSideEncryption="aws:kms")
    keys = admin.request("GET", "/v1/kms/keys", params={"tenant": tenant})
    defaults = [k["arn"] for k in keys if k["alias"] == "default"]
    assert len(defaults) == 1, keys
    return str(defaults[0])


@pytest.fixture(scope="module")
def foreign_key(server: Server, admin: AdminClient) -> dict[str, Any]:
    """A key of another tenant."""
    other, _, _ = server.new_tenant()
    return create_key(admin, other)


# --- helpers ---------------------------------------------------------------------------------
def sse_args(mode: str, kms_key_id: str | None = None, key: bytes | None = None) -> dict[str, Any]:
    """boto3 parameters asking for ``mode`` on a write (boto3 adds the SSE-C key's MD5)."""
    if mode == "none":
        return {}
    if mode == "SSE-C":
        assert key is not None
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    args: dict[str, Any] = {"ServerSideEncryption": mode}
    if mode == "aws:kms" and kms_key_id is not None:
        args["SSEKMSKeyId"] = kms_key_id
    return args


def read_args(mode: str, key: bytes | None) -> dict[str, Any]:
    return sse_args("SSE-C", key=key) if mode == "SSE-C" else {}


def copy_source_args(mode: str, key: bytes | None) -> dict[str, Any]:
    if mode != "SSE-C":
        return {}
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def assert_reports(
    response: dict[str, Any], mode: str, *, arn: str | None = None, key: bytes | None = None
) -> None:
    """The response's encryption fields say ``mode`` (no header at all means SSE-S3)."""
    if mode in ("none", "AES256"):
        assert response.get("ServerSideEncryption") == "AES256"
        assert "SSEKMSKeyId" not in response
        assert "SSECustomerAlgorithm" not in response
    elif mode == "aws:kms":
        assert response.get("ServerSideEncryption") == "aws:kms"
        assert ARN.match(response["SSEKMSKeyId"]), response["SSEKMSKeyId"]
        if arn is not None:
            assert response["SSEKMSKeyId"] == arn
        assert "SSECustomerAlgorithm" not in response
    else:
        assert "ServerSideEncryption" not in response
        assert response["SSECustomerAlgorithm"] == "AES256"
        assert key is not None
        assert response["SSECustomerKeyMD5"] == md5_b64(key)


def raw_request(
    server: Server,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    query: list[tuple[str, str]] | None = None,
) -> Reply:
    signer = Signer(server, server.access_key, server.secret_key)
    signed = signer.sign(method, path, query=query, headers=headers, payload=sha256_hex(body))
    return send_signed(server, signed, body)
