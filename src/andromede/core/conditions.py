"""HTTP conditional requests and byte ranges, as S3 applies them. Pure functions."""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass

from andromede.core import errors
from andromede.core.models import DeleteCondition, WriteCondition


@dataclass(frozen=True)
class Preconditions:
    """The four conditional headers, raw."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None

    def any(self) -> bool:
        """True when at least one header is present."""
        return any(
            v is not None
            for v in (
                self.if_match,
                self.if_none_match,
                self.if_modified_since,
                self.if_unmodified_since,
            )
        )


def _etag_list_matches(header: str, etag: str) -> bool:
    target = etag.removeprefix("W/").strip('"')
    for item in header.split(","):
        candidate = item.strip()
        if candidate == "*":
            return True
        candidate = candidate.removeprefix("W/").strip('"')
        if candidate == target:
            return True
    return False


def parse_http_date(value: str | None) -> dt.datetime | None:
    """An HTTP-date (or ISO 8601 as some clients send) as aware UTC; None when unparseable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _modified_after(last_modified: dt.datetime, since: dt.datetime) -> bool:
    # HTTP dates have second resolution: compare whole seconds.
    return int(last_modified.timestamp()) > int(since.timestamp())


def check_read(p: Preconditions, etag: str, last_modified: dt.datetime) -> None:
    """Evaluate GET/HEAD preconditions (RFC 9110 order, as S3 does).

    Raises PreconditionFailed (412) or NotModified (304).
    """
    if p.if_match is not None:
        if not _etag_list_matches(p.if_match, etag):
            raise errors.PreconditionFailed(Condition="If-Match")
    else:
        since = parse_http_date(p.if_unmodified_since)
        if since is not None and _modified_after(last_modified, since):
            raise errors.PreconditionFailed(Condition="If-Unmodified-Since")
    if p.if_none_match is not None:
        if _etag_list_matches(p.if_none_match, etag):
            raise errors.NotModified(etag, last_modified)
    else:
        since = parse_http_date(p.if_modified_since)
        if since is not None and not _modified_after(last_modified, since):
            raise errors.NotModified(etag, last_modified)


def check_copy_source(p: Preconditions, etag: str, last_modified: dt.datetime) -> None:
    """``x-amz-copy-source-if-*``: every failure is 412, as S3 answers for copies."""
    try:
        check_read(p, etag, last_modified)
    except errors.NotModified as exc:
        raise errors.PreconditionFailed(Condition="x-amz-copy-source-If-None-Match") from exc


def check_write(condition: WriteCondition | None, current_etag: str | None) -> None:
    """Conditional PutObject, CopyObject and CompleteMultipartUpload, as S3 answers them.

    ``current_etag`` is the key's current ETag, None when there is no object. If-Match needs
    an object (NoSuchKey without one) whose ETag it lists, ``*`` for any; If-None-Match
    refuses an object whose ETag it lists, ``*`` for any, and lets the write create the key.
    A failed condition is PreconditionFailed. ETags compare with or without their quotes.
    """
    if condition is None:
        return
    if condition.if_match is not None:
        if current_etag is None:
            raise errors.NoSuchKey()
        if not _etag_list_matches(condition.if_match, current_etag):
            raise errors.PreconditionFailed(Condition="If-Match")
    if (
        condition.if_none_match is not None
        and current_etag is not None
        and _etag_list_matches(condition.if_none_match, current_etag)
    ):
        raise errors.PreconditionFailed(Condition="If-None-Match")


def check_delete(
    condition: DeleteCondition | None, etag: str, last_modified: dt.datetime, size: int
) -> None:
    """Conditional DeleteObject on an existing object: PreconditionFailed unless it has the
    ETag (or ``*``), the modification time (to the second, as HTTP dates carry it) and the
    size the request names. A delete of a missing key goes ahead whatever it names."""
    if condition is None:
        return
    if condition.if_match is not None and not _etag_list_matches(condition.if_match, etag):
        raise errors.PreconditionFailed(Condition="If-Match")
    if condition.last_modified is not None and int(last_modified.timestamp()) != int(
        condition.last_modified.timestamp()
    ):
        raise errors.PreconditionFailed(Condition="x-amz-if-match-last-modified-time")
    if condition.size is not None and size != condition.size:
        raise errors.PreconditionFailed(Condition="x-amz-if-match-size")


@dataclass(frozen=True)
class ByteRange:
    """A satisfiable range: ``start`` and ``end`` inclusive, within an object of ``total``."""

    start: int
    end: int
    total: int

    @property
    def length(self) -> int:
        """Number of bytes."""
        return self.end - self.start + 1

    def content_range(self) -> str:
        """The Content-Range header value."""
        return f"bytes {self.start}-{self.end}/{self.total}"


# One return per malformed form S3 ignores, where it is detected: splitting would hide which.
def parse_range(header: str | None, size: int) -> ByteRange | None:  # noqa: PLR0911
    """Parse a single ``bytes=`` range against an object size.

    Syntactically invalid or multi-range headers are ignored (None: whole object), as S3
    does; a well-formed range that selects nothing raises InvalidRange (416).
    """
    if header is None:
        return None
    value = header.strip()
    if not value.startswith("bytes=") or "," in value:
        return None
    spec = value[len("bytes=") :].strip()
    first, sep, last = spec.partition("-")
    if not sep:
        return None
    first, last = first.strip(), last.strip()
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=value)
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=value)
    return ByteRange(start, min(end, size - 1), size)


def parse_copy_range(header: str, size: int) -> ByteRange:
    """``x-amz-copy-source-range`` for UploadPartCopy: must be ``bytes=first-last``, in range."""
    value = header.strip()
    spec = value.removeprefix("bytes=")
    first, sep, last = spec.partition("-")
    if not value.startswith("bytes=") or not sep or not first.isdigit() or not last.isdigit():
        raise errors.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last "
            "where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    start, end = int(first), int(last)
    if end < start or end >= size:
        raise errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=value)
    return ByteRange(start, end, size)
