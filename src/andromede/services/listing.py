"""Bucket listings with prefix, delimiter and markers, as S3 computes them."""

from __future__ import annotations

from dataclasses import dataclass

from andromede.core.ids import successor_prefix
from andromede.core.models import ListPage, ObjectSummary
from andromede.ports import MetadataStore

_MIN_BATCH = 100


@dataclass
class _Cursor:
    start: str
    inclusive: bool


# One pass of the paging algorithm, whose cases (skipped prefix, full page, jump past a common
# prefix) read best together; tests/unit/services/test_listing.py checks it against a model.
async def list_page(  # noqa: C901
    store: MetadataStore,
    bucket: str,
    *,
    prefix: str,
    delimiter: str,
    marker: str,
    max_keys: int,
) -> ListPage:
    """One page of keys and common prefixes after ``marker``, at most ``max_keys`` entries.

    A common prefix that sorts at or before the marker was returned on an earlier page and
    is skipped. ``next_marker`` is the last entry returned (key or common prefix).
    """
    objects: list[ObjectSummary] = []
    prefixes: list[str] = []
    cursor = _Cursor(marker, False) if marker >= prefix else _Cursor(prefix, True)
    last: str | None = None
    if max_keys <= 0:
        return ListPage([], [], False, None)
    while True:
        room = max_keys - len(objects) - len(prefixes)
        batch = await store.list_objects(
            bucket, prefix, cursor.start, cursor.inclusive, max(room + 1, _MIN_BATCH)
        )
        if not batch:
            return ListPage(objects, prefixes, False, last)
        jumped = False
        for obj in batch:
            common = _common_prefix(obj.key, prefix, delimiter)
            if common is not None and common <= marker:
                nxt = successor_prefix(common)
                if nxt is None:
                    return ListPage(objects, prefixes, False, last)
                cursor = _Cursor(nxt, True)
                jumped = True
                break
            if len(objects) + len(prefixes) >= max_keys:
                return ListPage(objects, prefixes, True, last)
            if common is not None:
                prefixes.append(common)
                last = common
                nxt = successor_prefix(common)
                if nxt is None:
                    return ListPage(objects, prefixes, False, last)
                cursor = _Cursor(nxt, True)
                jumped = True
                break
            objects.append(obj)
            last = obj.key
            cursor = _Cursor(obj.key, False)
        if not jumped and len(batch) < max(room + 1, _MIN_BATCH):
            return ListPage(objects, prefixes, False, last)


def _common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    idx = key.find(delimiter, len(prefix))
    if idx < 0:
        return None
    return key[: idx + len(delimiter)]
