"""Multipart upload operations."""

from __future__ import annotations

from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm
from andromede.core.keys import CustomerKey
from andromede.core.limits import MAX_PART_NUMBER, MAX_XML_BODY
from andromede.core.models import MultipartUpload
from andromede.s3 import sse, xml
from andromede.s3.body import incoming_body, read_small_body
from andromede.s3.handlers.common import encoder, iso8601, owner, version_header
from andromede.s3.handlers.context import Context
from andromede.s3.handlers.locks import lock_request
from andromede.s3.handlers.objects import (
    checksum_elements,
    checksum_headers,
    encryption_headers,
)
from andromede.s3.headers import (
    checksum_algorithm,
    checksum_type,
    copy_source,
    integrity,
    object_attributes,
    preconditions,
    write_condition,
)
from andromede.s3.http import Response, xml_response
from andromede.s3.router import Endpoint
from andromede.services.multipart import CompletedPart, StoredPart


def _upload_id(ctx: Context) -> str:
    upload_id = ctx.req.query.get("uploadId", "")
    if not upload_id:
        raise errors.InvalidArgument(
            "This operation requires an upload id.", ArgumentName="uploadId"
        )
    return upload_id


async def create_multipart_upload(ctx: Context) -> Response:
    """CreateMultipartUpload."""
    attrs = object_attributes(ctx.req)
    encryption = sse.write_request(ctx.req)
    upload = await ctx.services.multipart.create(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        attrs,
        checksum_algorithm(ctx.req),
        checksum_type(ctx.req),
        sse=encryption,
        lock=lock_request(ctx.req),
    )
    children = [
        xml.element("Bucket", ctx.bucket),
        xml.element("Key", ctx.key),
        xml.element("UploadId", upload.upload_id),
    ]
    response = xml_response(xml.document("InitiateMultipartUploadResult", children))
    if upload.checksum_algorithm is not None:
        response.header("x-amz-checksum-algorithm", upload.checksum_algorithm.value)
    if upload.checksum_type is not None:
        response.header("x-amz-checksum-type", upload.checksum_type.value)
    response.headers += sse.response_headers(
        upload.encryption, region=ctx.region, tenant=upload.owner, customer=encryption.customer_key
    )
    return response


def _part_number(ctx: Context) -> int:
    return ctx.int_query("partNumber", 0, 1, MAX_PART_NUMBER)


async def upload_part(ctx: Context) -> Response:
    """UploadPart."""
    part_number = _part_number(ctx)
    claims = integrity(ctx.req)
    customer = sse.part_key(ctx.req)
    body = incoming_body(ctx.req, ctx.auth)
    stored = await ctx.services.multipart.upload_part(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        _upload_id(ctx),
        part_number,
        body,
        claims,
        customer_key=customer,
    )
    part = stored.part
    checksum = (
        part.checksum
        if claims.algorithm in (None, part.checksum and part.checksum.algorithm)
        else None
    )
    headers = [(h, v) for h, v in checksum_headers(checksum) if h != "x-amz-checksum-type"]
    return Response(200, [("etag", part.etag), *headers, *_part_encryption(ctx, stored, customer)])


def _part_encryption(
    ctx: Context, stored: StoredPart, customer: CustomerKey | None
) -> list[tuple[str, str]]:
    """A part reports its upload's encryption, as S3 does (SSE-C: the request's key MD5)."""
    upload = stored.upload
    return sse.response_headers(
        upload.encryption, region=ctx.region, tenant=upload.owner, customer=customer
    )


async def upload_part_copy(ctx: Context) -> Response:
    """UploadPartCopy, optionally of a byte range."""
    part_number = _part_number(ctx)
    customer = sse.read_key(ctx.req)
    source_key = sse.source_customer_key(ctx.req)
    source = copy_source(ctx.req)
    src, stored = await ctx.services.multipart.upload_part_copy(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        _upload_id(ctx),
        part_number,
        source,
        ctx.req.header("x-amz-copy-source-range"),
        preconditions(ctx.req, "x-amz-copy-source-"),
        customer_key=customer,
        source_key=source_key,
    )
    children = [
        xml.element("LastModified", iso8601(stored.part.last_modified)),
        xml.element("ETag", stored.part.etag),
    ]
    response = xml_response(xml.document("CopyPartResult", children))
    response.headers += _part_encryption(ctx, stored, customer)
    if not src.null_version or source[2] is not None:
        response.header("x-amz-copy-source-version-id", src.s3_version_id)
    return response


