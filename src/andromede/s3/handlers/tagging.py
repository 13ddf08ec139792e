"""The ``Tagging`` document, and a bucket's tag set: Put, Get and DeleteBucketTagging."""

from __future__ import annotations

from andromede.core import errors
from andromede.core.limits import MAX_XML_BODY
from andromede.s3 import xml
from andromede.s3.body import check_digests, read_small_body
from andromede.s3.handlers.context import Context
from andromede.s3.http import Response, xml_response
from andromede.s3.router import Endpoint


def parse_tagging(body: bytes) -> list[tuple[str, str]]:
    """A ``Tagging`` document's pairs, in order (the rules on them are the services')."""
    root = xml.parse(body)
    tag_set = root.find("TagSet")
    if root.tag != "Tagging" or tag_set is None:
        raise errors.MalformedXML()
    pairs: list[tuple[str, str]] = []
    for tag in tag_set.findall("Tag"):
        key, value = xml.text(tag, "Key"), xml.text(tag, "Value")
        if key is None or value is None:
            raise errors.MalformedXML()
        pairs.append((key, value))
    return pairs


def render_tagging(tags: dict[str, str]) -> bytes:
    """The ``Tagging`` document of a tag set."""
    items = "".join(
        "<Tag>" + xml.element("Key", k) + xml.element("Value", v) + "</Tag>"
        for k, v in tags.items()
    )
    return xml.document("Tagging", ["<TagSet>" + items + "</TagSet>"])


async def put_bucket_tagging(ctx: Context) -> Response:
    """PutBucketTagging: replaces the tag set. AWS requires Content-MD5 or a checksum; we take
    the request without either, and check whichever is sent."""
    body = await read_small_body(ctx.req, ctx.auth, MAX_XML_BODY)
    check_digests(ctx.req, body, required=False)
    await ctx.services.buckets.put_tags(ctx.principal, ctx.bucket, parse_tagging(body))
    return Response(204)


async def get_bucket_tagging(ctx: Context) -> Response:
    """GetBucketTagging: 404 NoSuchTagSet when the bucket has none."""
    tags = await ctx.services.buckets.get_tags(ctx.principal, ctx.bucket)
    return xml_response(render_tagging(tags))


async def delete_bucket_tagging(ctx: Context) -> Response:
    """DeleteBucketTagging."""
    await ctx.services.buckets.delete_tags(ctx.principal, ctx.bucket)
    return Response(204)


HANDLERS = {
    Endpoint.PutBucketTagging: put_bucket_tagging,
    Endpoint.GetBucketTagging: get_bucket_tagging,
    Endpoint.DeleteBucketTagging: delete_bucket_tagging,
}
