"""Object headers in (attributes, integrity claims, conditions) and out."""

from __future__ import annotations

import base64
import datetime as dt
import email.errors
import email.header
import email.utils
import functools
import time
import urllib.parse

from andromede.auth.sigv4 import header_text
from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm, ChecksumType
from andromede.core.conditions import Preconditions, parse_http_date
from andromede.core.limits import MAX_USER_METADATA
from andromede.core.models import Checksum, DeleteCondition, ObjectVersion, WriteCondition
from andromede.core.tags import parse_tagging_header
from andromede.s3.http import Request
from andromede.services.objects import Integrity, ObjectAttributes

SYSTEM_HEADERS = (
    "content-encoding",
    "content-disposition",
    "cache-control",
    "expires",
    "content-language",
)
RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}
_ALLOWED_ACLS = ("private", "bucket-owner-full-control")
# S3's canned ACLs: the others ask for grants not built yet (NotImplemented); any other value
# is no ACL at all (InvalidArgument).
_CANNED_ACLS = (
    *_ALLOWED_ACLS,
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "log-delivery-write",
)
_STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
)


def flag(value: str | None) -> bool:
    """A boolean header: ``true`` in any case (aws CLI v2 sends ``True``), as AWS reads them;
    anything else, or no header, is false."""
    return value is not None and value.strip().lower() == "true"


def reject_unsupported(req: Request) -> None:
    """Headers that ask for features this build does not have yet: NotImplemented, not ignored."""
    acl = req.header("x-amz-acl")
    if acl is not None and acl not in _CANNED_ACLS:
        raise errors.InvalidArgument(ArgumentName="x-amz-acl", ArgumentValue=acl[:64])
    if acl is not None and acl not in _ALLOWED_ACLS:
        raise errors.NotImplementedOperation(Header="x-amz-acl")
    for name in req.headers:
        if name.startswith("x-amz-grant-"):
            raise errors.NotImplementedOperation(Header=name)
        if name == "x-amz-website-redirect-location":
            raise errors.NotImplementedOperation(Header=name)
    storage_class = req.header("x-amz-storage-class")
    if storage_class is not None and storage_class not in _STORAGE_CLASSES:
        raise errors.InvalidStorageClass(StorageClassRequested=storage_class)


def metadata_text(raw: str) -> str:
    """A user metadata value as text: S3 takes any Unicode, sent as UTF-8 (botocore and most
    SDKs), as latin-1 (Python's http.client), or as RFC 2047 encoded words."""
    if not raw.isascii():
        return header_text(raw)
    if raw.startswith("=?") and raw.endswith("?="):
        try:
            return str(email.header.make_header(email.header.decode_header(raw)))
        except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
            return raw
    return raw


def metadata_header(value: str) -> str:
    """A stored metadata value for a response: as is when US-ASCII, else RFC 2047 encoded
    (UTF-8, base64), as S3 returns non-ASCII metadata."""
    if value.isascii():
        return value
    return f"=?UTF-8?B?{base64.b64encode(value.encode()).decode()}?="


def object_attributes(req: Request) -> ObjectAttributes:
    """Content-Type, stored system headers, ``x-amz-meta-*`` and ``x-amz-tagging``."""
    reject_unsupported(req)
    system: dict[str, str] = {}
    for name in SYSTEM_HEADERS:
        value = req.header(name)
        if value is None:
            continue
        if name == "content-encoding":
            codings = [
                c.strip() for c in value.split(",") if c.strip() and c.strip() != "aws-chunked"
            ]
            if not codings:
                continue
            value = ", ".join(codings)
        system[name] = value
    user: dict[str, str] = {}
    size = 0
    for name, raw in req.header_list:
        if name.startswith("x-amz-meta-"):
            meta_key = name[len("x-amz-meta-") :]
            value = metadata_text(raw)
            size += len(meta_key.encode()) + len(value.encode())
            user[meta_key] = f"{user[meta_key]},{value}" if meta_key in user else value
    if size > MAX_USER_METADATA:
        raise errors.MetadataTooLarge(MaxSizeAllowed=str(MAX_USER_METADATA))
    tagging = req.header("x-amz-tagging")
    tags = parse_tagging_header(tagging) if tagging is not None else None
    return ObjectAttributes(req.header("content-type"), system, user, tags)


def _algorithm(value: str) -> ChecksumAlgorithm:
    try:
        return ChecksumAlgorithm(value.upper())
    except ValueError as exc:
        raise errors.InvalidRequest(f"Checksum algorithm {value} is not supported.") from exc


def checksum_algorithm(req: Request) -> ChecksumAlgorithm | None:
    """``x-amz-checksum-algorithm`` (CreateMultipartUpload, CopyObject)."""
    value = req.header("x-amz-checksum-algorithm")
    return _algorithm(value) if value else None


def checksum_type(req: Request) -> ChecksumType | None:
    """``x-amz-checksum-type``."""
    value = req.header("x-amz-checksum-type")
    if value is None:
        return None
    try:
        return ChecksumType(value.upper())
    except ValueError as exc:
        raise errors.InvalidRequest(f"Checksum type {value} is not supported.") from exc


