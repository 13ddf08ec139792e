"""Object lock: Put/GetObjectLockConfiguration, Put/GetObjectRetention, Put/GetObjectLegalHold,
and the ``x-amz-object-lock-*`` headers of writes and reads."""

from __future__ import annotations

import datetime as dt

from andromede.core import errors
from andromede.core.limits import MAX_XML_BODY
from andromede.core.models import ObjectVersion
from andromede.core.object_lock import (
    DefaultRetention,
    LockMode,
    LockRequest,
    ObjectLockConfig,
    Retention,
)
from andromede.s3 import xml
from andromede.s3.body import check_digests, read_small_body
from andromede.s3.handlers.common import asked_version, iso8601, version_header
from andromede.s3.handlers.context import Context
from andromede.s3.headers import flag
from andromede.s3.http import Request, Response, xml_response
from andromede.s3.router import Endpoint

BYPASS = "x-amz-bypass-governance-retention"


def _mode(value: str | None, where: str) -> LockMode:
    try:
        return LockMode(value or "")
    except ValueError:
        raise errors.InvalidArgument(
            "Unknown wormMode directive.", ArgumentName=where, ArgumentValue=(value or "")[:64]
        ) from None


def parse_date(value: str, where: str) -> dt.datetime:
    """An ISO 8601 date with its zone (``2030-01-01T00:00:00Z``), or InvalidArgument."""
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise errors.InvalidArgument(
            "The retain until date must be an ISO 8601 date with a time zone.",
            ArgumentName=where,
            ArgumentValue=value[:64],
        )
    return parsed.astimezone(dt.UTC)


def lock_request(req: Request) -> LockRequest:
    """The ``x-amz-object-lock-*`` headers of a PUT, a copy or CreateMultipartUpload."""
    mode = req.header("x-amz-object-lock-mode")
    until = req.header("x-amz-object-lock-retain-until-date")
    hold = req.header("x-amz-object-lock-legal-hold")
    if (mode is None) != (until is None):
        raise errors.InvalidArgument(
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied",
            ArgumentName="x-amz-object-lock-mode",
        )
    retention = None
    if mode is not None and until is not None:
        retention = Retention(
            _mode(mode, "x-amz-object-lock-mode"),
            parse_date(until, "x-amz-object-lock-retain-until-date"),
        )
    legal_hold = None
    if hold is not None:
        if hold not in ("ON", "OFF"):
            raise errors.InvalidArgument(
                "Legal Hold must be either of 'ON' or 'OFF'",
                ArgumentName="x-amz-object-lock-legal-hold",
                ArgumentValue=hold[:16],
            )
        legal_hold = hold == "ON"
    return LockRequest(retention, legal_hold)


def lock_headers(version: ObjectVersion) -> list[tuple[str, str]]:
    """How a version is locked, as GET and HEAD report it."""
    out = []
    if version.retention is not None:
        out.append(("x-amz-object-lock-mode", version.retention.mode.value))
        out.append(("x-amz-object-lock-retain-until-date", iso8601(version.retention.until)))
    if version.legal_hold:
        out.append(("x-amz-object-lock-legal-hold", "ON"))
    return out


def bypass_governance(req: Request) -> bool:
    return flag(req.header(BYPASS))


async def _required_body(ctx: Context) -> bytes:
    """A lock request's XML: Content-MD5 or a checksum is required, as on S3."""
    body = await read_small_body(ctx.req, ctx.auth, MAX_XML_BODY)
    check_digests(ctx.req, body, required=True)
    return body


def parse_lock_configuration(body: bytes) -> ObjectLockConfig:
    root = xml.parse(body)
    if root.tag != "ObjectLockConfiguration" or xml.text(root, "ObjectLockEnabled") != "Enabled":
        raise errors.MalformedXML()
    rule = root.find("Rule")
    if rule is None:
        return ObjectLockConfig()
    default = rule.find("DefaultRetention")
    if default is None:
        raise errors.MalformedXML()
    days, years = xml.text(default, "Days"), xml.text(default, "Years")
    for value in (days, years):
        if value is not None and not value.strip().lstrip("-").isdigit():
            raise errors.MalformedXML()
    mode = xml.text(default, "Mode")
    if mode not in ("GOVERNANCE", "COMPLIANCE"):
        raise errors.MalformedXML()
    return ObjectLockConfig(
        DefaultRetention(
            LockMode(mode),
            None if days is None else int(days),
            None if years is None else int(years),
        )
    )


