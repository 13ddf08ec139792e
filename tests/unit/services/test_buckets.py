"""Buckets: who may create, list, tag and re-create them, as AWS S3 decides it."""

from __future__ import annotations

import datetime as dt

import pytest

from andromede.core import errors
from andromede.core.limits import MAX_BUCKET_TAGS
from andromede.services.buckets import Buckets
from support.services import ALICE, MALLORY, REGION, ServiceStack


async def names(
    stack: ServiceStack, *, prefix: str = "", after: str = "", limit: int | None = None
) -> tuple[list[str], str | None]:
    """The names ALICE's ListBuckets shows, and the name the next page starts after."""
    page = await stack.buckets.list(ALICE, prefix=prefix, after=after, limit=limit)
    return [b.name for b in page.buckets], page.next_after


# --- CreateBucket of a bucket one owns ----------------------------------------------------------
async def test_recreating_own_bucket_in_us_east_1_succeeds_and_keeps_it(
    stack: ServiceStack, bucket: str
) -> None:
    assert REGION == "us-east-1"
    await stack.put(bucket, "keep", b"data")
    await stack.buckets.put_tags(ALICE, bucket, [("team", "data")])
    before = await stack.buckets.get(ALICE, bucket)
    stack.clock.advance(dt.timedelta(minutes=1))
    again = await stack.buckets.create(ALICE, bucket, None)
    assert again == before  # the same bucket, created when it was
    assert await stack.buckets.get(ALICE, bucket) == before
    assert await stack.get(bucket, "keep") == b"data"
    assert await stack.buckets.get_tags(ALICE, bucket) == {"team": "data"}


async def test_recreating_own_bucket_elsewhere_than_us_east_1_is_owned_by_you(
    stack: ServiceStack,
) -> None:
    buckets = Buckets(stack.store, stack.clock, "eu-west-3", stack.placement.check_location)
    await buckets.create(ALICE, "paris", None)
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        await buckets.create(ALICE, "paris", None)


@pytest.mark.parametrize("location", [None, "fr-only"])
async def test_recreating_own_bucket_of_another_region_is_owned_by_you(
    cluster: ServiceStack, location: str | None
) -> None:
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        await cluster.buckets.create(ALICE, "fr-data", location)


async def test_recreating_own_default_bucket_in_another_region_is_owned_by_you(
    cluster: ServiceStack,
) -> None:
    await cluster.buckets.create(ALICE, "plain", None)
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        await cluster.buckets.create(ALICE, "plain", "fr-only")
    assert (await cluster.buckets.get(ALICE, "plain")).location == ""


async def test_another_tenants_bucket_already_exists(stack: ServiceStack, bucket: str) -> None:
    with pytest.raises(errors.BucketAlreadyExists):
        await stack.buckets.create(MALLORY, bucket, None)


# --- ListBuckets ------------------------------------------------------------------------------
async def test_list_is_the_tenants_buckets_by_name(stack: ServiceStack) -> None:
    for name in ("b-2", "a-1", "c-3"):
        await stack.buckets.create(ALICE, name, None)
    await stack.buckets.create(MALLORY, "m-1", None)
    assert await names(stack) == (["a-1", "b-2", "c-3"], None)


async def test_pages_follow_one_another_until_none_remain(stack: ServiceStack) -> None:
    for name in ("b-2", "a-1", "c-3", "d-4", "e-5"):
        await stack.buckets.create(ALICE, name, None)
    assert await names(stack, limit=2) == (["a-1", "b-2"], "b-2")
    assert await names(stack, limit=2, after="b-2") == (["c-3", "d-4"], "d-4")
    assert await names(stack, limit=2, after="d-4") == (["e-5"], None)


async def test_a_page_that_ends_with_the_last_bucket_says_none_remain(
    stack: ServiceStack,
) -> None:
    assert await names(stack, limit=1) == ([], None)
    await stack.buckets.create(ALICE, "a-1", None)
    assert await names(stack, limit=1) == (["a-1"], None)
    await stack.buckets.create(ALICE, "b-2", None)
    assert await names(stack, limit=1) == (["a-1"], "a-1")
    assert await names(stack, limit=2) == (["a-1", "b-2"], None)


async def test_prefix_and_pages_combine(stack: ServiceStack) -> None:
    for name in ("logs-1", "logs-2", "logs-3", "data-1", "logz-9"):
        await stack.buckets.create(ALICE, name, None)
    assert await names(stack, prefix="logs-") == (["logs-1", "logs-2", "logs-3"], None)
    assert await names(stack, prefix="logs-", limit=2) == (["logs-1", "logs-2"], "logs-2")
    assert await names(stack, prefix="logs-", after="logs-2", limit=2) == (["logs-3"], None)


