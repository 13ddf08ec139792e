"""Server-side encryption of objects: which key seals a write, and opening what was sealed.

Every blob gets a fresh DEK. The DEK is wrapped by a tenant KEK (SSE-S3 and writes without
a header: the tenant's default key, or the bucket's default; SSE-KMS: the key named) or, for
SSE-C, by the customer's key, of which only a salted HMAC is kept to tell a wrong key from a
right one. The chunks' associated data binds tenant, bucket, object key and a per-blob
context (version id, or upload id and part number), see ``core/envelope.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from andromede.core import errors
from andromede.core.envelope import (
    DEFAULT_CHUNK_SIZE,
    ENVELOPE_FORMAT,
    context_digest,
    dek_aad,
    span,
)
from andromede.core.keys import (
    BucketEncryption,
    CustomerKey,
    EncryptionMode,
    ObjectEncryption,
    Sealing,
    SseRequest,
    check_usable,
)
from andromede.core.models import Bucket, Principal, Segment
from andromede.ports import BlobWriter, Envelope, MetadataStore, SiteBackend
from andromede.services.buckets import Buckets
from andromede.services.keys import Keys

_SSE_C_KEY_ID = "sse-c"
log = logging.getLogger("andromede.encryption")


@dataclass(frozen=True)
class Seal:
    """Everything needed to seal one new blob: hand ``writer`` the site's writer."""

    sealing: Sealing
    dek: bytes
    digest: bytes
    envelope: Envelope

    def writer(self, inner: BlobWriter) -> BlobWriter:
        """A writer that seals into ``inner``."""
        return self.envelope.sealing_writer(inner, self.dek, self.digest, self.sealing.chunk_size)


def customer_key_hmac(key: bytes, salt: bytes) -> bytes:
    """What is kept of an SSE-C key: enough to recognise it, useless to decrypt."""
    return hmac.new(salt, key, hashlib.sha256).digest()


