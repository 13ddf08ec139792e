"""Range parsing and HTTP preconditions as S3 applies them."""

from __future__ import annotations

import datetime as dt

import pytest

from andromede.core import errors
from andromede.core.conditions import (
    ByteRange,
    Preconditions,
    check_copy_source,
    check_read,
    parse_copy_range,
    parse_range,
)

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
