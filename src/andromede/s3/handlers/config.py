"""Bucket and object configuration reads, answered as AWS answers when none is configured.

Writing these configurations is not implemented yet: those operations answer NotImplemented
(they are absent from the handler table), never a silent success.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from andromede.s3 import xml
from andromede.s3.handlers.common import owner
from andromede.s3.handlers.context import Context
from andromede.s3.http import Response, xml_response
from andromede.s3.router import Endpoint

Handler = Callable[[Context], Awaitable[Response]]


def _missing(code: str, message: str) -> Handler:
    async def handler(ctx: Context) -> Response:
        bucket = await ctx.services.buckets.get(ctx.principal, ctx.bucket)
        body = xml.document(
            "Error",
            [
                xml.element("Code", code),
                xml.element("Message", message),
                xml.element("BucketName", bucket.name),
                xml.element("RequestId", ctx.req.request_id),
            ],
            namespace=False,
        )
        return Response(404, [("content-type", "application/xml")], body)

    return handler


def _document(build: Callable[[Context], bytes]) -> Handler:
    async def handler(ctx: Context) -> Response:
        await ctx.services.buckets.get(ctx.principal, ctx.bucket)
        return xml_response(build(ctx))

    return handler


async def _no_content(ctx: Context) -> Response:
    await ctx.services.buckets.get(ctx.principal, ctx.bucket)
    return Response(204)


def _acl(ctx: Context) -> bytes:
    grant = (
        '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:type="CanonicalUser">'
        + xml.element("ID", ctx.principal.tenant)
        + xml.element("DisplayName", ctx.principal.tenant)
        + "</Grantee>"
        + xml.element("Permission", "FULL_CONTROL")
        + "</Grant>"
    )
    return xml.document(
        "AccessControlPolicy",
        [owner(ctx.principal.tenant), "<AccessControlList>" + grant + "</AccessControlList>"],
    )


async def get_object_acl(ctx: Context) -> Response:
    """GetObjectAcl: the owner has full control (no ACLs beyond that exist)."""
    await ctx.services.objects.attributes(ctx.principal, ctx.bucket, ctx.key)
    return xml_response(_acl(ctx))


HANDLERS: dict[Endpoint, Handler] = {
    Endpoint.GetBucketPolicy: _missing("NoSuchBucketPolicy", "The bucket policy does not exist"),
    Endpoint.GetBucketPolicyStatus: _missing(
        "NoSuchBucketPolicy", "The bucket policy does not exist"
    ),
    Endpoint.GetBucketCors: _missing(
        "NoSuchCORSConfiguration", "The CORS configuration does not exist"
    ),
    Endpoint.GetBucketWebsite: _missing(
        "NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration"
    ),
    Endpoint.GetBucketReplication: _missing(
        "ReplicationConfigurationNotFoundError", "The replication configuration was not found"
    ),
    Endpoint.GetBucketOwnershipControls: _missing(
        "OwnershipControlsNotFoundError", "The bucket ownership controls were not found"
    ),
    Endpoint.GetPublicAccessBlock: _missing(
        "NoSuchPublicAccessBlockConfiguration",
        "The public access block configuration was not found",
    ),
    Endpoint.GetBucketAcl: _document(_acl),
    Endpoint.GetBucketLogging: _document(lambda _: xml.empty("BucketLoggingStatus")),
    Endpoint.GetBucketNotificationConfiguration: _document(
        lambda _: xml.empty("NotificationConfiguration")
    ),
    Endpoint.GetBucketAccelerateConfiguration: _document(
        lambda _: xml.empty("AccelerateConfiguration")
    ),
    Endpoint.GetBucketRequestPayment: _document(
        lambda _: xml.document("RequestPaymentConfiguration", [xml.element("Payer", "BucketOwner")])
    ),
    # Deleting a configuration that does not exist succeeds, as on AWS.
    Endpoint.DeleteBucketPolicy: _no_content,
    Endpoint.DeleteBucketCors: _no_content,
    Endpoint.DeleteBucketWebsite: _no_content,
    Endpoint.DeleteBucketReplication: _no_content,
    Endpoint.DeleteBucketOwnershipControls: _no_content,
    Endpoint.DeletePublicAccessBlock: _no_content,
    Endpoint.GetObjectAcl: get_object_acl,
}
