"""What the repair jobs record: a site's drain progress, where the scrubber stands, and the
totals of every repair done.

The metadata store keeps these between runs and processes; ``repair status`` and
``site list`` show them. No I/O here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum


class Outcome(StrEnum):
    """What became of one blob."""

    HEALTHY = "healthy"
    REPAIRED = "repaired"
    MOVED = "moved"
    LOST = "lost"  # more shards gone than the redundancy tolerates
    BLOCKED = "blocked"  # no allowed site can take a shard
    VANISHED = "vanished"  # the object was replaced or deleted meanwhile
    UNAVAILABLE = "unavailable"  # too few shards readable right now


@dataclass(frozen=True)
class OutcomeCounts:
    """How many blobs ended in each :class:`Outcome` (field names are the outcomes' values)."""

    healthy: int = 0
    repaired: int = 0
    moved: int = 0
    lost: int = 0
    blocked: int = 0
    vanished: int = 0
    unavailable: int = 0

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> OutcomeCounts:
        """The counts of ``counts`` keyed by outcome value (other keys are ignored)."""
        return cls(**{o.value: int(counts.get(o.value, 0)) for o in Outcome})

    def items(self) -> list[tuple[Outcome, int]]:
        """Every outcome with its count, in :class:`Outcome` order."""
        return [(o, getattr(self, o.value)) for o in Outcome]

    def plus(self, outcome: Outcome, n: int = 1) -> OutcomeCounts:
        """These counts with ``n`` more of ``outcome``."""
        return replace(self, **{outcome.value: getattr(self, outcome.value) + n})

    def __add__(self, other: OutcomeCounts) -> OutcomeCounts:
        return OutcomeCounts(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )


class DrainState(StrEnum):
    """Where a site's drain stands."""

    QUEUED = "queued"  # the site is draining; the job has not reached it yet
    RUNNING = "running"
    DONE = "done"  # nothing live names the site any more
    BLOCKED = "blocked"  # some blobs have no allowed site to go to


@dataclass(frozen=True)
class DrainProgress:
    """How the drain of one site is going, saved after every page of blobs."""

    state: DrainState
    moved: int = 0
    # Buckets whose policy leaves no other site for some of their blobs.
    blocked: tuple[str, ...] = ()
    # The next three are None until the job has started on the site.
    failed: int | None = None
    remaining: int | None = None  # live blobs with a shard still on the site
    updated: dt.datetime | None = None

    @classmethod
    def queued(cls) -> DrainProgress:
        """A drain the operator asked for, not started yet."""
        return cls(DrainState.QUEUED)


@dataclass(frozen=True)
class ScrubState:
    """Where the scrubber stands, and what it has found since it first ran."""

    # The last blob checked (empty when the last call ended a pass): its id is enough to
    # resume, since every live reference to a blob names the same layout.
    blob_id: str = ""
    passes: int = 0
    last_pass_finished: dt.datetime | None = None
    checked: int = 0
    found_bad: int = 0
    bytes_checked: int = 0
    # What became of the bad blobs found (a blob moved while repaired counts as repaired).
    outcomes: OutcomeCounts = OutcomeCounts()

    def found(self, outcome: Outcome) -> ScrubState:
        """One more bad blob found, and what became of it."""
        counted = Outcome.REPAIRED if outcome is Outcome.MOVED else outcome
        return replace(self, found_bad=self.found_bad + 1, outcomes=self.outcomes.plus(counted))


@dataclass(frozen=True)
class RepairTotals:
    """What every process's repairs (queued, drains, scrub) have done, summed."""

    bytes_rebuilt: int = 0
    outcomes: OutcomeCounts = OutcomeCounts()
    updated: dt.datetime | None = None  # when a process last added its part

    def __add__(self, other: RepairTotals) -> RepairTotals:
        """Counts summed; ``updated`` is ``other``'s (the part being added) when it has one."""
        return RepairTotals(
            self.bytes_rebuilt + other.bytes_rebuilt,
            self.outcomes + other.outcomes,
            other.updated if other.updated is not None else self.updated,
        )
