"""Encryption: SSE-C objects open only with their customer's key (none of which is stored),
a bucket's default encryption chooses the key of writes that name none."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm
from andromede.core.conditions import Preconditions
from andromede.core.keys import BucketEncryption, CustomerKey, EncryptionMode, SseRequest
from andromede.services.body import body_from_bytes
from andromede.services.multipart import CompletedPart
from andromede.services.objects import Integrity, ObjectAttributes
from support.multipart import PART
from support.services import ALICE, MALLORY, ServiceStack, read_body


def customer_key(secret: bytes | None = None) -> CustomerKey:
    key = secret or os.urandom(32)
    return CustomerKey(
        key, base64.b64encode(hashlib.md5(key, usedforsecurity=False).digest()).decode()
    )


KEY = customer_key(b"k" * 32)
OTHER = customer_key(b"o" * 32)


async def put_sse_c(stack: ServiceStack, bucket: str, key: str, data: bytes) -> None:
    await stack.objects.put(
        ALICE,
        bucket,
        key,
        body_from_bytes(data),
        ObjectAttributes(),
        Integrity(),
        sse=SseRequest(customer_key=KEY),
    )


async def test_sse_c_reads_need_the_key(stack: ServiceStack, bucket: str) -> None:
    data = os.urandom(200_000)
    await put_sse_c(stack, bucket, "k", data)
    got = await stack.objects.get(ALICE, bucket, "k", customer_key=KEY, range_header="bytes=5-99")
    assert await read_body(got) == data[5:100]
    for with_body in (True, False):  # HEAD as well as GET
        with pytest.raises(errors.SseCustomerKeyMissing):
            await stack.objects.get(ALICE, bucket, "k", with_body=with_body)
        with pytest.raises(errors.SseCustomerKeyMismatch):
            await stack.objects.get(ALICE, bucket, "k", customer_key=OTHER, with_body=with_body)
    with pytest.raises(errors.SseCustomerKeyMissing):
        await stack.objects.attributes(ALICE, bucket, "k")
    assert (await stack.objects.attributes(ALICE, bucket, "k", KEY)).size == len(data)
    # Neither the key nor anything that opens the data is kept with the object.
    version = (await stack.objects.get(ALICE, bucket, "k", customer_key=KEY)).version
    assert version.encryption is not None
    assert version.encryption.key_id is None
    assert KEY.key not in repr(version).encode()
    [blob] = stack.site().blobs
    assert data[:64] not in stack.site().data(blob)


async def test_a_customer_key_on_another_object_is_refused(
    stack: ServiceStack, bucket: str
) -> None:
    await stack.put(bucket, "plain", b"x")
    with pytest.raises(errors.InvalidRequest):
        await stack.objects.get(ALICE, bucket, "plain", customer_key=KEY)


async def test_copy_of_an_sse_c_source_needs_its_key(stack: ServiceStack, bucket: str) -> None:
    await put_sse_c(stack, bucket, "src", b"secret")

    async def copy(source_key: CustomerKey | None) -> None:
        await stack.objects.copy(
            ALICE,
            (bucket, "src"),
            (bucket, "dst"),
            replace_metadata=False,
            attrs=ObjectAttributes(),
            replace_tags=False,
            source_conditions=Preconditions(),
            source_key=source_key,
        )

    with pytest.raises(errors.SseCustomerKeyMissing):
        await copy(None)
    with pytest.raises(errors.SseCustomerKeyMismatch):
        await copy(OTHER)
    await copy(KEY)
    assert await stack.get(bucket, "dst") == b"secret"  # sealed anew under the default key


async def test_sse_c_multipart_parts_need_the_uploads_key(stack: ServiceStack, bucket: str) -> None:
    up = await stack.multipart.create(
        ALICE, bucket, "mp", ObjectAttributes(), None, None, sse=SseRequest(customer_key=KEY)
    )
    data = [os.urandom(PART), b"tail"]

    async def upload(number: int, chunk: bytes, key: CustomerKey | None) -> CompletedPart:
        part = (
            await stack.multipart.upload_part(
                ALICE, bucket, "mp", up.upload_id, number, body_from_bytes(chunk), Integrity(), key
            )
        ).part
        return CompletedPart(number, part.etag)

    with pytest.raises(errors.SseCustomerKeyNotTheUploads):
        await upload(1, data[0], OTHER)
    with pytest.raises(errors.SseCustomerKeyMissing):
        await upload(1, data[0], None)
    parts = [await upload(1, data[0], KEY), await upload(2, data[1], KEY)]
    with pytest.raises(errors.SseCustomerKeyNotTheUploads):  # a key given must be the upload's
        await stack.multipart.complete(
            ALICE, bucket, "mp", up.upload_id, parts, None, None, customer_key=OTHER
        )
    await stack.multipart.complete(ALICE, bucket, "mp", up.upload_id, parts, None, None)
    got = await stack.objects.get(ALICE, bucket, "mp", customer_key=KEY)
    assert await read_body(got) == b"".join(data)
    with pytest.raises(errors.SseCustomerKeyMissing):
        await stack.objects.get(ALICE, bucket, "mp")
    # A part that does not exist is refused before the key is asked for, as S3 does.
    with pytest.raises(errors.InvalidPartNumber):
        await stack.objects.get(ALICE, bucket, "mp", part_number=3)


async def test_sse_c_completion_with_a_checksum_needs_the_key(
    stack: ServiceStack, bucket: str
) -> None:
    """S3 documents the SSE-C headers of CompleteMultipartUpload as required when the upload
    keeps a checksum algorithm (the object's checksum is sealed under the key too)."""
    up = await stack.multipart.create(
        ALICE,
        bucket,
        "mp",
        ObjectAttributes(),
        ChecksumAlgorithm.CRC32,
        None,
        sse=SseRequest(customer_key=KEY),
    )
    part = (
        await stack.multipart.upload_part(
            ALICE, bucket, "mp", up.upload_id, 1, body_from_bytes(b"x"), Integrity(), KEY
        )
    ).part
    listed = [CompletedPart(1, part.etag)]
    with pytest.raises(errors.SseCustomerKeyMissing):
        await stack.multipart.complete(ALICE, bucket, "mp", up.upload_id, listed, None, None)
    await stack.multipart.complete(
        ALICE, bucket, "mp", up.upload_id, listed, None, None, customer_key=KEY
    )
    plain = await stack.multipart.create(ALICE, bucket, "plain", ObjectAttributes(), None, None)
    with pytest.raises(errors.InvalidRequest):  # a key for an upload that has none
        await stack.multipart.complete(
            ALICE, bucket, "plain", plain.upload_id, listed, None, None, customer_key=KEY
        )


async def test_a_buckets_default_encryption(stack: ServiceStack, bucket: str) -> None:
    encryption = stack.encryption
    with pytest.raises(errors.NoSuchEncryptionConfiguration):
        await encryption.get_bucket_config(ALICE, bucket)
    kek = await stack.keys.create(ALICE, None)
    config = BucketEncryption(EncryptionMode.SSE_KMS, kek.key_id)
    await encryption.put_bucket_config(ALICE, bucket, config)
    assert await encryption.get_bucket_config(ALICE, bucket) == config

    await stack.put(bucket, "k", b"under the bucket's key")
    version = (await stack.objects.get(ALICE, bucket, "k", with_body=False)).version
    assert version.encryption is not None
    assert (version.encryption.mode, version.encryption.key_id) == (
        EncryptionMode.SSE_KMS,
        kek.key_id,
    )
    await stack.keys.disable(ALICE, kek.key_id)
    with pytest.raises(errors.KmsDisabled):  # the default's key, not silently another
        await stack.put(bucket, "k2", b"x")

    await encryption.delete_bucket_config(ALICE, bucket)
    await stack.put(bucket, "k2", b"under the tenant's default")
    version = (await stack.objects.get(ALICE, bucket, "k2", with_body=False)).version
    assert version.encryption is not None
    assert version.encryption.key_id == (await stack.keys.default_key("acme")).key_id


async def test_refused_bucket_defaults(stack: ServiceStack, bucket: str) -> None:
    theirs = await stack.keys.create(MALLORY, None)
    with pytest.raises(errors.AccessDenied):
        await stack.encryption.put_bucket_config(
            ALICE, bucket, BucketEncryption(EncryptionMode.SSE_KMS, theirs.key_id)
        )
    with pytest.raises(errors.InvalidArgument):
        await stack.encryption.put_bucket_config(
            ALICE, bucket, BucketEncryption(EncryptionMode.SSE_C)
        )
    with pytest.raises(errors.AccessDenied):
        await stack.encryption.get_bucket_config(MALLORY, bucket)
