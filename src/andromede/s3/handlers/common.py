"""Helpers shared by handlers: timestamps, owner blocks, URL encoding of listings."""

from __future__ import annotations

import datetime as dt
import urllib.parse

from andromede.core import errors
from andromede.core.models import ObjectVersion
from andromede.s3 import xml
from andromede.s3.http import Request


def iso8601(value: dt.datetime) -> str:
    """S3's XML timestamp: ``2009-10-12T17:50:30.000Z``.

    Whole seconds, as S3 shows them: a listing's LastModified then equals the Last-Modified
    header of a HEAD on the same object, which tools that compare the two rely on.
    """
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def owner(tenant: str, tag: str = "Owner") -> str:
    """An ``<Owner>`` block: the tenant is the canonical owner."""
    return f"<{tag}>" + xml.element("ID", tenant) + xml.element("DisplayName", tenant) + f"</{tag}>"


def encoder(encoding_type: str | None) -> Encoder:
    """``encoding-type``: only ``url`` exists."""
    if encoding_type is None:
        return Encoder(False)
    if encoding_type.lower() != "url":
        raise errors.InvalidArgument(
            "Invalid Encoding Method specified in Request",
            ArgumentName="encoding-type",
            ArgumentValue=encoding_type[:64],
        )
    return Encoder(True)


class Encoder:
    """Applies ``encoding-type=url`` to keys and prefixes in listings."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, value: str) -> str:
        """Encode when enabled (S3 keeps '/' unescaped)."""
        return urllib.parse.quote(value, safe="/") if self.enabled else value

    def element(self) -> str:
        """The ``<EncodingType>`` element, when enabled."""
        return xml.element("EncodingType", "url") if self.enabled else ""


def version_header(version: ObjectVersion, asked: str | None = None) -> list[tuple[str, str]]:
    """``x-amz-version-id``: for a version of a versioned bucket, or one asked for by id
    (the null version is only named when asked for)."""
    if version.null_version and asked is None:
        return []
    return [("x-amz-version-id", version.s3_version_id)]


def asked_version(req: Request) -> str | None:
    """The ``versionId`` query parameter (an empty one is none, as on S3)."""
    return req.query.get("versionId") or None
