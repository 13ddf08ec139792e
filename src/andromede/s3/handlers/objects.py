"""Object operations: put, get, head, delete, copy, tagging, attributes."""

from __future__ import annotations

from andromede.core import errors
from andromede.core.keys import CustomerKey
from andromede.core.limits import MAX_SINGLE_PUT, MAX_XML_BODY
from andromede.core.models import Checksum, ObjectVersion
from andromede.s3 import sse, xml
from andromede.s3.body import incoming_body, read_small_body
from andromede.s3.handlers.common import asked_version, iso8601, version_header
from andromede.s3.handlers.context import Context
from andromede.s3.handlers.lifecycle import expiration_header
from andromede.s3.handlers.locks import bypass_governance, lock_headers, lock_request
from andromede.s3.handlers.tagging import parse_tagging, render_tagging
from andromede.s3.headers import (
    checksum_algorithm,
    copy_source,
    delete_condition,
    http_date,
    integrity,
    object_attributes,
    object_headers,
    preconditions,
    reported_checksum,
    write_condition,
)
from andromede.s3.http import Response, xml_response
from andromede.s3.router import Endpoint


def checksum_headers(checksum: Checksum | None) -> list[tuple[str, str]]:
    """``x-amz-checksum-<alg>`` and ``x-amz-checksum-type`` for a write response."""
    if checksum is None:
        return []
    return [
        (checksum.algorithm.header, checksum.value),
        ("x-amz-checksum-type", checksum.type.value),
    ]


def checksum_elements(checksum: Checksum | None) -> list[str]:
    """``<ChecksumCRC32>…</ChecksumCRC32><ChecksumType>…</ChecksumType>`` for XML results."""
    if checksum is None:
        return []
    name = "Checksum" + checksum.algorithm.value
    return [xml.element(name, checksum.value), xml.element("ChecksumType", checksum.type.value)]


def encryption_headers(
    ctx: Context, version: ObjectVersion, customer: CustomerKey | None
) -> list[tuple[str, str]]:
    """How ``version`` is encrypted, as S3 reports it (``customer``: the request's SSE-C key)."""
    return sse.response_headers(
        version.encryption, region=ctx.region, tenant=version.owner, customer=customer
    )


async def put_object(ctx: Context) -> Response:
    """PutObject."""
    attrs = object_attributes(ctx.req)
    claims = integrity(ctx.req)
    encryption = sse.write_request(ctx.req)
    body = incoming_body(ctx.req, ctx.auth)
    version = await ctx.services.objects.put(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        body,
        attrs,
        claims,
        write_condition(ctx.req),
        sse=encryption,
        lock=lock_request(ctx.req),
    )
    headers = [("etag", version.etag), *checksum_headers(version.checksum)]
    headers += version_header(version)
    headers += expiration_header(await ctx.services.lifecycle.expiry_of(ctx.bucket, version))
    return Response(200, headers + encryption_headers(ctx, version, encryption.customer_key))


def _part_number(ctx: Context) -> int | None:
    if "partNumber" not in ctx.req.query:
        return None
    return ctx.int_query("partNumber", 1, 1, 10_000)


async def _read(ctx: Context, with_body: bool) -> Response:
    part_number = _part_number(ctx)
    customer = sse.read_key(ctx.req)
    asked = asked_version(ctx.req)
    try:
        result = await ctx.services.objects.get(
            ctx.principal,
            ctx.bucket,
            ctx.key,
            range_header=ctx.req.header("range"),
            part_number=part_number,
            preconditions=preconditions(ctx.req),
            with_body=with_body,
            customer_key=customer,
            version_id=asked,
        )
    except errors.NotModified as exc:
        not_modified = Response(304)
        if exc.etag is not None:
            not_modified.header("etag", exc.etag)
        if exc.last_modified is not None:
            not_modified.header("last-modified", http_date(exc.last_modified))
        return not_modified
    version = result.version
    whole = result.byte_range is None
    wants_checksum = (ctx.req.header("x-amz-checksum-mode") or "").upper() == "ENABLED"
    # A Range gets no checksum (it covers bytes no checksum was taken of); a part gets its own.
    reported = (
        reported_checksum(version, part_number)
        if wants_checksum and (whole or part_number is not None)
        else None
    )
    headers = object_headers(version, ctx.req, checksum=reported, part=part_number is not None)
    headers += encryption_headers(ctx, version, customer)
    headers += version_header(version, asked)
    headers += lock_headers(version)
    if asked is None:
        found = await ctx.services.lifecycle.expiry_of(ctx.bucket, version)
        headers += expiration_header(found)
    status = 200
    length = version.size
    if result.byte_range is not None:
        length = result.byte_range.length
        if part_number is None or version.parts_count is not None:
            status = 206
            headers.append(("content-range", result.byte_range.content_range()))
    body = result.body if result.body is not None else b""
    return Response(status, headers, body, content_length=length)


