"""Objects.copy: what a copy keeps and replaces, its source's conditions, and that it never
reaches another tenant's object."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from andromede.core import errors
from andromede.core.checksums import ChecksumAlgorithm
from andromede.core.conditions import Preconditions
from andromede.core.models import WriteCondition
from andromede.services.objects import ObjectAttributes
from support.services import (
    ALICE,
    FUTURE,
    MALLORY,
    PAST,
    ServiceStack,
    assert_absent,
    read_body,
)

SOURCE_ATTRS = ObjectAttributes(
    "image/png", {"cache-control": "no-store"}, {"origin": "camera"}, {"kind": "photo"}
)


async def copy(
    stack: ServiceStack,
    source: tuple[str, str],
    target: tuple[str, str],
    *,
    replace_metadata: bool = False,
    attrs: ObjectAttributes | None = None,
    replace_tags: bool = False,
    conditions: Preconditions | None = None,
    condition: WriteCondition | None = None,
) -> str:
    _, version = await stack.objects.copy(
        ALICE,
        source,
        target,
        replace_metadata=replace_metadata,
        attrs=attrs or ObjectAttributes(),
        replace_tags=replace_tags,
        source_conditions=conditions or Preconditions(),
        condition=condition,
    )
    return version.etag


@pytest.fixture
async def source(stack: ServiceStack, bucket: str) -> tuple[bytes, str]:
    """``src`` in the bucket, with metadata and tags: (its bytes, its ETag)."""
    data = os.urandom(70_000)
    return data, await stack.put(bucket, "src", data, attrs=SOURCE_ATTRS)


async def test_copy_keeps_metadata_and_tags_by_default(
    stack: ServiceStack, bucket: str, source: tuple[bytes, str]
) -> None:
    data, etag = source
    assert await copy(stack, (bucket, "src"), (bucket, "dst")) == etag
    got = await stack.objects.get(ALICE, bucket, "dst")
    assert await read_body(got) == data
    assert got.version.content_type == "image/png"
    assert got.version.user_meta == {"origin": "camera"}
    assert got.version.system_meta == {"cache-control": "no-store"}
    assert got.version.tags == {"kind": "photo"}
    # A copy is sealed anew: its own blob, its own key.
    src_blob = (await stack.objects.get(ALICE, bucket, "src")).version.manifest.segments[0]
    dst_blob = got.version.manifest.segments[0]
    assert src_blob.blob != dst_blob.blob
    assert src_blob.sealing is not None
    assert dst_blob.sealing is not None
    assert src_blob.sealing.wrapped_dek != dst_blob.sealing.wrapped_dek


async def test_copy_replaces_metadata_and_tags_on_request(
    stack: ServiceStack, bucket: str, source: tuple[bytes, str]
) -> None:
    new = ObjectAttributes("text/plain", user_meta={"new": "yes"}, tags={"a": "1"})
    await copy(stack, (bucket, "src"), (bucket, "dst"), replace_metadata=True, attrs=new)
    got = await stack.objects.get(ALICE, bucket, "dst", with_body=False)
    assert got.version.user_meta == {"new": "yes"}
    assert got.version.content_type == "text/plain"
    assert got.version.system_meta == {}
    assert got.version.tags == {"kind": "photo"}  # tags follow their own directive
    await copy(stack, (bucket, "src"), (bucket, "retagged"), replace_tags=True, attrs=new)
    assert (await stack.objects.get_tags(ALICE, bucket, "retagged")).tags == {"a": "1"}
    await copy(stack, (bucket, "src"), (bucket, "untagged"), replace_tags=True)
    assert (await stack.objects.get_tags(ALICE, bucket, "untagged")).tags == {}


async def test_copy_across_buckets(stack: ServiceStack, bucket: str) -> None:
    await stack.buckets.create(ALICE, "other", None)
    key = "dir/ü n+i%c/ode?x=1"
    await stack.put("other", key, b"crossing")
    await copy(stack, ("other", key), (bucket, key))
    assert await stack.get(bucket, key) == b"crossing"


async def test_copy_onto_itself_needs_a_change(
    stack: ServiceStack, bucket: str, source: tuple[bytes, str]
) -> None:
    data, _ = source
    with pytest.raises(errors.InvalidRequest):
        await copy(stack, (bucket, "src"), (bucket, "src"))
    edited = ObjectAttributes(user_meta={"edited": "1"})
    await copy(stack, (bucket, "src"), (bucket, "src"), replace_metadata=True, attrs=edited)
    got = await stack.objects.get(ALICE, bucket, "src")
    assert await read_body(got) == data
    assert got.version.user_meta == {"edited": "1"}


async def test_copy_source_conditions(
    stack: ServiceStack, bucket: str, source: tuple[bytes, str]
) -> None:
    _, etag = source
    failing = [
        Preconditions(if_match='"0123"'),
        Preconditions(if_none_match=etag),
        Preconditions(if_modified_since=FUTURE),
        Preconditions(if_unmodified_since=PAST),
    ]
    before = stack.stored_blobs()
    for conditions in failing:
        with pytest.raises(errors.PreconditionFailed):
            await copy(stack, (bucket, "src"), (bucket, "dst"), conditions=conditions)
    await assert_absent(stack, bucket, "dst")
    assert stack.stored_blobs() == before
    both = Preconditions(if_match=etag, if_none_match='"0123"')
    assert await copy(stack, (bucket, "src"), (bucket, "dst"), conditions=both) == etag


async def test_copy_missing_source(stack: ServiceStack, bucket: str) -> None:
    with pytest.raises(errors.NoSuchKey):
        await copy(stack, (bucket, "nope"), (bucket, "dst"))


async def test_copy_if_none_match_star(
    stack: ServiceStack, bucket: str, source: tuple[bytes, str]
) -> None:
    once = WriteCondition(if_none_match="*")
    await copy(stack, (bucket, "src"), (bucket, "fresh"), condition=once)
    before = stack.stored_blobs()
    with pytest.raises(errors.PreconditionFailed):
        await copy(stack, (bucket, "src"), (bucket, "fresh"), condition=once)
    assert stack.stored_blobs() == before


async def test_copy_of_another_tenants_object_is_denied(
    stack: ServiceStack, bucket: str, source: tuple[bytes, str]
) -> None:
    await stack.buckets.create(MALLORY, "theirs", None)
    with pytest.raises(errors.AccessDenied):
        await stack.objects.copy(
            MALLORY,
            (bucket, "src"),
            ("theirs", "stolen"),
            replace_metadata=False,
            attrs=ObjectAttributes(),
            replace_tags=False,
            source_conditions=Preconditions(),
        )


async def test_stored_checksum_of_a_copy(
    stack: ServiceStack, bucket: str, source: tuple[bytes, str]
) -> None:
    data, _ = source
    _, version = await stack.objects.copy(
        ALICE,
        (bucket, "src"),
        (bucket, "dst"),
        replace_metadata=False,
        attrs=ObjectAttributes(),
        replace_tags=False,
        source_conditions=Preconditions(),
        algorithm=ChecksumAlgorithm.SHA256,
    )
    assert version.checksum is not None
    assert base64.b64decode(version.checksum.value) == hashlib.sha256(data).digest()
