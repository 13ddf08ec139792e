"""Bucket operations: list, create, head, delete, location, listings, multi-delete."""

from __future__ import annotations

import base64
import binascii
from xml.etree.ElementTree import Element

from andromede.core import errors
from andromede.core.conditions import parse_http_date
from andromede.core.ids import is_valid_bucket_name
from andromede.core.limits import MAX_DELETE_KEYS, MAX_LIST_BUCKETS, MAX_LIST_KEYS, MAX_XML_BODY
from andromede.core.models import DeleteCondition, ListPage, ObjectSummary, VersionSummary
from andromede.http_errors import lookup
from andromede.s3 import xml
from andromede.s3.body import check_digests, read_small_body
from andromede.s3.handlers.common import Encoder, encoder, iso8601, owner
from andromede.s3.handlers.context import Context
from andromede.s3.handlers.locks import bypass_governance
from andromede.s3.headers import flag, reject_unsupported
from andromede.s3.http import Response, xml_response
from andromede.s3.router import Endpoint
from andromede.services.listing import list_page, list_versions_page

# Continuation tokens say what they continue: a ListObjectsV2 token is no bucket name.
_KEYS_TOKEN = b"v1:"
_BUCKETS_TOKEN = b"b1:"


def _encode_token(marker: str, kind: bytes = _KEYS_TOKEN) -> str:
    return base64.urlsafe_b64encode(kind + marker.encode()).decode()


def _decode_token(token: str, kind: bytes = _KEYS_TOKEN) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if not raw.startswith(kind):
            raise ValueError(token)
        return raw[len(kind) :].decode()
    except (ValueError, binascii.Error, UnicodeError):
        raise errors.InvalidArgument(
            "The continuation token provided is incorrect", ArgumentName="continuation-token"
        ) from None


def _buckets_after(ctx: Context) -> str:
    """The bucket name a ListBuckets continuation token resumes after ("" without one)."""
    token = ctx.req.query.get("continuation-token")
    if token is None:
        return ""
    name = _decode_token(token, _BUCKETS_TOKEN)
    if not is_valid_bucket_name(name):  # a token we never issued
        raise errors.InvalidArgument(
            "The continuation token provided is incorrect", ArgumentName="continuation-token"
        )
    return name


async def list_buckets(ctx: Context) -> Response:
    """ListBuckets: the caller's tenant's buckets by name, one page of ``max-buckets`` if set."""
    prefix = ctx.req.query.get("prefix", "")
    limit = None
    if ctx.req.query.get("max-buckets") is not None:
        limit = ctx.int_query("max-buckets", MAX_LIST_BUCKETS, lo=1, hi=MAX_LIST_BUCKETS)
    page = await ctx.services.buckets.list(
        ctx.principal, prefix=prefix, after=_buckets_after(ctx), limit=limit
    )
    items = "".join(
        "<Bucket>"
        + xml.element("Name", b.name)
        + xml.element("CreationDate", iso8601(b.created))
        + xml.element("BucketRegion", b.location or ctx.region)
        + "</Bucket>"
        for b in page.buckets
    )
    children = [owner(ctx.principal.tenant), "<Buckets>" + items + "</Buckets>"]
    if page.next_after is not None:
        token = _encode_token(page.next_after, _BUCKETS_TOKEN)
        children.append(xml.element("ContinuationToken", token))
    if prefix:
        children.append(xml.element("Prefix", prefix))
    return xml_response(xml.document("ListAllMyBucketsResult", children))


async def create_bucket(ctx: Context) -> Response:
    """CreateBucket with an optional LocationConstraint."""
    reject_unsupported(ctx.req)
    # Any case of "true" (aws CLI v2 sends "True"): a plain bucket where object lock was asked
    # for would let a backup administrator believe their copies immutable.
    object_lock = flag(ctx.req.header("x-amz-bucket-object-lock-enabled"))
    body = await read_small_body(ctx.req, ctx.auth, 64 * 1024)
    location = None
    if body.strip():
        root = xml.parse(body)
        if root.tag != "CreateBucketConfiguration":
            raise errors.MalformedXML()
        location = xml.text(root, "LocationConstraint")
    await ctx.services.buckets.create(ctx.principal, ctx.bucket, location, object_lock=object_lock)
    return Response(200, [("location", "/" + ctx.bucket)])


