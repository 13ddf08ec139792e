"""The listing algorithm (delimiters, markers, pagination) over a sorted key list.

The store here is a sorted in-memory list that answers the one query the algorithm makes;
the metadata contract suite checks that the real stores answer it the same way.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence

import pytest

from andromede.core.models import ObjectSummary
from andromede.services.listing import list_page

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class SortedKeys:
    """Answers ``list_objects`` over keys sorted in UTF-8 byte order."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = sorted(keys, key=lambda k: k.encode())
        self.queries = 0

    async def list_objects(
        self, bucket: str, prefix: str, start: str, inclusive: bool, limit: int
    ) -> Sequence[ObjectSummary]:
        self.queries += 1
        encoded = [k.encode() for k in self.keys]
        find = bisect.bisect_left if inclusive else bisect.bisect_right
        i = find(encoded, start.encode())
        out = []
        for key in self.keys[i:]:
            if len(out) >= limit:
                break
            if key.startswith(prefix):
                out.append(ObjectSummary(key, 1, '"e"', T0, "STANDARD", "t"))
        return out


KEYS = [
    "a.txt",
    "b/1",
    "b/2",
    "b/c/3",
    "c/",
    "c/x",
    "d",
    "e/f/g",
    "e/h",
    "z",
    "é",
    "a/b",
]


def reference(keys: list[str], prefix: str, delimiter: str) -> list[str]:
    """Every entry (keys and common prefixes) a full listing must return, in order."""
    out: list[str] = []
    for key in sorted(keys, key=lambda k: k.encode()):
        if not key.startswith(prefix):
            continue
        idx = key.find(delimiter, len(prefix)) if delimiter else -1
        entry = key[: idx + len(delimiter)] if idx >= 0 else key
        if not out or out[-1] != entry:
            out.append(entry)
    return out


async def collect(store: SortedKeys, prefix: str, delimiter: str, page: int) -> list[str]:
    entries: list[str] = []
    marker = ""
    for _ in range(100):
        result = await list_page(
            store,
            "b",  # type: ignore[arg-type]
            prefix=prefix,
            delimiter=delimiter,
            marker=marker,
            max_keys=page,
        )
        got = [o.key for o in result.objects] + result.prefixes
        entries.extend(sorted(got, key=lambda k: k.encode()))
        assert len(got) <= page
        if not result.is_truncated:
            return entries
        assert result.next_marker is not None
        marker = result.next_marker
    raise AssertionError("listing did not end")


@pytest.mark.parametrize("page", [1, 2, 3, 1000])
@pytest.mark.parametrize(
    ("prefix", "delimiter"), [("", ""), ("", "/"), ("b/", "/"), ("e", "/"), ("", "b"), ("c/", "/")]
)
async def test_paged_listing_equals_reference(prefix: str, delimiter: str, page: int) -> None:
    store = SortedKeys(KEYS)
    assert await collect(store, prefix, delimiter, page) == reference(KEYS, prefix, delimiter)


async def test_marker_inside_a_common_prefix_skips_it() -> None:
    store = SortedKeys(KEYS)
    result = await list_page(store, "b", prefix="", delimiter="/", marker="b/1", max_keys=10)  # type: ignore[arg-type]
    assert "b/" not in result.prefixes
    assert [o.key for o in result.objects][:1] == ["d"]


async def test_many_keys_under_one_prefix_cost_one_skip() -> None:
    store = SortedKeys([f"logs/{i:05d}" for i in range(5000)] + ["z"])
    result = await list_page(store, "b", prefix="", delimiter="/", marker="", max_keys=10)  # type: ignore[arg-type]
    assert result.prefixes == ["logs/"]
    assert [o.key for o in result.objects] == ["z"]
    assert store.queries <= 3


async def test_max_keys_zero() -> None:
    result = await list_page(SortedKeys(KEYS), "b", prefix="", delimiter="", marker="", max_keys=0)  # type: ignore[arg-type]
    assert result.objects == []
    assert result.prefixes == []
    assert not result.is_truncated
