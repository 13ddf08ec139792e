"""Keys and server-side encryption: key-encryption keys (KEKs) and what an object was sealed with.

Every object version and every part is sealed under its own random data key (DEK); the DEK is
kept only wrapped: by a KEK of the owning tenant (SSE-S3, SSE-KMS, or no header at all), or by
the customer's own key for SSE-C. KEKs live in a key manager (built-in keystore, PKCS#11 HSM,
KMIP server); their life cycle (states, versions, deletion date) lives in the metadata store.
No I/O here: callers pass ``now``.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from andromede.core import errors

DEFAULT_KEY_ALIAS = "default"
# AWS KMS accepts a waiting period of 7 to 30 days before a key is deleted.
MIN_DELETION_DAYS = 7
MAX_DELETION_DAYS = 30
_KEY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ARN = re.compile(r"^arn:aws:kms:[^:]*:[^:]*:key/(?P<id>[^/]+)$")


class EncryptionMode(StrEnum):
    """How an object's DEK is protected, as S3 names it in ``x-amz-server-side-encryption``."""

    SSE_S3 = "AES256"  # the tenant's default KEK
    SSE_KMS = "aws:kms"  # a KEK the request or the bucket names
    SSE_C = "SSE-C"  # the customer's key, given with every request, never stored


class KeyState(StrEnum):
    """A KEK's life cycle, with AWS KMS's names."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PENDING_DELETION = "PendingDeletion"
    DESTROYED = "Destroyed"


@dataclass(frozen=True)
class KeyVersion:
    """One generation of a KEK: the key manager's handle for its material."""

    number: int
    handle: str
    created: dt.datetime


@dataclass(frozen=True)
class RewrapProgress:
    """The background re-wrap of DEKs under a key's current version."""

    target_version: int
    scanned: int = 0
    rewrapped: int = 0
    done: bool = False
    started: dt.datetime | None = None
    finished: dt.datetime | None = None


@dataclass(frozen=True)
class KmsKey:
    """A tenant's key-encryption key: metadata only, its material stays in ``manager``."""

    key_id: str
    tenant: str
    manager: str
    state: KeyState
    created: dt.datetime
    versions: tuple[KeyVersion, ...]
    description: str = ""
    alias: str | None = None  # "default" for the tenant's default KEK
    deletion_date: dt.datetime | None = None
    rewrap: RewrapProgress | None = None

    @property
    def current(self) -> KeyVersion:
        """The version new DEKs are wrapped under."""
        return self.versions[-1]

    def version(self, number: int) -> KeyVersion:
        """A given version, or KmsInvalidState when it is unknown (destroyed key)."""
        for v in self.versions:
            if v.number == number:
                return v
        raise errors.KmsInvalidState(f"Key {self.key_id} has no version {number}.")

    def arn(self, region: str) -> str:
        """The ARN S3 clients see in ``x-amz-server-side-encryption-aws-kms-key-id``."""
        return key_arn(region, self.tenant, self.key_id)


def key_arn(region: str, tenant: str, key_id: str) -> str:
    """A tenant key's ARN, in the shape AWS KMS gives (the tenant stands for the account)."""
    return f"arn:aws:kms:{region}:{tenant}:key/{key_id}"


def new_key_id() -> str:
    """A fresh KMS-style key id (a UUID)."""
    return str(uuid.uuid4())


def parse_key_reference(text: str) -> str:
    """The key id in a key id, a key ARN or ``alias/default``; InvalidArgument otherwise."""
    text = text.strip()
    match = _ARN.match(text)
    if match:
        text = match.group("id")
    if text in (DEFAULT_KEY_ALIAS, f"alias/{DEFAULT_KEY_ALIAS}", "alias/aws/s3"):
        return DEFAULT_KEY_ALIAS
    if not _KEY_ID.match(text):
        raise errors.KmsNotFound(f"Invalid keyId '{text[:80]}'")
    return text


def check_usable(key: KmsKey) -> None:
    """Raise the KMS error a request gets when ``key`` cannot wrap or unwrap now."""
    if key.state is KeyState.ENABLED:
        return
    if key.state is KeyState.DISABLED:
        raise errors.KmsDisabled(f"{key.key_id} is disabled.")
    if key.state is KeyState.PENDING_DELETION:
        raise errors.KmsInvalidState(f"{key.key_id} is pending deletion.")
    raise errors.KmsInvalidState(f"{key.key_id} is destroyed: its data cannot be recovered.")


def deletion_date(now: dt.datetime, days: int) -> dt.datetime:
    """When a key scheduled now for deletion is destroyed; the window is 7 to 30 days."""
    if not MIN_DELETION_DAYS <= days <= MAX_DELETION_DAYS:
        raise errors.InvalidArgument(
            f"The waiting period must be between {MIN_DELETION_DAYS} and {MAX_DELETION_DAYS} days."
        )
    return now + dt.timedelta(days=days)


@dataclass(frozen=True)
class KekRef:
    """Which KEK (and version) wraps a DEK."""

    key_id: str
    version: int


@dataclass(frozen=True)
class Sealing:
    """How one blob (an object's bytes, or one part) is sealed: its wrapped DEK and context.

    ``context`` is what the chunks' associated data binds besides tenant, bucket and key: the
    version id of a single PUT or copy, ``<upload id>/<part number>`` for a part. ``kek`` names
    the tenant KEK version that wraps the DEK; None means the customer's key wraps it (SSE-C).
    """

    envelope: int
    chunk_size: int
    context: str
    wrapped_dek: bytes
    kek: KekRef | None = None


@dataclass(frozen=True)
class ObjectEncryption:
    """How an object (or an upload) is encrypted, as S3 reports it.

    For SSE-C only a salted HMAC of the customer's key is kept, to tell a wrong key (403)
    from a right one before any data is read; the key itself and its MD5 are never stored.
    """

    mode: EncryptionMode
    key_id: str | None = None  # the KEK for SSE-S3 / SSE-KMS
    customer_key_hmac: bytes | None = None
    customer_key_salt: bytes | None = None


@dataclass(frozen=True)
class CustomerKey:
    """An SSE-C key as a request supplies it (already checked against its MD5)."""

    key: bytes = field(repr=False)
    md5_b64: str


@dataclass(frozen=True)
class SseRequest:
    """The encryption a write asks for through its ``x-amz-server-side-encryption*`` headers.

    ``mode`` None means no header: the bucket's default applies, else the tenant's default KEK.
    """

    mode: EncryptionMode | None = None
    kms_key_id: str | None = None  # as given (id or ARN); parsed by the key service
    customer_key: CustomerKey | None = None


@dataclass(frozen=True)
class BucketEncryption:
    """A bucket's default encryption (PutBucketEncryption)."""

    mode: EncryptionMode  # SSE_S3 or SSE_KMS
    kms_key_id: str | None = None
    bucket_key_enabled: bool = False


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