async def get_object(ctx: Context) -> Response:
    """GetObject: whole, a Range, or a part."""
    return await _read(ctx, with_body=True)


async def head_object(ctx: Context) -> Response:
    """HeadObject."""
    return await _read(ctx, with_body=False)


async def delete_object(ctx: Context) -> Response:
    """DeleteObject: 204 whether or not the key existed, unless an existing object fails the
    request's conditions."""
    done = await ctx.services.objects.delete(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        delete_condition(ctx.req),
        asked_version(ctx.req),
        bypass_governance=bypass_governance(ctx.req),
    )
    response = Response(204)
    if done.version_id is not None:
        response.header("x-amz-version-id", done.version_id)
    if done.delete_marker:
        response.header("x-amz-delete-marker", "true")
    return response


def _directive(ctx: Context, name: str) -> bool:
    value = (ctx.req.header(name) or "COPY").upper()
    if value not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument(f"Unknown {name}", ArgumentName=name, ArgumentValue=value)
    return value == "REPLACE"


async def copy_object(ctx: Context) -> Response:
    """CopyObject with metadata and tagging directives and copy-source conditions."""
    src_bucket, src_key, source_version = copy_source(ctx.req)
    replace_metadata = _directive(ctx, "x-amz-metadata-directive")
    replace_tags = _directive(ctx, "x-amz-tagging-directive")
    attrs = object_attributes(ctx.req)
    encryption = sse.write_request(ctx.req)
    source_key = sse.source_customer_key(ctx.req)
    src = await ctx.services.objects.head_for_copy(
        ctx.principal, src_bucket, src_key, source_version
    )
    if src.size > MAX_SINGLE_PUT:
        raise errors.InvalidRequest(
            "The specified copy source is larger than the maximum allowable size for a copy "
            f"source: {MAX_SINGLE_PUT}"
        )
    _, version = await ctx.services.objects.copy(
        ctx.principal,
        (src_bucket, src_key),
        (ctx.bucket, ctx.key),
        replace_metadata=replace_metadata,
        attrs=attrs,
        replace_tags=replace_tags,
        source_conditions=preconditions(ctx.req, "x-amz-copy-source-"),
        algorithm=checksum_algorithm(ctx.req),
        condition=write_condition(ctx.req),
        sse=encryption,
        source_key=source_key,
        source_version=source_version,
        lock=lock_request(ctx.req),
    )
    body = xml.document(
        "CopyObjectResult",
        [
            xml.element("LastModified", iso8601(version.last_modified)),
            xml.element("ETag", version.etag),
            *checksum_elements(version.checksum),
        ],
    )
    response = xml_response(body)
    response.headers += encryption_headers(ctx, version, encryption.customer_key)
    response.headers += version_header(version)
    if source_version is not None or not src.null_version:
        response.header("x-amz-copy-source-version-id", src.s3_version_id)
    return response


async def get_object_tagging(ctx: Context) -> Response:
    """GetObjectTagging."""
    asked = asked_version(ctx.req)
    version = await ctx.services.objects.get_tags(ctx.principal, ctx.bucket, ctx.key, asked)
    response = xml_response(render_tagging(dict(sorted(version.tags.items()))))
    response.headers += version_header(version, asked)
    return response