async def head_bucket(ctx: Context) -> Response:
    """HeadBucket."""
    bucket = await ctx.services.buckets.get(ctx.principal, ctx.bucket)
    return Response(200, [("x-amz-bucket-region", bucket.location or ctx.region)])


async def delete_bucket(ctx: Context) -> Response:
    """DeleteBucket."""
    await ctx.services.buckets.delete(ctx.principal, ctx.bucket)
    return Response(204)


async def get_bucket_location(ctx: Context) -> Response:
    """GetBucketLocation: empty for the default region, as AWS answers for us-east-1."""
    bucket = await ctx.services.buckets.get(ctx.principal, ctx.bucket)
    location = bucket.location
    if not location:
        return xml_response(xml.empty("LocationConstraint"))
    return xml_response(xml.document("LocationConstraint", [xml.sax_escape(location)]))


def _contents(obj: ObjectSummary, enc: Encoder, with_owner: bool, tag: str = "Contents") -> str:
    parts = [
        xml.element("Key", enc(obj.key)),
        xml.element("LastModified", iso8601(obj.last_modified)),
        xml.element("ETag", obj.etag),
        xml.element("Size", obj.size),
        xml.element("StorageClass", obj.storage_class),
    ]
    if obj.checksum_algorithm is not None:
        parts.append(xml.element("ChecksumAlgorithm", obj.checksum_algorithm.value))
    if obj.checksum_type is not None:
        parts.append(xml.element("ChecksumType", obj.checksum_type.value))
    if with_owner:
        parts.append(owner(obj.owner))
    return f"<{tag}>" + "".join(parts) + f"</{tag}>"


def _prefixes(page: ListPage, enc: Encoder) -> str:
    return "".join(
        "<CommonPrefixes>" + xml.element("Prefix", enc(p)) + "</CommonPrefixes>"
        for p in page.prefixes
    )


async def _page(ctx: Context, marker: str) -> tuple[ListPage, int]:
    await ctx.services.buckets.get(ctx.principal, ctx.bucket)
    max_keys = min(ctx.int_query("max-keys", MAX_LIST_KEYS), MAX_LIST_KEYS)
    page = await list_page(
        ctx.services.objects.store,
        ctx.bucket,
        prefix=ctx.req.query.get("prefix", ""),
        delimiter=ctx.req.query.get("delimiter", ""),
        marker=marker,
        max_keys=max_keys,
    )
    return page, max_keys


def _listing_head(
    ctx: Context, enc: Encoder, max_keys: int, page: ListPage, *, encode_prefix: bool = True
) -> list[str]:
    prefix = ctx.req.query.get("prefix", "")
    head = [
        xml.element("Name", ctx.bucket),
        xml.element("Prefix", enc(prefix) if encode_prefix else prefix),
        xml.element("MaxKeys", max_keys),
    ]
    delimiter = ctx.req.query.get("delimiter", "")
    if delimiter:
        head.append(xml.element("Delimiter", enc(delimiter)))
    head.append(xml.element("IsTruncated", str(page.is_truncated).lower()))
    return head


async def list_objects(ctx: Context) -> Response:
    """ListObjects (V1): Marker / NextMarker."""
    enc = encoder(ctx.req.query.get("encoding-type"))
    marker = ctx.req.query.get("marker", "")
    page, max_keys = await _page(ctx, marker)
    # ListObjects V1 encodes every key-like element but its Prefix (V2 encodes it too).
    children = _listing_head(ctx, enc, max_keys, page, encode_prefix=False)
    children.insert(2, xml.element("Marker", enc(marker)))
    if page.is_truncated and page.next_marker is not None and ctx.req.query.get("delimiter"):
        children.append(xml.element("NextMarker", enc(page.next_marker)))
    children += [_contents(o, enc, True) for o in page.objects]
    children += [_prefixes(page, enc), enc.element()]
    return xml_response(xml.document("ListBucketResult", children))