def integrity(req: Request) -> Integrity:
    """Content-MD5 and at most one ``x-amz-checksum-*`` (as a header or a trailer)."""
    present = [a for a in ChecksumAlgorithm if a.header in req.headers]
    trailer = req.header("x-amz-trailer")
    if trailer is not None:
        names = [t.strip().lower() for t in trailer.split(",") if t.strip()]
        trailed = [a for a in ChecksumAlgorithm if a.header in names]
        if len(names) != 1 or len(trailed) != 1:
            raise errors.InvalidRequest(
                "The value specified in the x-amz-trailer header is not supported"
            )
        if present:
            raise errors.InvalidRequest("Expecting a single x-amz-checksum- header")
        return Integrity(req.header("content-md5"), trailed[0], None, checksum_in_trailer=True)
    if len(present) > 1:
        raise errors.InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    declared = req.header("x-amz-sdk-checksum-algorithm") or req.header("x-amz-checksum-algorithm")
    if present:
        alg = present[0]
        if declared and _algorithm(declared) is not alg:
            raise errors.InvalidRequest("Value for x-amz-sdk-checksum-algorithm header is invalid.")
        return Integrity(req.header("content-md5"), alg, req.headers[alg.header])
    return Integrity(req.header("content-md5"), _algorithm(declared) if declared else None, None)


def preconditions(req: Request, prefix: str = "") -> Preconditions:
    """The four conditional headers (``prefix`` = ``x-amz-copy-source-`` for copies)."""
    return Preconditions(
        req.header(prefix + "if-match"),
        req.header(prefix + "if-none-match"),
        req.header(prefix + "if-modified-since"),
        req.header(prefix + "if-unmodified-since"),
    )


def write_condition(req: Request) -> WriteCondition | None:
    """Conditional writes: ``If-Match`` and ``If-None-Match``, each ETags or ``*``."""
    if_match = req.header("if-match")
    if_none_match = req.header("if-none-match")
    if if_match is None and if_none_match is None:
        return None
    return WriteCondition(if_match=if_match, if_none_match=if_none_match)


def delete_condition(req: Request) -> DeleteCondition | None:
    """Conditional DeleteObject: ``If-Match``, ``x-amz-if-match-last-modified-time`` (an
    HTTP date) and ``x-amz-if-match-size``."""
    if_match = req.header("if-match")
    raw_time = req.header("x-amz-if-match-last-modified-time")
    raw_size = req.header("x-amz-if-match-size")
    if if_match is None and raw_time is None and raw_size is None:
        return None
    return DeleteCondition(
        if_match=if_match,
        last_modified=None if raw_time is None else _header_time(raw_time),
        size=None if raw_size is None else _header_size(raw_size),
    )


def _header_time(raw: str) -> dt.datetime:
    parsed = parse_http_date(raw)
    if parsed is None:
        raise errors.InvalidArgument(
            "Invalid x-amz-if-match-last-modified-time",
            ArgumentName="x-amz-if-match-last-modified-time",
            ArgumentValue=raw,
        )
    return parsed


def _header_size(raw: str) -> int:
    if not raw.strip().isdigit():
        raise errors.InvalidArgument(
            "Invalid x-amz-if-match-size", ArgumentName="x-amz-if-match-size", ArgumentValue=raw
        )
    return int(raw)


@functools.lru_cache(maxsize=4096)
def http_date(value: dt.datetime) -> str:
    """RFC 7231 date for Last-Modified (cached: a hot object's date is formatted once)."""
    return email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=True)


_now_text: tuple[int, str] = (0, "")


def http_now() -> str:
    """The Date header's value: the current second, formatted once per second."""
    global _now_text  # noqa: PLW0603 - a one-entry cache
    second = int(time.time())
    if _now_text[0] != second:
        _now_text = (second, email.utils.formatdate(second, usegmt=True))
    return _now_text[1]


def object_headers(
    version: ObjectVersion, req: Request, *, checksum: Checksum | None, part: bool = False
) -> list[tuple[str, str]]:
    """Headers describing an object on GET/HEAD, with ``response-*`` overrides applied;
    ``checksum`` is the one to report (the object's, a part's, or none)."""
    headers: dict[str, str] = {
        "content-type": version.content_type,
        "etag": version.etag,
        "last-modified": http_date(version.last_modified),
        "accept-ranges": "bytes",
    }
    headers.update(version.system_meta)
    for query_name, header_name in RESPONSE_OVERRIDES.items():
        override = req.query.get(query_name)
        if override is not None:
            headers[header_name] = override
    out = list(headers.items())
    out += [("x-amz-meta-" + k, metadata_header(v)) for k, v in version.user_meta.items()]
    if version.tags:
        out.append(("x-amz-tagging-count", str(len(version.tags))))
    if version.storage_class != "STANDARD":
        out.append(("x-amz-storage-class", version.storage_class))
    if part and version.parts_count is not None:
        out.append(("x-amz-mp-parts-count", str(version.parts_count)))
    if checksum is not None:
        out.append((checksum.algorithm.header, checksum.value))
        out.append(("x-amz-checksum-type", checksum.type.value))
    return out


def reported_checksum(version: ObjectVersion, part_number: int | None) -> Checksum | None:
    """The checksum S3 reports with ``x-amz-checksum-mode: ENABLED``: the object's for the
    whole object; for a part of a multipart object, that part's own, under the object's type."""
    checksum = version.checksum
    if part_number is None or version.parts_count is None or checksum is None:
        return checksum
    segment = version.manifest.segments[part_number - 1]
    if segment.checksum is None or segment.checksum.algorithm is not checksum.algorithm:
        return None
    return Checksum(checksum.algorithm, segment.checksum.value, checksum.type)


def copy_source(req: Request) -> tuple[str, str, str | None]:
    """``x-amz-copy-source``: ``/bucket/key`` or ``bucket/key``, URL-encoded, optionally with
    ``?versionId=``: (bucket, key, version id or None)."""
    raw = req.header("x-amz-copy-source") or ""
    path, _, query = raw.partition("?")
    decoded = urllib.parse.unquote(path).lstrip("/")
    bucket, sep, key = decoded.partition("/")
    if not sep or not bucket or not key:
        raise errors.InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
        )
    version = None
    if query:
        params = urllib.parse.parse_qs(query)
        version = params.get("versionId", [""])[0] or None
    return bucket, key, version
