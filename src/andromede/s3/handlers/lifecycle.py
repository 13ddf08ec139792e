"""Bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration, and ``x-amz-expiration``."""

from __future__ import annotations

import datetime as dt

from andromede.core.limits import MAX_XML_BODY
from andromede.s3.body import check_digests, read_small_body
from andromede.s3.handlers.context import Context
from andromede.s3.headers import http_date
from andromede.s3.http import Response, xml_response
from andromede.s3.lifecycle_xml import parse_lifecycle, render_lifecycle
from andromede.s3.router import Endpoint


def expiration_header(found: tuple[dt.datetime, str] | None) -> list[tuple[str, str]]:
    """``x-amz-expiration: expiry-date="…", rule-id="…"`` when a rule expires the object."""
    if found is None:
        return []
    when, rule = found
    return [("x-amz-expiration", f'expiry-date="{http_date(when)}", rule-id="{rule}"')]


async def put_bucket_lifecycle(ctx: Context) -> Response:
    """PutBucketLifecycleConfiguration: the whole configuration, checked before any of it is
    kept; Content-MD5 or a checksum is required, as on S3."""
    body = await read_small_body(ctx.req, ctx.auth, MAX_XML_BODY)
    check_digests(ctx.req, body, required=True)
    await ctx.services.lifecycle.put(ctx.principal, ctx.bucket, parse_lifecycle(body))
    return Response(200)


async def get_bucket_lifecycle(ctx: Context) -> Response:
    """GetBucketLifecycleConfiguration."""
    config = await ctx.services.lifecycle.get(ctx.principal, ctx.bucket)
    return xml_response(render_lifecycle(config))


async def delete_bucket_lifecycle(ctx: Context) -> Response:
    """DeleteBucketLifecycle."""
    await ctx.services.lifecycle.delete(ctx.principal, ctx.bucket)
    return Response(204)


HANDLERS = {
    Endpoint.PutBucketLifecycleConfiguration: put_bucket_lifecycle,
    Endpoint.GetBucketLifecycleConfiguration: get_bucket_lifecycle,
    Endpoint.DeleteBucketLifecycle: delete_bucket_lifecycle,
}
