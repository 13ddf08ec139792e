"""Versioning through the services (real SQLite, memory sites): what each write and delete
makes in an enabled, suspended or never-versioned bucket, reading and deleting by version
id, the errors S3 gives for delete markers and unknown versions, and ListObjectVersions
pages (prefix, delimiter, markers) checked against the whole listing."""

from __future__ import annotations

import pytest

from andromede.core import errors
from andromede.core.conditions import Preconditions
from andromede.core.models import Versioning
from andromede.services.listing import list_versions_page
from andromede.services.objects import Deleted, ObjectAttributes
from support.services import ALICE, MALLORY, ServiceStack, read_body


async def versioned(stack: ServiceStack, bucket: str, state: Versioning) -> None:
    await stack.buckets.set_versioning(ALICE, bucket, state)


async def ids(stack: ServiceStack, bucket: str) -> list[tuple[str, str, bool]]:
    page = await list_versions_page(
        stack.store, bucket, prefix="", delimiter="", key_marker="", version_marker="",
        max_keys=1000,
    )  # fmt: skip
    return [(v.object.key, v.version_id, v.delete_marker) for v in page.versions]


async def test_an_enabled_bucket_keeps_every_write(stack: ServiceStack, bucket: str) -> None:
    await stack.put(bucket, "k", b"before")  # the null version
    await versioned(stack, bucket, Versioning.ENABLED)
    before = await stack.objects.attributes(ALICE, bucket, "k")
    await stack.put(bucket, "k", b"one")
    await stack.put(bucket, "k", b"two")
    listed = await ids(stack, bucket)
    assert [vid for _, vid, _ in listed][-1] == "null"
    assert len(listed) == 3
    newest, middle = listed[0][1], listed[1][1]
    assert newest > middle  # ids sort in creation order
    assert await stack.get(bucket, "k") == b"two"
    got = await stack.objects.get(ALICE, bucket, "k", version_id=middle)
    assert await read_body(got) == b"one"
    got = await stack.objects.get(ALICE, bucket, "k", version_id="null")
    assert await read_body(got) == b"before"
    assert before.s3_version_id == "null"  # an internal id, but clients say "null"


async def test_delete_markers(stack: ServiceStack, bucket: str) -> None:
    await versioned(stack, bucket, Versioning.ENABLED)
    await stack.put(bucket, "k", b"data")
    done = await stack.objects.delete(ALICE, bucket, "k")
    assert done.delete_marker
    assert done.version_id is not None
    with pytest.raises(errors.NoSuchKey) as hidden:
        await stack.objects.get(ALICE, bucket, "k")
    assert ("x-amz-delete-marker", "true") in hidden.value.headers
    assert ("x-amz-version-id", done.version_id) in hidden.value.headers
    with pytest.raises(errors.MethodNotAllowed):
        await stack.objects.get(ALICE, bucket, "k", version_id=done.version_id)
    # Removing the marker brings the object back.
    again = await stack.objects.delete(ALICE, bucket, "k", version_id=done.version_id)
    assert again == Deleted(done.version_id, True)
    assert await stack.get(bucket, "k") == b"data"


async def test_suspended_writes_the_null_version(stack: ServiceStack, bucket: str) -> None:
    await versioned(stack, bucket, Versioning.ENABLED)
    await stack.put(bucket, "k", b"kept")
    await versioned(stack, bucket, Versioning.SUSPENDED)
    await stack.put(bucket, "k", b"null-1")
    await stack.put(bucket, "k", b"null-2")
    listed = await ids(stack, bucket)
    assert next(vid for _, vid, _ in listed) == "null"
    assert len(listed) == 2
    done = await stack.objects.delete(ALICE, bucket, "k")
    assert done == Deleted("null", True)  # a null delete marker replaced the null version
    assert next((vid, marker) for _, vid, marker in await ids(stack, bucket)) == ("null", True)
    assert len(await ids(stack, bucket)) == 2


async def test_never_versioned_buckets_delete_for_good(stack: ServiceStack, bucket: str) -> None:
    await stack.put(bucket, "k", b"x")
    assert await stack.objects.delete(ALICE, bucket, "k") == Deleted()
    assert await ids(stack, bucket) == []


async def test_unknown_and_malformed_version_ids(stack: ServiceStack, bucket: str) -> None:
    await versioned(stack, bucket, Versioning.ENABLED)
    await stack.put(bucket, "k", b"x")
    with pytest.raises(errors.NoSuchVersion):
        await stack.objects.get(ALICE, bucket, "k", version_id="0123abcd")
    for bad in ("", "a b", "é", "x" * 1025, "a/b"):
        with pytest.raises(errors.InvalidArgument):
            await stack.objects.get(ALICE, bucket, "k", version_id=bad or "?")
    # Deleting a version that does not exist is no error, as on S3.
    assert await stack.objects.delete(ALICE, bucket, "k", version_id="0123abcd") == Deleted(
        "0123abcd", False
    )
    with pytest.raises(errors.AccessDenied):
        await stack.objects.delete(MALLORY, bucket, "k", version_id="null")


async def test_tags_and_copies_of_older_versions(stack: ServiceStack, bucket: str) -> None:
    await versioned(stack, bucket, Versioning.ENABLED)
    await stack.put(bucket, "k", b"old")
    old = (await ids(stack, bucket))[0][1]
    await stack.put(bucket, "k", b"new")
    await stack.objects.put_tags(ALICE, bucket, "k", [("era", "old")], old)
    assert (await stack.objects.get_tags(ALICE, bucket, "k", old)).tags == {"era": "old"}
    assert (await stack.objects.get_tags(ALICE, bucket, "k")).tags == {}
    src, copied = await stack.objects.copy(
        ALICE,
        (bucket, "k"),
        (bucket, "restored"),
        replace_metadata=False,
        attrs=ObjectAttributes(),
        replace_tags=False,
        source_conditions=Preconditions(),
        source_version=old,
    )
    assert src.s3_version_id == old
    assert await stack.get(bucket, "restored") == b"old"
    assert copied.tags == {"era": "old"}


@pytest.mark.parametrize("delimiter", ["", "/"])
@pytest.mark.parametrize("prefix", ["", "b/", "c"])
async def test_pages_add_up_to_the_whole_listing(
    stack: ServiceStack, bucket: str, delimiter: str, prefix: str
) -> None:
    await versioned(stack, bucket, Versioning.ENABLED)
    for key in ("a", "b/1", "b/2", "b/c/3", "c", "c/x", "d"):
        for n in range(2):
            await stack.put(bucket, key, b"%d" % n)
    await stack.objects.delete(ALICE, bucket, "c/x")
    whole = await list_versions_page(
        stack.store, bucket, prefix=prefix, delimiter=delimiter, key_marker="",
        version_marker="", max_keys=1000,
    )  # fmt: skip
    assert not whole.is_truncated
    expected = [(v.object.key, v.version_id) for v in whole.versions]
    for size in (1, 2, 3):
        seen: list[tuple[str, str]] = []
        prefixes: list[str] = []
        key_marker = version_marker = ""
        while True:
            page = await list_versions_page(
                stack.store, bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
                version_marker=version_marker, max_keys=size,
            )  # fmt: skip
            assert len(page.versions) + len(page.prefixes) <= size
            seen += [(v.object.key, v.version_id) for v in page.versions]
            prefixes += page.prefixes
            if not page.is_truncated:
                break
            assert page.next_key is not None
            key_marker, version_marker = page.next_key, page.next_version_id or ""
        assert seen == expected
        assert prefixes == whole.prefixes
    if delimiter and not prefix:
        assert whole.prefixes == ["b/", "c/"]
