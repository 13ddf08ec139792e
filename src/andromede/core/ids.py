"""Validated identifiers. A value of these types has passed its rules; a bare ``str`` has not."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import string
import threading
import time

from andromede.core import errors

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TENANT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MAX_KEY_BYTES = 1024


class BucketName(str):
    """An S3 bucket name following the AWS general-purpose bucket rules."""

    __slots__ = ()

    def __new__(cls, value: str) -> BucketName:
        if not is_valid_bucket_name(value):
            raise errors.InvalidBucketName(BucketName=value[:255])
        return super().__new__(cls, value)


def is_valid_bucket_name(name: str) -> bool:
    """AWS rules: 3-63 chars, lowercase, digits, dots and hyphens, no IP form, no '..'."""
    if not _BUCKET_RE.match(name):
        return False
    if ".." in name or ".-" in name or "-." in name:
        return False
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        return False
    if name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        return False
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return True
    return False


class ObjectKey(str):
    """An S3 object key: 1..1024 bytes of UTF-8. It is a name, never a file path."""

    __slots__ = ()

    def __new__(cls, value: str) -> ObjectKey:
        if not value:
            raise errors.InvalidArgument("Object key must not be empty.")
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise errors.InvalidObjectName() from exc
        if len(encoded) > MAX_KEY_BYTES:
            raise errors.KeyTooLong()
        if "\x00" in value:
            # PostgreSQL text cannot hold NUL; refuse it everywhere so both backends agree.
            raise errors.InvalidArgument("Object key must not contain the NUL character.")
        return super().__new__(cls, value)


class TenantName(str):
    """A tenant (organisation) name: DNS-label style, 1-63 characters."""

    __slots__ = ()

    def __new__(cls, value: str) -> TenantName:
        if not _TENANT_RE.match(value):
            raise errors.InvalidTenantName()
        return super().__new__(cls, value)


_AK_ALPHABET = string.ascii_uppercase + string.digits
_SK_ALPHABET = string.ascii_letters + string.digits + "+/"


def new_access_key_id() -> str:
    """A 20-character access key id, AWS-shaped (``AK`` prefix, uppercase alphanumerics)."""
    return "AK" + "".join(secrets.choice(_AK_ALPHABET) for _ in range(18))


def new_secret_key() -> str:
    """A 40-character secret with ~238 bits of entropy."""
    return "".join(secrets.choice(_SK_ALPHABET) for _ in range(40))


def new_id() -> str:
    """An opaque random identifier (blob ids): 128 random bits."""
    return os.urandom(16).hex()


_issued = [0, 0]  # the last version id's milliseconds and counter, in this process
_issuing = threading.Lock()


def new_version_id() -> str:
    """A version id (or a multipart upload's, which its object's version takes): the
    milliseconds since the epoch (48 bits), a counter (16 bits), then 64 random bits; 32 hex
    characters. Unique, and sorted as text they are in creation order: strictly within one
    process (the counter orders ids of the same millisecond, and the clock never goes back
    for them), to the millisecond across gateways."""
    now = time.time_ns() // 1_000_000
    with _issuing:
        ms, counter = _issued
        if now > ms:
            ms, counter = now, 0
        elif counter < 0xFFFF:
            counter += 1
        else:
            ms, counter = ms + 1, 0
        _issued[:] = [ms, counter]
    return f"{ms:012x}{counter:04x}{os.urandom(8).hex()}"


def successor_prefix(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    UTF-8 byte order equals code point order, so bumping the last code point works; ``None``
    when no such string exists (a prefix made only of U+10FFFF).
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not valid code points
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None