async def list_objects_v2(ctx: Context) -> Response:
    """ListObjectsV2: continuation tokens, start-after, fetch-owner."""
    if ctx.req.query.get("list-type") != "2":
        raise errors.InvalidArgument("Invalid list-type", ArgumentName="list-type")
    enc = encoder(ctx.req.query.get("encoding-type"))
    token = ctx.req.query.get("continuation-token")
    start_after = ctx.req.query.get("start-after", "")
    # An empty token is no token (S3 echoes it and starts at the beginning, or start-after).
    marker = _decode_token(token) if token else start_after
    page, max_keys = await _page(ctx, marker)
    children = _listing_head(ctx, enc, max_keys, page)
    children.insert(2, xml.element("KeyCount", len(page.objects) + len(page.prefixes)))
    if token is not None:
        children.append(xml.element("ContinuationToken", token))
    if page.is_truncated and page.next_marker is not None:
        children.append(xml.element("NextContinuationToken", _encode_token(page.next_marker)))
    if start_after:
        children.append(xml.element("StartAfter", enc(start_after)))
    fetch_owner = ctx.req.query.get("fetch-owner", "false").lower() == "true"
    children += [_contents(o, enc, fetch_owner) for o in page.objects]
    children += [_prefixes(page, enc), enc.element()]
    return xml_response(xml.document("ListBucketResult", children))


async def list_object_versions(ctx: Context) -> Response:
    """ListObjectVersions: versions and delete markers by key, newest first."""
    enc = encoder(ctx.req.query.get("encoding-type"))
    key_marker = ctx.req.query.get("key-marker", "")
    version_marker = ctx.req.query.get("version-id-marker", "")
    if version_marker and not key_marker:
        raise errors.InvalidArgument(
            "A version-id marker cannot be specified without a key marker.",
            ArgumentName="version-id-marker",
            ArgumentValue=version_marker,
        )
    await ctx.services.buckets.get(ctx.principal, ctx.bucket)
    max_keys = min(ctx.int_query("max-keys", MAX_LIST_KEYS), MAX_LIST_KEYS)
    prefix, delimiter = ctx.req.query.get("prefix", ""), ctx.req.query.get("delimiter", "")
    page = await list_versions_page(
        ctx.services.objects.store,
        ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        version_marker=version_marker,
        max_keys=max_keys,
    )
    children = [
        xml.element("Name", ctx.bucket),
        xml.element("Prefix", enc(prefix)),
        xml.element("KeyMarker", enc(key_marker)),
        xml.element("VersionIdMarker", version_marker),
        xml.element("MaxKeys", max_keys),
    ]
    if delimiter:
        children.append(xml.element("Delimiter", enc(delimiter)))
    children.append(xml.element("IsTruncated", str(page.is_truncated).lower()))
    if page.next_key is not None:
        children.append(xml.element("NextKeyMarker", enc(page.next_key)))
        if page.next_version_id is not None:
            children.append(xml.element("NextVersionIdMarker", page.next_version_id))
    children += [_version_entry(v, enc) for v in page.versions]
    children += [
        "<CommonPrefixes>" + xml.element("Prefix", enc(p)) + "</CommonPrefixes>"
        for p in page.prefixes
    ]
    children.append(enc.element())
    return xml_response(xml.document("ListVersionsResult", children))


def _version_entry(entry: VersionSummary, enc: Encoder) -> str:
    obj = entry.object
    head = (
        xml.element("Key", enc(obj.key))
        + xml.element("VersionId", entry.version_id)
        + xml.element("IsLatest", str(entry.latest).lower())
        + xml.element("LastModified", iso8601(obj.last_modified))
    )
    if entry.delete_marker:
        return "<DeleteMarker>" + head + owner(obj.owner) + "</DeleteMarker>"
    return _version_body(obj, enc, head)