async def put_object_tagging(ctx: Context) -> Response:
    """PutObjectTagging: replaces the tag set."""
    pairs = parse_tagging(await read_small_body(ctx.req, ctx.auth, MAX_XML_BODY))
    asked = asked_version(ctx.req)
    version = await ctx.services.objects.put_tags(ctx.principal, ctx.bucket, ctx.key, pairs, asked)
    return Response(200, version_header(version, asked))


async def delete_object_tagging(ctx: Context) -> Response:
    """DeleteObjectTagging."""
    asked = asked_version(ctx.req)
    version = await ctx.services.objects.delete_tags(ctx.principal, ctx.bucket, ctx.key, asked)
    return Response(204, version_header(version, asked))


_ATTRIBUTES = {"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"}


def _header_int(ctx: Context, name: str, default: int) -> int:
    raw = ctx.req.header(name)
    if raw is None:
        return default
    if not raw.strip().isdigit():
        raise errors.InvalidArgument(f"Invalid {name}", ArgumentName=name)
    return int(raw)


def _object_parts(ctx: Context, version: ObjectVersion) -> str:
    count = version.parts_count
    if count is None:
        return ""
    marker = _header_int(ctx, "x-amz-part-number-marker", 0)
    max_parts = _header_int(ctx, "x-amz-max-parts", 1000)
    after = [s for s in version.manifest.segments if (s.part_number or 0) > marker]
    chosen, truncated = after[:max_parts], len(after) > max_parts
    items = "".join(
        "<Part>"
        + xml.element("PartNumber", s.part_number)
        + xml.element("Size", s.size)
        + (
            xml.element("Checksum" + s.checksum.algorithm.value, s.checksum.value)
            if s.checksum is not None
            else ""
        )
        + "</Part>"
        for s in chosen
    )
    return (
        "<ObjectParts>"
        + xml.element("PartsCount", count)
        + xml.element("PartNumberMarker", marker)
        + xml.element("NextPartNumberMarker", chosen[-1].part_number if chosen else marker)
        + xml.element("MaxParts", max_parts)
        + xml.element("IsTruncated", str(truncated).lower())
        + items
        + "</ObjectParts>"
    )


async def get_object_attributes(ctx: Context) -> Response:
    """GetObjectAttributes."""
    raw = ctx.req.header("x-amz-object-attributes")
    wanted = {a.strip() for a in (raw or "").split(",") if a.strip()}
    if not wanted or not wanted <= _ATTRIBUTES:
        raise errors.InvalidArgument("Invalid attribute name specified.")
    asked = asked_version(ctx.req)
    version = await ctx.services.objects.attributes(
        ctx.principal, ctx.bucket, ctx.key, sse.read_key(ctx.req), asked
    )
    children: list[str] = []
    if "ETag" in wanted:
        children.append(xml.element("ETag", version.etag.strip('"')))
    if "Checksum" in wanted and version.checksum is not None:
        children.append("<Checksum>" + "".join(checksum_elements(version.checksum)) + "</Checksum>")
    if "ObjectParts" in wanted:
        children.append(_object_parts(ctx, version))
    if "StorageClass" in wanted:
        children.append(xml.element("StorageClass", version.storage_class))
    if "ObjectSize" in wanted:
        children.append(xml.element("ObjectSize", version.size))
    response = xml_response(xml.document("GetObjectAttributesResponse", children))
    response.headers += version_header(version, asked)
    return response.header("last-modified", http_date(version.last_modified))


HANDLERS = {
    Endpoint.PutObject: put_object,
    Endpoint.GetObject: get_object,
    Endpoint.HeadObject: head_object,
    Endpoint.DeleteObject: delete_object,
    Endpoint.CopyObject: copy_object,
    Endpoint.GetObjectTagging: get_object_tagging,
    Endpoint.PutObjectTagging: put_object_tagging,
    Endpoint.DeleteObjectTagging: delete_object_tagging,
    Endpoint.GetObjectAttributes: get_object_attributes,
}
