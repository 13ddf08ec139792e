"""Range parsing and HTTP preconditions as S3 applies them."""

from __future__ import annotations

import datetime as dt

import pytest

from andromede.core import errors
from andromede.core.conditions import (
    ByteRange,
    Preconditions,
    check_copy_source,
    check_delete,
    check_read,
    check_write,
    parse_copy_range,
    parse_range,
)
from andromede.core.models import DeleteCondition, WriteCondition

LM = dt.datetime(2026, 1, 10, 12, 0, 0, tzinfo=dt.UTC)
BEFORE = "Fri, 09 Jan 2026 12:00:00 GMT"
AFTER = "Sun, 11 Jan 2026 12:00:00 GMT"
ETAG = '"abc"'


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=-5", 100, (95, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=90-200", 100, (90, 99)),
        ("bytes=0-0", 1, (0, 0)),
    ],
)
def test_satisfiable_ranges(header: str, size: int, expected: tuple[int, int]) -> None:
    r = parse_range(header, size)
    assert r == ByteRange(expected[0], expected[1], size)
    assert r.length == expected[1] - expected[0] + 1
    assert r.content_range() == f"bytes {expected[0]}-{expected[1]}/{size}"


@pytest.mark.parametrize(
    "header", [None, "items=0-1", "bytes=a-b", "bytes=5-1", "bytes=0-1,3-4", "bytes=-", "bytes"]
)
def test_ignored_ranges_mean_whole_object(header: str | None) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", 100),
        ("bytes=200-300", 100),
        ("bytes=0-", 0),
        ("bytes=-0", 10),
        ("bytes=-5", 0),
    ],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(errors.InvalidRange):
        parse_range(header, size)


def test_copy_range_rules() -> None:
    assert parse_copy_range("bytes=0-4", 10) == ByteRange(0, 4, 10)
    with pytest.raises(errors.InvalidArgument):
        parse_copy_range("bytes=4-", 10)
    with pytest.raises(errors.InvalidRange):
        parse_copy_range("bytes=0-10", 10)


def test_if_match() -> None:
    check_read(Preconditions(if_match=ETAG), ETAG, LM)
    check_read(Preconditions(if_match='"x", "abc"'), ETAG, LM)
    check_read(Preconditions(if_match="*"), ETAG, LM)
    with pytest.raises(errors.PreconditionFailed):
        check_read(Preconditions(if_match='"zzz"'), ETAG, LM)


def test_if_none_match_is_not_modified() -> None:
    with pytest.raises(errors.NotModified):
        check_read(Preconditions(if_none_match=ETAG), ETAG, LM)
    check_read(Preconditions(if_none_match='"other"'), ETAG, LM)


def test_dates() -> None:
    with pytest.raises(errors.NotModified):
        check_read(Preconditions(if_modified_since=AFTER), ETAG, LM)
    check_read(Preconditions(if_modified_since=BEFORE), ETAG, LM)
    with pytest.raises(errors.PreconditionFailed):
        check_read(Preconditions(if_unmodified_since=BEFORE), ETAG, LM)
    check_read(Preconditions(if_unmodified_since=AFTER), ETAG, LM)
    check_read(Preconditions(if_modified_since="not a date"), ETAG, LM)


def test_aws_combinations() -> None:
    # If-Match true wins over a failing If-Unmodified-Since.
    check_read(Preconditions(if_match=ETAG, if_unmodified_since=BEFORE), ETAG, LM)
    # If-None-Match false + If-Modified-Since true → 304.
    with pytest.raises(errors.NotModified):
        check_read(Preconditions(if_none_match=ETAG, if_modified_since=BEFORE), ETAG, LM)


def test_copy_source_conditions_are_412() -> None:
    with pytest.raises(errors.PreconditionFailed):
        check_copy_source(Preconditions(if_none_match=ETAG), ETAG, LM)


# --- conditional writes (PutObject, CompleteMultipartUpload, CopyObject) -----------------------
@pytest.mark.parametrize(
    ("condition", "current", "expected"),
    [
        (WriteCondition(if_none_match="*"), None, None),
        (WriteCondition(if_none_match="*"), ETAG, errors.PreconditionFailed),
        (WriteCondition(if_none_match=ETAG), ETAG, errors.PreconditionFailed),
        (WriteCondition(if_none_match="abc"), ETAG, errors.PreconditionFailed),
        (WriteCondition(if_none_match='"x", "abc"'), ETAG, errors.PreconditionFailed),
        (WriteCondition(if_none_match="badetag"), ETAG, None),
        (WriteCondition(if_none_match=ETAG), None, None),
        (WriteCondition(if_match="*"), None, errors.NoSuchKey),
        (WriteCondition(if_match="badetag"), None, errors.NoSuchKey),
        (WriteCondition(if_match="*"), ETAG, None),
        (WriteCondition(if_match="abc"), ETAG, None),
        (WriteCondition(if_match=ETAG), ETAG, None),
        (WriteCondition(if_match='"x", abc'), ETAG, None),
        (WriteCondition(if_match="badetag"), ETAG, errors.PreconditionFailed),
        (WriteCondition(if_match=ETAG, if_none_match="*"), ETAG, errors.PreconditionFailed),
        (WriteCondition(if_match=ETAG, if_none_match="*"), None, errors.NoSuchKey),
        (None, ETAG, None),
    ],
)
def test_check_write(
    condition: WriteCondition | None, current: str | None, expected: type[Exception] | None
) -> None:
    if expected is None:
        check_write(condition, current)
    else:
        with pytest.raises(expected):
            check_write(condition, current)


# --- conditional deletes -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "condition",
    [
        None,
        DeleteCondition(if_match="*"),
        DeleteCondition(if_match="abc"),
        DeleteCondition(if_match=ETAG),
        DeleteCondition(last_modified=LM),
        DeleteCondition(last_modified=LM.replace(microsecond=999_999)),  # HTTP dates: seconds
        DeleteCondition(size=5),
        DeleteCondition(if_match=ETAG, last_modified=LM, size=5),
    ],
)
def test_check_delete_passes(condition: DeleteCondition | None) -> None:
    check_delete(condition, ETAG, LM.replace(microsecond=123_456), 5)


@pytest.mark.parametrize(
    "condition",
    [
        DeleteCondition(if_match="badetag"),
        DeleteCondition(last_modified=LM + dt.timedelta(seconds=1)),
        DeleteCondition(last_modified=dt.datetime(2015, 1, 1, tzinfo=dt.UTC)),
        DeleteCondition(size=9999),
        DeleteCondition(if_match=ETAG, last_modified=LM, size=0),
    ],
)
def test_check_delete_refuses(condition: DeleteCondition) -> None:
    with pytest.raises(errors.PreconditionFailed):
        check_delete(condition, ETAG, LM, 5)