def _version_body(obj: ObjectSummary, enc: Encoder, head: str) -> str:
    parts = [
        head,
        xml.element("ETag", obj.etag),
        xml.element("Size", obj.size),
        xml.element("StorageClass", obj.storage_class),
    ]
    if obj.checksum_algorithm is not None:
        parts.append(xml.element("ChecksumAlgorithm", obj.checksum_algorithm.value))
    if obj.checksum_type is not None:
        parts.append(xml.element("ChecksumType", obj.checksum_type.value))
    parts.append(owner(obj.owner))
    return "<Version>" + "".join(parts) + "</Version>"


def _delete_entry(item: Element) -> tuple[str, DeleteCondition | None, str | None]:
    """One ``<Object>``: its key, the ``ETag``, ``LastModifiedTime`` and ``Size`` it must
    still have to be deleted, and its ``VersionId``."""
    key = xml.text(item, "Key")
    if key is None:
        raise errors.MalformedXML()
    version_id = xml.text(item, "VersionId") or None
    etag, raw_time, raw_size = (xml.text(item, n) for n in ("ETag", "LastModifiedTime", "Size"))
    if etag is None and raw_time is None and raw_size is None:
        return key, None, version_id
    last_modified = None if raw_time is None else parse_http_date(raw_time)
    if (raw_time is not None and last_modified is None) or (
        raw_size is not None and not raw_size.strip().isdigit()
    ):
        raise errors.MalformedXML()
    size = None if raw_size is None else int(raw_size)
    condition = DeleteCondition(if_match=etag, last_modified=last_modified, size=size)
    return key, condition, version_id


async def delete_objects(ctx: Context) -> Response:
    """DeleteObjects: up to 1000 keys, quiet or verbose."""
    body = await read_small_body(ctx.req, ctx.auth, MAX_XML_BODY)
    check_digests(ctx.req, body, required=True)
    root = xml.parse(body)
    if root.tag != "Delete":
        raise errors.MalformedXML()
    quiet = (xml.text(root, "Quiet", "false") or "").strip().lower() == "true"
    objects = [_delete_entry(item) for item in root.findall("Object")]
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise errors.MalformedXML()
    results = await ctx.services.objects.delete_many(
        ctx.principal, ctx.bucket, objects, bypass_governance=bypass_governance(ctx.req)
    )
    out: list[str] = []
    for key, asked, outcome in results:
        if isinstance(outcome, errors.AndromedeError):
            code, _ = lookup(outcome)
            out.append(
                "<Error>"
                + xml.element("Key", key)
                + (xml.element("VersionId", asked) if asked is not None else "")
                + xml.element("Code", code)
                + xml.element("Message", outcome.message)
                + "</Error>"
            )
        elif not quiet:
            entry = xml.element("Key", key)
            if asked is not None:
                entry += xml.element("VersionId", asked)
            if outcome.delete_marker:
                entry += xml.element("DeleteMarker", "true")
                if outcome.version_id is not None:
                    entry += xml.element("DeleteMarkerVersionId", outcome.version_id)
            out.append("<Deleted>" + entry + "</Deleted>")
    return xml_response(xml.document("DeleteResult", out))


HANDLERS = {
    Endpoint.ListBuckets: list_buckets,
    Endpoint.CreateBucket: create_bucket,
    Endpoint.HeadBucket: head_bucket,
    Endpoint.DeleteBucket: delete_bucket,
    Endpoint.GetBucketLocation: get_bucket_location,
    Endpoint.ListObjects: list_objects,
    Endpoint.ListObjectsV2: list_objects_v2,
    Endpoint.ListObjectVersions: list_object_versions,
    Endpoint.DeleteObjects: delete_objects,
}
