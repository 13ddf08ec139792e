"""Bucket listings with prefix, delimiter and markers, as S3 computes them."""

from __future__ import annotations

from dataclasses import dataclass

from andromede.core.ids import successor_prefix
from andromede.core.models import ListPage, ObjectSummary, VersionPage, VersionSummary
from andromede.ports import MetadataStore

_MIN_BATCH = 100
# With a delimiter a batch often ends at its first row (a common prefix is rolled up and the
# listing jumps past it): keys and versions are read in batches that start this small and
# double while no jump cuts them short.
_FIRST_ROLLUP_BATCH = 16


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
    batch_cap = _FIRST_ROLLUP_BATCH if delimiter else max_keys + 1
    while True:
        room = max_keys - len(objects) - len(prefixes)
        want = min(max(room + 1, _MIN_BATCH), batch_cap)
        batch = await store.list_objects(bucket, prefix, cursor.start, cursor.inclusive, want)
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
        if not jumped and len(batch) < want:
            return ListPage(objects, prefixes, False, last)
        if not jumped:
            batch_cap *= 2


def _common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    idx = key.find(delimiter, len(prefix))
    if idx < 0:
        return None
    return key[: idx + len(delimiter)]


@dataclass
class _VersionCursor:
    start: str
    inclusive: bool
    before_seq: int | None = None  # resume within ``start``'s versions, older than this


async def list_versions_page(  # noqa: C901 - the same cases as list_page, per version
    store: MetadataStore,
    bucket: str,
    *,
    prefix: str,
    delimiter: str,
    key_marker: str,
    version_marker: str,
    max_keys: int,
) -> VersionPage:
    """One page of ListObjectVersions: versions and delete markers by key, newest first,
    and common prefixes, at most ``max_keys`` entries, after (``key_marker``,
    ``version_marker``). Without a version marker the listing resumes after every version
    of ``key_marker``; with one, after that version (an unknown one: after the key)."""
    versions: list[VersionSummary] = []
    prefixes: list[str] = []
    if max_keys <= 0:
        return VersionPage([], [], False, None, None)
    cursor = await _first_cursor(store, bucket, prefix, key_marker, version_marker)
    last: tuple[str, str | None] | None = None
    batch_cap = _FIRST_ROLLUP_BATCH if delimiter else max_keys + 1
    while True:
        room = max_keys - len(versions) - len(prefixes)
        want = min(max(room + 1, _MIN_BATCH), batch_cap)
        batch = await store.list_object_versions(
            bucket, prefix, cursor.start, cursor.inclusive, cursor.before_seq, want
        )
        if not batch:
            return _version_page(versions, prefixes, False, last)
        jumped = False
        for entry in batch:
            key = entry.object.key
            common = _common_prefix(key, prefix, delimiter)
            if common is not None and key_marker and common <= key_marker:
                nxt = successor_prefix(common)
                if nxt is None:
                    return _version_page(versions, prefixes, False, last)
                cursor = _VersionCursor(nxt, True)
                jumped = True
                break
            if len(versions) + len(prefixes) >= max_keys:
                return _version_page(versions, prefixes, True, last)
            if common is not None:
                prefixes.append(common)
                last = (common, None)
                nxt = successor_prefix(common)
                if nxt is None:
                    return _version_page(versions, prefixes, False, last)
                cursor = _VersionCursor(nxt, True)
                jumped = True
                break
            versions.append(entry)
            last = (key, entry.version_id)
            cursor = _VersionCursor(key, False, entry.seq)
        if not jumped and len(batch) < want:
            return _version_page(versions, prefixes, False, last)
        if not jumped:
            batch_cap *= 2


async def _first_cursor(
    store: MetadataStore, bucket: str, prefix: str, key_marker: str, version_marker: str
) -> _VersionCursor:
    if not key_marker or key_marker < prefix:
        return _VersionCursor(prefix, True)
    seq = await store.version_seq(bucket, key_marker, version_marker) if version_marker else None
    return _VersionCursor(key_marker, False, seq)


def _version_page(
    versions: list[VersionSummary],
    prefixes: list[str],
    truncated: bool,
    last: tuple[str, str | None] | None,
) -> VersionPage:
    if not truncated or last is None:
        return VersionPage(versions, prefixes, truncated, None, None)
    return VersionPage(versions, prefixes, True, last[0], last[1])
