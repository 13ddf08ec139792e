"""A bucket's default encryption: Put, Get and DeleteBucketEncryption."""

from __future__ import annotations

from andromede.core import errors
from andromede.core.keys import BucketEncryption, EncryptionMode
from andromede.core.limits import MAX_XML_BODY
from andromede.s3 import sse, xml
from andromede.s3.body import read_small_body
from andromede.s3.handlers.context import Context
from andromede.s3.http import Response, xml_response
from andromede.s3.router import Endpoint

_ROOT = "ServerSideEncryptionConfiguration"
_DEFAULT = "ApplyServerSideEncryptionByDefault"


def parse_configuration(body: bytes) -> BucketEncryption:
    """A ``ServerSideEncryptionConfiguration`` document: one rule, AES256 or aws:kms."""
    root = xml.parse(body)
    rules = root.findall("Rule")
    if root.tag != _ROOT or len(rules) != 1:
        raise errors.MalformedXML()
    rule = rules[0]
    default = rule.find(_DEFAULT)
    if default is None:
        raise errors.MalformedXML()
    mode = sse.ALGORITHMS.get((xml.text(default, "SSEAlgorithm") or "").strip())
    if mode is None:
        raise errors.MalformedXML()
    key_id = (xml.text(default, "KMSMasterKeyID") or "").strip() or None
    if key_id is not None and mode is not EncryptionMode.SSE_KMS:
        raise errors.InvalidArgument(
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms "
            "or aws:kms:dsse",
            ArgumentName="ApplyServerSideEncryptionByDefault",
        )
    bucket_key = (xml.text(rule, "BucketKeyEnabled", "false") or "").strip().lower()
    if bucket_key not in ("true", "false"):
        raise errors.MalformedXML()
    return BucketEncryption(mode, key_id, bucket_key == "true")


def render_configuration(config: BucketEncryption) -> bytes:
    """The document GetBucketEncryption answers (the key id as it was configured)."""
    default = xml.element("SSEAlgorithm", config.mode.value) + xml.optional(
        "KMSMasterKeyID", config.kms_key_id
    )
    rule = (
        "<Rule>"
        + f"<{_DEFAULT}>{default}</{_DEFAULT}>"
        + xml.element("BucketKeyEnabled", str(config.bucket_key_enabled).lower())
        + "</Rule>"
    )
    return xml.document(_ROOT, [rule])


async def put_bucket_encryption(ctx: Context) -> Response:
    """PutBucketEncryption: replaces the bucket's default."""
    config = parse_configuration(await read_small_body(ctx.req, ctx.auth, MAX_XML_BODY))
    await ctx.services.encryption.put_bucket_config(ctx.principal, ctx.bucket, config)
    return Response(200)


async def get_bucket_encryption(ctx: Context) -> Response:
    """GetBucketEncryption: 404 ServerSideEncryptionConfigurationNotFoundError when unset."""
    config = await ctx.services.encryption.get_bucket_config(ctx.principal, ctx.bucket)
    return xml_response(render_configuration(config))


async def delete_bucket_encryption(ctx: Context) -> Response:
    """DeleteBucketEncryption: new objects fall back to the tenant's default key."""
    await ctx.services.encryption.delete_bucket_config(ctx.principal, ctx.bucket)
    return Response(204)


HANDLERS = {
    Endpoint.PutBucketEncryption: put_bucket_encryption,
    Endpoint.GetBucketEncryption: get_bucket_encryption,
    Endpoint.DeleteBucketEncryption: delete_bucket_encryption,
}
