"""Server-side encryption headers: what a request asks for, and what a response reports.

Only the protocol lives here (header names, their syntax, S3's messages): which key wraps
what, and whether a customer key matches an object, is decided by the services.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from andromede.core import errors
from andromede.core.keys import (
    CustomerKey,
    EncryptionMode,
    ObjectEncryption,
    SseRequest,
    key_arn,
)
from andromede.s3.http import Request

SSE = "x-amz-server-side-encryption"
KMS_KEY_ID = SSE + "-aws-kms-key-id"
CONTEXT = SSE + "-context"
BUCKET_KEY = SSE + "-bucket-key-enabled"
CUSTOMER = SSE + "-customer-"
COPY_SOURCE_CUSTOMER = "x-amz-copy-source-server-side-encryption-customer-"
CUSTOMER_ALGORITHM = "AES256"
CUSTOMER_KEY_BYTES = 32

# x-amz-server-side-encryption and SSEAlgorithm values; aws:kms:dsse (dual-layer) is sealed
# as aws:kms is.
ALGORITHMS = {
    "AES256": EncryptionMode.SSE_S3,
    "aws:kms": EncryptionMode.SSE_KMS,
    "aws:kms:dsse": EncryptionMode.SSE_KMS,
}
_KMS_ONLY = (KMS_KEY_ID, CONTEXT)
_CUSTOMER_MUST = "Requests specifying Server Side Encryption with Customer provided keys must "


def customer_key(req: Request, prefix: str = CUSTOMER) -> CustomerKey | None:
    """The SSE-C key in ``<prefix>algorithm``, ``<prefix>key`` and ``<prefix>key-MD5``.

    None when none of the three is present; the key is checked against its MD5 here, so that
    a key mangled in transit is never used to seal data.
    """
    algorithm = req.header(prefix + "algorithm")
    encoded = req.header(prefix + "key")
    md5 = req.header(prefix + "key-md5")
    if algorithm is None and encoded is None and md5 is None:
        return None
    if algorithm is None:
        raise _invalid(
            _CUSTOMER_MUST + "provide a valid encryption algorithm.", prefix + "algorithm"
        )
    if algorithm.strip() != CUSTOMER_ALGORITHM:
        raise errors.InvalidEncryptionAlgorithm(
            "The Encryption request you specified is not valid. Supported value: AES256.",
            ArgumentName=prefix + "algorithm",
            ArgumentValue=algorithm[:64],
        )
    if encoded is None:
        raise _invalid(_CUSTOMER_MUST + "provide an appropriate secret key.", prefix + "key")
    if md5 is None:
        raise _invalid(
            _CUSTOMER_MUST + "provide the client calculated MD5 of the secret key.",
            prefix + "key-MD5",
        )
    key = _b64decode(encoded)
    if key is None or len(key) != CUSTOMER_KEY_BYTES:
        raise _invalid("The secret key was invalid for the specified algorithm.", prefix + "key")
    digest = hashlib.md5(key, usedforsecurity=False).digest()
    claimed = _b64decode(md5)
    if claimed is None or not hmac.compare_digest(claimed, digest):
        raise errors.SseCustomerKeyMd5Mismatch(ArgumentName=prefix + "key-MD5")
    return CustomerKey(key, base64.b64encode(digest).decode("ascii"))


def source_customer_key(req: Request) -> CustomerKey | None:
    """The copy source's SSE-C key (``x-amz-copy-source-server-side-encryption-customer-*``)."""
    return customer_key(req, COPY_SOURCE_CUSTOMER)


def write_request(req: Request) -> SseRequest:
    """The encryption a write asks for (PutObject, CopyObject, CreateMultipartUpload)."""
    customer = customer_key(req)
    value = req.header(SSE)
    if customer is not None:
        if value is not None or any(name in req.headers for name in _KMS_ONLY):
            raise _invalid(
                "Server Side Encryption with Customer provided key is incompatible with the "
                "encryption method specified",
                SSE,
            )
        return SseRequest(EncryptionMode.SSE_C, customer_key=customer)
    mode = _mode(value) if value is not None else None
    if mode is not EncryptionMode.SSE_KMS:
        for name in _KMS_ONLY:
            if name in req.headers:
                raise _invalid(
                    "Server Side Encryption with AWS KMS managed key requires HTTP header "
                    f"{SSE} : aws:kms",
                    name,
                )
    context = req.header(CONTEXT)
    if context is not None:
        _check_context(context)
    bucket_key = req.header(BUCKET_KEY)
    if bucket_key is not None and bucket_key.strip().lower() not in ("true", "false"):
        raise _invalid("The value of the bucket key header is not valid.", BUCKET_KEY)
    kms_key_id = (req.header(KMS_KEY_ID) or "").strip() or None
    return SseRequest(mode, kms_key_id=kms_key_id)


def read_key(req: Request) -> CustomerKey | None:
    """The SSE-C key of a request that reads or adds to an object (GET, HEAD, UploadPart…).

    Those requests cannot choose an encryption: S3 refuses the write-side headers on them.
    """
    for name in (SSE, *_KMS_ONLY):
        if name in req.headers:
            raise _invalid(f"{SSE} header is not supported for this operation.", name)
    return customer_key(req)


def part_key(req: Request) -> CustomerKey | None:
    """The SSE-C key of an UploadPart or a CompleteMultipartUpload. SDKs repeat the upload's
    SSE-S3 or SSE-KMS headers on them, and S3 takes them: the upload's encryption governs
    whatever they say, so they are checked for syntax only."""
    if SSE in req.headers:
        write_request(req)
    return customer_key(req)


def response_headers(
    encryption: ObjectEncryption | None,
    *,
    region: str,
    tenant: str,
    customer: CustomerKey | None = None,
) -> list[tuple[str, str]]:
    """What S3 reports about an object's encryption; nothing for unencrypted (legacy) data.

    ``customer`` is the request's own SSE-C key: its MD5 is echoed, never stored.
    """
    if encryption is None:
        return []
    if encryption.mode is EncryptionMode.SSE_C:
        return customer_headers(customer)
    out = [(SSE, encryption.mode.value)]
    if encryption.mode is EncryptionMode.SSE_KMS and encryption.key_id is not None:
        out.append((KMS_KEY_ID, key_arn(region, tenant, encryption.key_id)))
    return out


def customer_headers(customer: CustomerKey | None) -> list[tuple[str, str]]:
    """SSE-C's response headers: the algorithm, and the MD5 of the request's key if it gave one."""
    out = [(CUSTOMER + "algorithm", CUSTOMER_ALGORITHM)]
    if customer is not None:
        out.append((CUSTOMER + "key-MD5", customer.md5_b64))
    return out


def _mode(value: str) -> EncryptionMode:
    mode = ALGORITHMS.get(value.strip())
    if mode is None:
        raise errors.InvalidArgument(
            "The encryption method specified is not supported",
            ArgumentName=SSE,
            ArgumentValue=value[:64],
        )
    return mode


def _check_context(value: str) -> None:
    # The context is authenticated by KMS on AWS; here it is only checked for shape.
    raw = _b64decode(value)
    try:
        parsed = json.loads(raw.decode("utf-8")) if raw is not None else None
    except (UnicodeDecodeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise _invalid("The encryption context is not a base64-encoded UTF-8 JSON object.", CONTEXT)


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _invalid(message: str, header: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(message, ArgumentName=header)