class Encryption:
    """Plans, seals and opens object data; keeps buckets' default encryption."""

    def __init__(
        self,
        keys: Keys,
        envelope: Envelope,
        store: MetadataStore,
        buckets: Buckets,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        plaintext_for_benchmarks: bool = False,
    ) -> None:
        self.keys = keys
        self._envelope = envelope
        self._store = store
        self._buckets = buckets
        self._chunk_size = chunk_size
        # Only the encryption benchmark's baseline turns this on (settings say so loudly).
        self._plaintext = plaintext_for_benchmarks

    # --- bucket default encryption ---------------------------------------------------------
    async def get_bucket_config(self, principal: Principal, bucket: str) -> BucketEncryption:
        """GetBucketEncryption."""
        found = await self._buckets.get(principal, bucket)
        if found.encryption is None:
            raise errors.NoSuchEncryptionConfiguration(BucketName=bucket)
        return found.encryption

    async def put_bucket_config(
        self, principal: Principal, bucket: str, config: BucketEncryption
    ) -> None:
        """PutBucketEncryption: a KMS key must be one of the bucket owner's keys."""
        found = await self._buckets.get(principal, bucket)
        if config.mode is EncryptionMode.SSE_C:
            raise errors.InvalidArgument("SSE-C cannot be a bucket's default encryption.")
        if config.mode is EncryptionMode.SSE_KMS and config.kms_key_id:
            await self.keys.resolve(found.tenant, config.kms_key_id)
        await self._store.set_bucket_encryption(found.name, config)

    async def delete_bucket_config(self, principal: Principal, bucket: str) -> None:
        """DeleteBucketEncryption (writes then fall back to the tenant's default key)."""
        found = await self._buckets.get(principal, bucket)
        await self._store.set_bucket_encryption(found.name, None)

    # --- writes ----------------------------------------------------------------------------
    async def plan(self, bucket: Bucket, sse: SseRequest) -> ObjectEncryption:
        """The encryption a write gets: the request's, else the bucket's default, else the
        tenant's default key. Fails at once when the key cannot be used."""
        if sse.customer_key is not None:
            salt = os.urandom(16)
            return ObjectEncryption(
                EncryptionMode.SSE_C,
                customer_key_hmac=customer_key_hmac(sse.customer_key.key, salt),
                customer_key_salt=salt,
            )
        mode, reference = sse.mode, sse.kms_key_id
        if mode is None and bucket.encryption is not None:
            mode, reference = bucket.encryption.mode, bucket.encryption.kms_key_id
        if mode is EncryptionMode.SSE_KMS:
            key = await self.keys.resolve(bucket.tenant, reference)
            mode = EncryptionMode.SSE_KMS
        else:
            key = await self.keys.default_key(bucket.tenant)
            mode = EncryptionMode.SSE_S3
        check_usable(key)
        return ObjectEncryption(mode, key_id=key.key_id)

    async def seal(
        self,
        encryption: ObjectEncryption,
        tenant: str,
        bucket: str,
        key: str,
        context: str,
        customer_key: CustomerKey | None,
    ) -> Seal | None:
        """A fresh DEK for one new blob, wrapped as ``encryption`` says (None only for the
        benchmark baseline, which stores plaintext)."""
        if self._plaintext:
            return None
        dek = self._envelope.new_dek()
        if encryption.mode is EncryptionMode.SSE_C:
            secret = self.customer_key_for(encryption, customer_key)
            aad = dek_aad(tenant, _SSE_C_KEY_ID, 0, context)
            sealing = Sealing(
                ENVELOPE_FORMAT, self._chunk_size, context, self._envelope.wrap(secret, dek, aad)
            )
        else:
            if encryption.key_id is None:
                raise errors.KmsNotFound("The write names no key.")
            kms_key = await self.keys.resolve(tenant, encryption.key_id)
            kek, wrapped = await self.keys.wrap(kms_key, dek, context)
            sealing = Sealing(ENVELOPE_FORMAT, self._chunk_size, context, wrapped, kek)
        digest = context_digest(tenant, bucket, key, context, sealing.chunk_size)
        return Seal(sealing, dek, digest, self._envelope)

    @staticmethod
    def customer_key_for(encryption: ObjectEncryption, given: CustomerKey | None) -> bytes:
        """The SSE-C key of a request, checked against what the object was written with."""
        if encryption.mode is not EncryptionMode.SSE_C:
            if given is not None:
                raise errors.InvalidRequest(
                    "The encryption parameters are not applicable to this object."
                )
            return b""
        if given is None:
            raise errors.SseCustomerKeyMissing()
        salt, expected = encryption.customer_key_salt, encryption.customer_key_hmac
        if salt is None or expected is None:
            raise errors.DataCorrupted("SSE-C object without its key check.")
        if not hmac.compare_digest(customer_key_hmac(given.key, salt), expected):
            raise errors.SseCustomerKeyMismatch()
        return given.key

    def check_read_key(
        self, encryption: ObjectEncryption | None, customer_key: CustomerKey | None
    ) -> None:
        """Before any byte is read: SSE-C objects need the right key, others none."""
        if encryption is None:
            if customer_key is not None:
                raise errors.InvalidRequest(
                    "The encryption parameters are not applicable to this object."
                )
            return
        self.customer_key_for(encryption, customer_key)

    # --- reads -----------------------------------------------------------------------------
    async def dek_of(
        self,
        sealing: Sealing,
        tenant: str,
        encryption: ObjectEncryption | None,
        customer_key: CustomerKey | None,
    ) -> bytes:
        """Unwrap a blob's DEK (through the tenant's key manager, or the customer's key)."""
        if sealing.kek is None:
            if encryption is None:
                raise errors.DataCorrupted("Sealed data without its encryption record.")
            secret = self.customer_key_for(encryption, customer_key)
            aad = dek_aad(tenant, _SSE_C_KEY_ID, 0, sealing.context)
            return self._envelope.unwrap(secret, sealing.wrapped_dek, aad)
        return await self.keys.unwrap(tenant, sealing.kek, sealing.wrapped_dek, sealing.context)

    async def open_segment(
        self,
        site: SiteBackend,
        segment: Segment,
        start: int,
        end: int,
        *,
        tenant: str,
        bucket: str,
        key: str,
        encryption: ObjectEncryption | None,
        customer_key: CustomerKey | None,
    ) -> AsyncGenerator[bytes, None]:
        """Plaintext bytes ``[start, end)`` of one segment; only the chunks needed are read."""
        sealing = segment.sealing
        if sealing is None:  # stored before encryption at rest (manifest format 1)
            async for piece in site.read(segment.blob.blob_id, start, end - start):
                yield piece
            return
        dek = await self.dek_of(sealing, tenant, encryption, customer_key)
        digest = context_digest(tenant, bucket, key, sealing.context, sealing.chunk_size)
        where = span(segment.size, sealing.chunk_size, start, end)
        opener = self._envelope.piece_opener(
            dek, digest, sealing.chunk_size, segment.size, start, end
        )
        pieces = site.read(
            segment.blob.blob_id, where.offset, where.length, piece=opener.piece, transform=opener
        )
        try:
            async for piece in pieces:
                if piece:
                    yield piece
            opener.finish()
        except errors.DataCorrupted as exc:
            # A chunk failing its tag, or sealed data cut short or grown: never bytes, and
            # the trail says which blob.
            tag = isinstance(exc, errors.DecryptionFailed)
            sites = ",".join(segment.blob.layout.sites)
            log.warning(
                "stored data %s: bucket=%r key=%r sites=%s blob=%s",
                "failed authentication" if tag else "is damaged",
                bucket,
                key,
                sites,
                segment.blob.blob_id,
            )
            await self.keys.record_failure(
                "kms:DecryptionFailed" if tag else "data:Corrupted",
                tenant,
                bucket=bucket,
                key=key,
                site=sites,
                blob=segment.blob.blob_id,
            )
            raise
        finally:
            await pieces.aclose()