async def put_object_lock_configuration(ctx: Context) -> Response:
    """PutObjectLockConfiguration: enable object lock (versioning must be on), set or change
    the default retention."""
    config = parse_lock_configuration(await _required_body(ctx))
    await ctx.services.locks.put_config(ctx.principal, ctx.bucket, config)
    return Response(200)


async def get_object_lock_configuration(ctx: Context) -> Response:
    """GetObjectLockConfiguration."""
    config = await ctx.services.locks.get_config(ctx.principal, ctx.bucket)
    children = [xml.element("ObjectLockEnabled", "Enabled")]
    if config.default is not None:
        d = config.default
        period = (
            xml.element("Days", d.days) if d.days is not None else xml.element("Years", d.years)
        )
        children.append(
            "<Rule><DefaultRetention>"
            + xml.element("Mode", d.mode.value)
            + period
            + "</DefaultRetention></Rule>"
        )
    return xml_response(xml.document("ObjectLockConfiguration", children))


def parse_retention(body: bytes) -> Retention | None:
    """A ``Retention`` document; an empty one removes the retention."""
    root = xml.parse(body)
    if root.tag != "Retention":
        raise errors.MalformedXML()
    mode, until = xml.text(root, "Mode"), xml.text(root, "RetainUntilDate")
    if mode is None and until is None:
        return None
    if mode is None or until is None:
        raise errors.MalformedXML()
    if mode not in ("GOVERNANCE", "COMPLIANCE"):
        raise errors.MalformedXML()
    return Retention(LockMode(mode), parse_date(until, "RetainUntilDate"))


async def put_object_retention(ctx: Context) -> Response:
    """PutObjectRetention."""
    retention = parse_retention(await _required_body(ctx))
    asked = asked_version(ctx.req)
    version = await ctx.services.locks.put_retention(
        ctx.principal, ctx.bucket, ctx.key, asked, retention, bypass=bypass_governance(ctx.req)
    )
    return Response(200, version_header(version, asked))


async def get_object_retention(ctx: Context) -> Response:
    """GetObjectRetention."""
    retention = await ctx.services.locks.get_retention(
        ctx.principal, ctx.bucket, ctx.key, asked_version(ctx.req)
    )
    children = [
        xml.element("Mode", retention.mode.value),
        xml.element("RetainUntilDate", iso8601(retention.until)),
    ]
    return xml_response(xml.document("Retention", children))


async def put_object_legal_hold(ctx: Context) -> Response:
    """PutObjectLegalHold."""
    root = xml.parse(await _required_body(ctx))
    status = xml.text(root, "Status")
    if root.tag != "LegalHold" or status not in ("ON", "OFF"):
        raise errors.MalformedXML()
    asked = asked_version(ctx.req)
    version = await ctx.services.locks.put_legal_hold(
        ctx.principal, ctx.bucket, ctx.key, asked, status == "ON"
    )
    return Response(200, version_header(version, asked))


async def get_object_legal_hold(ctx: Context) -> Response:
    """GetObjectLegalHold."""
    on = await ctx.services.locks.get_legal_hold(
        ctx.principal, ctx.bucket, ctx.key, asked_version(ctx.req)
    )
    return xml_response(xml.document("LegalHold", [xml.element("Status", "ON" if on else "OFF")]))


HANDLERS = {
    Endpoint.PutObjectLockConfiguration: put_object_lock_configuration,
    Endpoint.GetObjectLockConfiguration: get_object_lock_configuration,
    Endpoint.PutObjectRetention: put_object_retention,
    Endpoint.GetObjectRetention: get_object_retention,
    Endpoint.PutObjectLegalHold: put_object_legal_hold,
    Endpoint.GetObjectLegalHold: get_object_legal_hold,
}