async def test_after_a_name_that_is_no_bucket_resumes_in_name_order(stack: ServiceStack) -> None:
    for name in ("a-1", "b-2", "c-3"):
        await stack.buckets.create(ALICE, name, None)
    # The bucket the last page ended with may be gone by the next request.
    await stack.buckets.delete(ALICE, "b-2")
    assert await names(stack, after="b-2", limit=5) == (["c-3"], None)


# --- bucket tagging ---------------------------------------------------------------------------
async def test_tags_put_get_replace_delete(stack: ServiceStack, bucket: str) -> None:
    with pytest.raises(errors.NoSuchTagSet):
        await stack.buckets.get_tags(ALICE, bucket)
    await stack.buckets.put_tags(ALICE, bucket, [("Hello", "World"), ("empty", "")])
    assert await stack.buckets.get_tags(ALICE, bucket) == {"Hello": "World", "empty": ""}
    await stack.buckets.put_tags(ALICE, bucket, [("only", "one")])
    assert await stack.buckets.get_tags(ALICE, bucket) == {"only": "one"}
    await stack.buckets.delete_tags(ALICE, bucket)
    with pytest.raises(errors.NoSuchTagSet):
        await stack.buckets.get_tags(ALICE, bucket)
    await stack.buckets.delete_tags(ALICE, bucket)  # none to delete: still fine


async def test_an_empty_tag_set_removes_the_tags(stack: ServiceStack, bucket: str) -> None:
    await stack.buckets.put_tags(ALICE, bucket, [("a", "1")])
    await stack.buckets.put_tags(ALICE, bucket, [])
    with pytest.raises(errors.NoSuchTagSet):
        await stack.buckets.get_tags(ALICE, bucket)


async def test_fifty_tags_fit_a_bucket_fifty_one_do_not(stack: ServiceStack, bucket: str) -> None:
    fifty = [(f"k{i}", f"v{i}") for i in range(MAX_BUCKET_TAGS)]
    await stack.buckets.put_tags(ALICE, bucket, fifty)
    assert await stack.buckets.get_tags(ALICE, bucket) == dict(fifty)
    with pytest.raises(errors.TooManyTags, match="Bucket tag count cannot be greater than 50"):
        await stack.buckets.put_tags(ALICE, bucket, [*fifty, ("one", "more")])
    assert await stack.buckets.get_tags(ALICE, bucket) == dict(fifty)


@pytest.mark.parametrize(
    "pairs",
    [
        [("", "v")],  # empty key
        [("k" * 129, "v")],
        [("k", "v" * 257)],
        [("aws:reserved", "v")],
        [("dup", "1"), ("dup", "2")],
        [("bad<key>", "v")],
    ],
)
async def test_invalid_tags_are_refused_and_change_nothing(
    stack: ServiceStack, bucket: str, pairs: list[tuple[str, str]]
) -> None:
    await stack.buckets.put_tags(ALICE, bucket, [("keep", "me")])
    with pytest.raises(errors.InvalidTag):
        await stack.buckets.put_tags(ALICE, bucket, pairs)
    assert await stack.buckets.get_tags(ALICE, bucket) == {"keep": "me"}


async def test_longest_key_and_value_are_accepted(stack: ServiceStack, bucket: str) -> None:
    await stack.buckets.put_tags(ALICE, bucket, [("k" * 128, "v" * 256)])
    assert await stack.buckets.get_tags(ALICE, bucket) == {"k" * 128: "v" * 256}


async def test_only_the_owner_reads_or_writes_tags(stack: ServiceStack, bucket: str) -> None:
    await stack.buckets.put_tags(ALICE, bucket, [("owner", "acme")])
    with pytest.raises(errors.AccessDenied):
        await stack.buckets.get_tags(MALLORY, bucket)
    with pytest.raises(errors.AccessDenied):
        await stack.buckets.put_tags(MALLORY, bucket, [("owner", "mallory")])
    with pytest.raises(errors.AccessDenied):
        await stack.buckets.delete_tags(MALLORY, bucket)
    # Refused before the tags are looked at: no hint of what is valid.
    with pytest.raises(errors.AccessDenied):
        await stack.buckets.put_tags(MALLORY, bucket, [("aws:x", "")])
    assert await stack.buckets.get_tags(ALICE, bucket) == {"owner": "acme"}


async def test_tags_of_a_missing_bucket(stack: ServiceStack) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await stack.buckets.get_tags(ALICE, "ghost")
    with pytest.raises(errors.NoSuchBucket):
        await stack.buckets.put_tags(ALICE, "ghost", [("a", "1")])


async def test_deleting_a_bucket_deletes_its_tags(stack: ServiceStack, bucket: str) -> None:
    await stack.buckets.put_tags(ALICE, bucket, [("a", "1")])
    await stack.buckets.delete(ALICE, bucket)
    await stack.buckets.create(ALICE, bucket, None)
    with pytest.raises(errors.NoSuchTagSet):
        await stack.buckets.get_tags(ALICE, bucket)
