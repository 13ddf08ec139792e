"""Object tag rules and the ``x-amz-tagging`` header, as S3 reads them."""

from __future__ import annotations

import pytest

from andromede.core import errors
from andromede.core.tags import encode_tagging_header, parse_tagging_header, validate_tags


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ("", {}),
        ("a=1", {"a": "1"}),
        ("a=1&b=two%20words&c=", {"a": "1", "b": "two words", "c": ""}),
        ("foo=bar&bar", {"foo": "bar", "bar": ""}),  # a key without '=' holds the empty value
        ("a=b+c", {"a": "b c"}),  # form encoding: '+' is a space
        ("k%C3%A9=v%C3%A9", {"k\u00e9": "v\u00e9"}),
    ],
)
def test_tagging_header(header: str, tags: dict[str, str]) -> None:
    assert parse_tagging_header(header) == tags


@pytest.mark.parametrize(
    "header",
    [
        "a=&a=",  # a key twice
        "a=1&a",
        "TagSet=[{Key=string,Value=string}]",  # a second '='
        "a=1&&b=2",  # an empty pair
        "a=1&",
        "a=%FF",  # not UTF-8
    ],
)
def test_malformed_tagging_header_is_invalid_argument(header: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="x-amz-tagging"):
        parse_tagging_header(header)


def test_tagging_header_applies_the_tag_rules() -> None:
    with pytest.raises(errors.InvalidTag):
        parse_tagging_header("k=" + "v" * 257)
    with pytest.raises(errors.InvalidTag):
        parse_tagging_header("aws%3Ax=1")
    # More than 10 tags is BadRequest on S3, for the header as for PutObjectTagging.
    with pytest.raises(errors.TooManyTags):
        parse_tagging_header("&".join(f"k{i}=v" for i in range(11)))


def test_limits() -> None:
    assert len(validate_tags([(f"k{i}", "v") for i in range(10)])) == 10
    assert validate_tags([("k" * 128, "v" * 256)]) == {"k" * 128: "v" * 256}
    with pytest.raises(errors.TooManyTags):
        validate_tags([(f"k{i}", "v") for i in range(11)])
    with pytest.raises(errors.InvalidTag):
        validate_tags([("k" * 129, "v")])
    with pytest.raises(errors.InvalidTag):
        validate_tags([("dup", "1"), ("dup", "2")])


def test_encode_is_the_inverse() -> None:
    tags = {"a": "1", "b": "two words", "c": "", "k\u00e9": "x/y"}
    assert parse_tagging_header(encode_tagging_header(tags)) == tags
