"""Records stored as JSON text: readers that check each field's type (a damaged or foreign row
is a ValueError naming the field, never a wrong value), and the repair jobs' records.

The key service's records (key versions, re-wrap progress, bucket encryption) are read with the
same readers, in :mod:`andromede.metadata.codec`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TypeVar

from andromede.core.repair import (
    DrainProgress,
    DrainState,
    Outcome,
    OutcomeCounts,
    RepairTotals,
    ScrubState,
)

T = TypeVar("T")


# Kept in the shapes the store held before these were typed, so rows written by an older
# version read back the same: a drain's keys in the order it set them, job states with sorted
# keys, a counter left out until it is first counted.


def dump_drain_progress(progress: DrainProgress) -> str:
    """A site's drain progress as stored in ``sites.progress``."""
    data: dict[str, object] = {"state": progress.state.value, "moved": progress.moved}
    if progress.failed is not None:
        data["failed"] = progress.failed
    data["blocked"] = list(progress.blocked)
    if progress.remaining is not None:
        data["remaining"] = progress.remaining
    if progress.updated is not None:
        data["updated"] = progress.updated.isoformat()
    return json.dumps(data)


def load_drain_progress(text: str) -> DrainProgress:
    """Inverse of :func:`dump_drain_progress`."""
    data = json_object(text)
    return DrainProgress(
        DrainState(field(data, "state", str)),
        count(data, "moved"),
        tuple(strings(data, "blocked")),
        optional(data, "failed", int),
        optional(data, "remaining", int),
        time_field(data, "updated"),
    )


def dump_scrub_state(state: ScrubState) -> str:
    """The scrubber's state as stored in ``job_state``."""
    data: dict[str, object] = {
        "blob_id": state.blob_id,
        "bytes_checked": state.bytes_checked,
    }
    counters = {"passes": state.passes, "checked": state.checked, "found_bad": state.found_bad}
    counters.update((o.value, n) for o, n in state.outcomes.items())
    data.update((k, n) for k, n in counters.items() if n)
    if state.last_pass_finished is not None:
        data["last_pass_finished"] = state.last_pass_finished.isoformat()
    return json.dumps(data, sort_keys=True)


def load_scrub_state(text: str) -> ScrubState:
    """Inverse of :func:`dump_scrub_state`."""
    data = json_object(text)
    return ScrubState(
        blob_id=field(data, "blob_id", str, ""),
        passes=count(data, "passes"),
        last_pass_finished=time_field(data, "last_pass_finished"),
        checked=count(data, "checked"),
        found_bad=count(data, "found_bad"),
        bytes_checked=count(data, "bytes_checked"),
        outcomes=_outcomes(data),
    )


def dump_repair_totals(totals: RepairTotals) -> str:
    """The repair totals as stored in ``job_state``: every counter, zero or not."""
    data: dict[str, object] = {"bytes_rebuilt": totals.bytes_rebuilt}
    data.update((o.value, n) for o, n in totals.outcomes.items())
    if totals.updated is not None:
        data["updated"] = totals.updated.isoformat()
    return json.dumps(data, sort_keys=True)


def load_repair_totals(text: str) -> RepairTotals:
    """Inverse of :func:`dump_repair_totals`."""
    data = json_object(text)
    return RepairTotals(count(data, "bytes_rebuilt"), _outcomes(data), time_field(data, "updated"))


def _outcomes(data: dict[str, object]) -> OutcomeCounts:
    return OutcomeCounts.of({o.value: count(data, o.value) for o in Outcome})


def json_object(text: str) -> dict[str, object]:
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise ValueError(f"a stored record is not a JSON object: {text[:80]!r}")
    return loaded


def field(data: dict[str, object], key: str, kind: type[T], default: T | None = None) -> T:
    """A stored record's JSON object; ValueError for anything else."""
    value = data.get(key, default)
    # bool is an int to isinstance; a stored counter never is one
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"a stored record's {key!r} is not a {kind.__name__}: {value!r}")
    return value


def optional(data: dict[str, object], key: str, kind: type[T]) -> T | None:
    """``data[key]`` (or ``default``) when it is a ``kind``; ValueError otherwise."""
    return None if data.get(key) is None else field(data, key, kind)


def count(data: dict[str, object], key: str) -> int:
    """``data[key]`` as a ``kind``, or None when absent or null."""
    return field(data, key, int, 0)


def strings(data: dict[str, object], key: str) -> list[str]:
    """A counter: an int, 0 when absent."""
    values = field(data, key, list, [])
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"a stored record's {key!r} is not a list of strings: {values!r}")
    return [str(v) for v in values]


def time_field(data: dict[str, object], key: str) -> dt.datetime | None:
    """An ISO 8601 timestamp, or None when absent."""
    """A list of strings, empty when absent."""
    text = optional(data, key, str)
    return None if text is None else dt.datetime.fromisoformat(text)
