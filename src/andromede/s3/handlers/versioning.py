"""Bucket versioning: PutBucketVersioning and GetBucketVersioning."""

from __future__ import annotations

from andromede.core import errors
from andromede.core.limits import MAX_XML_BODY
from andromede.core.models import Versioning
from andromede.s3 import xml
from andromede.s3.body import check_digests, read_small_body
from andromede.s3.handlers.context import Context
from andromede.s3.http import Response, xml_response
from andromede.s3.router import Endpoint


def parse_versioning(body: bytes) -> Versioning:
    """A ``VersioningConfiguration`` document: its Status (Enabled or Suspended).
    MalformedXML for anything else; MFA delete cannot be enabled here (no MFA devices)."""
    root = xml.parse(body)
    if root.tag != "VersioningConfiguration":
        raise errors.MalformedXML()
    status = xml.text(root, "Status")
    mfa = xml.text(root, "MfaDelete")
    if mfa is not None and mfa not in ("Enabled", "Disabled"):
        raise errors.MalformedXML()
    if mfa == "Enabled":
        raise errors.InvalidArgument(
            "MFA delete cannot be enabled: this server has no MFA devices.",
            ArgumentName="MfaDelete",
            ArgumentValue=mfa,
        )
    try:
        return Versioning(status or "")
    except ValueError:
        raise errors.MalformedXML() from None


async def put_bucket_versioning(ctx: Context) -> Response:
    """PutBucketVersioning: Enabled or Suspended (never back to "never enabled")."""
    body = await read_small_body(ctx.req, ctx.auth, MAX_XML_BODY)
    check_digests(ctx.req, body, required=False)
    await ctx.services.buckets.set_versioning(ctx.principal, ctx.bucket, parse_versioning(body))
    return Response(200)


async def get_bucket_versioning(ctx: Context) -> Response:
    """GetBucketVersioning: an empty document while versioning was never enabled."""
    bucket = await ctx.services.buckets.get(ctx.principal, ctx.bucket)
    if bucket.versioning is None:
        return xml_response(xml.empty("VersioningConfiguration"))
    status = xml.element("Status", bucket.versioning.value)
    return xml_response(xml.document("VersioningConfiguration", [status]))


HANDLERS = {
    Endpoint.PutBucketVersioning: put_bucket_versioning,
    Endpoint.GetBucketVersioning: get_bucket_versioning,
}