def _parse_complete(body: bytes) -> list[CompletedPart]:
    root = xml.parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise errors.MalformedXML()
    parts: list[CompletedPart] = []
    for item in root.findall("Part"):
        number, etag = xml.text(item, "PartNumber"), xml.text(item, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise errors.MalformedXML()
        checksums = {
            alg: value
            for alg in ChecksumAlgorithm
            if (value := xml.text(item, "Checksum" + alg.value)) is not None
        }
        parts.append(CompletedPart(int(number), etag, checksums))
    if len(parts) > MAX_PART_NUMBER:
        raise errors.MalformedXML()
    return parts


async def complete_multipart_upload(ctx: Context) -> Response:
    """CompleteMultipartUpload."""
    customer = sse.part_key(ctx.req)
    parts = _parse_complete(await read_small_body(ctx.req, ctx.auth, MAX_XML_BODY))
    full = [
        (a, ctx.req.headers[a.header]) for a in ChecksumAlgorithm if a.header in ctx.req.headers
    ]
    if len(full) > 1:
        raise errors.InvalidRequest("Expecting a single x-amz-checksum- header")
    version = await ctx.services.multipart.complete(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        _upload_id(ctx),
        parts,
        full[0] if full else None,
        checksum_type(ctx.req),
        write_condition(ctx.req),
        customer_key=customer,
    )
    children = [
        xml.element("Location", f"/{ctx.bucket}/{ctx.key}"),
        xml.element("Bucket", ctx.bucket),
        xml.element("Key", ctx.key),
        xml.element("ETag", version.etag),
        *checksum_elements(version.checksum),
    ]
    response = xml_response(xml.document("CompleteMultipartUploadResult", children))
    response.headers += encryption_headers(ctx, version, customer)
    response.headers += version_header(version)
    return response


async def abort_multipart_upload(ctx: Context) -> Response:
    """AbortMultipartUpload."""
    await ctx.services.multipart.abort(ctx.principal, ctx.bucket, ctx.key, _upload_id(ctx))
    return Response(204)


async def list_parts(ctx: Context) -> Response:
    """ListParts."""
    marker = ctx.int_query("part-number-marker", 0, 0, MAX_PART_NUMBER)
    max_parts = min(ctx.int_query("max-parts", 1000, 0), 1000)
    page = await ctx.services.multipart.list_parts(
        ctx.principal, ctx.bucket, ctx.key, _upload_id(ctx), marker, max_parts
    )
    upload = page.upload
    children = [
        xml.element("Bucket", ctx.bucket),
        xml.element("Key", ctx.key),
        xml.element("UploadId", upload.upload_id),
        owner(upload.owner, "Initiator"),
        owner(upload.owner),
        xml.element("StorageClass", upload.storage_class),
        xml.element("PartNumberMarker", marker),
        xml.element("NextPartNumberMarker", page.next_marker),
        xml.element("MaxParts", max_parts),
        xml.element("IsTruncated", str(page.is_truncated).lower()),
    ]
    if upload.checksum_algorithm is not None:
        children.append(xml.element("ChecksumAlgorithm", upload.checksum_algorithm.value))
    if upload.checksum_type is not None:
        children.append(xml.element("ChecksumType", upload.checksum_type.value))
    for part in page.parts:
        checksum = ""
        if part.checksum is not None and part.checksum.algorithm is upload.checksum_algorithm:
            checksum = xml.element("Checksum" + part.checksum.algorithm.value, part.checksum.value)
        children.append(
            "<Part>"
            + xml.element("PartNumber", part.part_number)
            + xml.element("LastModified", iso8601(part.last_modified))
            + xml.element("ETag", part.etag)
            + xml.element("Size", part.size)
            + checksum
            + "</Part>"
        )
    return xml_response(xml.document("ListPartsResult", children))


def _upload_entry(upload: MultipartUpload, enc_key: str) -> str:
    parts = [
        xml.element("Key", enc_key),
        xml.element("UploadId", upload.upload_id),
        owner(upload.owner, "Initiator"),
        owner(upload.owner),
        xml.element("StorageClass", upload.storage_class),
        xml.element("Initiated", iso8601(upload.initiated)),
    ]
    if upload.checksum_algorithm is not None:
        parts.append(xml.element("ChecksumAlgorithm", upload.checksum_algorithm.value))
    if upload.checksum_type is not None:
        parts.append(xml.element("ChecksumType", upload.checksum_type.value))
    return "<Upload>" + "".join(parts) + "</Upload>"


async def list_multipart_uploads(ctx: Context) -> Response:
    """ListMultipartUploads."""
    q = ctx.req.query
    enc = encoder(q.get("encoding-type"))
    max_uploads = min(ctx.int_query("max-uploads", 1000, 0), 1000)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    uploads, prefixes, truncated = await ctx.services.multipart.list_uploads(
        ctx.principal,
        ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_id_marker=id_marker,
        max_uploads=max_uploads,
    )
    children = [
        xml.element("Bucket", ctx.bucket),
        xml.element("KeyMarker", enc(key_marker)),
        xml.element("UploadIdMarker", id_marker),
    ]
    # The next page starts after the last entry, an upload or a common prefix (entries come in
    # key order, and no upload key starts with a prefix it did not roll up into).
    if uploads and (not prefixes or uploads[-1].key > prefixes[-1]):
        children += [
            xml.element("NextKeyMarker", enc(uploads[-1].key)),
            xml.element("NextUploadIdMarker", uploads[-1].upload_id),
        ]
    elif prefixes:
        children.append(xml.element("NextKeyMarker", enc(prefixes[-1])))
    children += [xml.element("Prefix", enc(prefix))]
    if delimiter:
        children.append(xml.element("Delimiter", enc(delimiter)))
    children += [
        xml.element("MaxUploads", max_uploads),
        xml.element("IsTruncated", str(truncated).lower()),
    ]
    children += [_upload_entry(u, enc(u.key)) for u in uploads]
    children += [
        "<CommonPrefixes>" + xml.element("Prefix", enc(p)) + "</CommonPrefixes>" for p in prefixes
    ]
    children.append(enc.element())
    return xml_response(xml.document("ListMultipartUploadsResult", children))


HANDLERS = {
    Endpoint.CreateMultipartUpload: create_multipart_upload,
    Endpoint.UploadPart: upload_part,
    Endpoint.UploadPartCopy: upload_part_copy,
    Endpoint.CompleteMultipartUpload: complete_multipart_upload,
    Endpoint.AbortMultipartUpload: abort_multipart_upload,
    Endpoint.ListParts: list_parts,
    Endpoint.ListMultipartUploads: list_multipart_uploads,
}
