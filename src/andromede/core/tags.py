"""Tag rules (S3: at most 10 tags on an object, 50 on a bucket; key ≤ 128 and value ≤ 256
Unicode characters)."""

from __future__ import annotations

import re
import urllib.parse

from andromede.core import errors
from andromede.core.limits import MAX_BUCKET_TAGS, MAX_OBJECT_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE

# Letters, digits, whitespace and + - = . _ : / @, as AWS allows in tags.
_ALLOWED = re.compile(r"^[\w\s+\-=._:/@]*$", re.UNICODE)


def validate_tags(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Check an object's tag set and return it as a dict; duplicate keys are InvalidTag."""
    if len(pairs) > MAX_OBJECT_TAGS:
        raise errors.TooManyTags()
    return _tag_map(pairs)


def validate_bucket_tags(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Check a bucket's tag set (up to 50 tags, else the same rules as an object's)."""
    if len(pairs) > MAX_BUCKET_TAGS:
        raise errors.TooManyTags(f"Bucket tag count cannot be greater than {MAX_BUCKET_TAGS}")
    return _tag_map(pairs)


def _tag_map(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs:
        if not key or len(key) > MAX_TAG_KEY:
            raise errors.InvalidTag("The TagKey you have provided is invalid")
        if len(value) > MAX_TAG_VALUE:
            raise errors.InvalidTag("The TagValue you have provided is invalid")
        if not _ALLOWED.match(key) or not _ALLOWED.match(value):
            raise errors.InvalidTag("The TagKey you have provided is invalid")
        if key.startswith("aws:"):
            raise errors.InvalidTag("Your TagKey cannot be prefixed with aws:")
        if key in out:
            raise errors.InvalidTag("Cannot provide multiple Tags with the same key")
        out[key] = value
    return out


def parse_tagging_header(value: str) -> dict[str, str]:
    """``x-amz-tagging``: URL-encoded ``key=value`` pairs joined by ``&``, as S3 reads them.

    A key without ``=`` holds the empty value (``foo=bar&bar``); ``+`` is a space, as in any
    form-encoded query. A pair with a second ``=``, an empty pair, text that does not decode
    as UTF-8 or a key given twice is InvalidArgument; the tag rules then apply as on
    PutObjectTagging.
    """
    if not value:
        return {}
    pairs: dict[str, str] = {}
    for item in value.split("&"):
        raw_key, sep, raw_value = item.partition("=")
        if not item or "=" in raw_value:
            raise _bad_tagging_header()
        key = _form_decode(raw_key)
        if key in pairs:
            raise _bad_tagging_header()
        pairs[key] = _form_decode(raw_value) if sep else ""
    return validate_tags(list(pairs.items()))


def _form_decode(text: str) -> str:
    try:
        return urllib.parse.unquote_plus(text, errors="strict")
    except UnicodeDecodeError as exc:
        raise _bad_tagging_header() from exc


def _bad_tagging_header() -> errors.InvalidArgument:
    return errors.InvalidArgument(
        "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query "
        "parameters without tag name duplicates."
    )


def encode_tagging_header(tags: dict[str, str]) -> str:
    """Inverse of :func:`parse_tagging_header`."""
    return urllib.parse.urlencode(list(tags.items()), quote_via=urllib.parse.quote)
