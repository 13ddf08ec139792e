"""Lifecycle rules (groundwork for issue 15's lifecycle): what a configuration may hold, which
versions a rule applies to, and when they expire, as AWS documents it.

Not wired yet: PutBucketLifecycleConfiguration still answers NotImplemented (a configuration
stored without the job that applies it would be a silent success). The job, the store and the
S3 face come with it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from andromede.core import errors

MAX_RULES = 1000
MAX_RULE_ID = 255
MAX_NEWER_NONCURRENT = 100


@dataclass(frozen=True)
class LifecycleFilter:
    """Which objects a rule applies to: all of the predicates given must hold."""

    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_greater_than: int | None = None
    size_less_than: int | None = None
    legacy: bool = False  # given as the rule's own <Prefix>, and shown back so

    def __post_init__(self) -> None:
        gt, lt = self.size_greater_than, self.size_less_than
        if (gt is not None and gt < 0) or (lt is not None and lt <= 0):
            raise errors.InvalidArgument("Object size filters must be non-negative integers.")
        if gt is not None and lt is not None and gt >= lt:
            raise errors.InvalidArgument(
                "ObjectSizeGreaterThan must be less than ObjectSizeLessThan."
            )

    def matches(self, key: str, tags: Mapping[str, str], size: int) -> bool:
        if not key.startswith(self.prefix):
            return False
        if any(tags.get(k) != v for k, v in self.tags):
            return False
        if self.size_greater_than is not None and size <= self.size_greater_than:
            return False
        return self.size_less_than is None or size < self.size_less_than


@dataclass(frozen=True)
class Expiration:
    """Expire current versions ``days`` after their creation or on ``date`` (midnight UTC);
    or remove delete markers left without any other version."""

    days: int | None = None
    date: dt.datetime | None = None
    expired_object_delete_marker: bool = False

    def __post_init__(self) -> None:
        given = [self.days is not None, self.date is not None, self.expired_object_delete_marker]
        if sum(given) != 1:
            raise errors.MalformedXML()
        if self.days is not None and self.days <= 0:
            raise errors.InvalidArgument("'Days' for Expiration action must be a positive integer")
        if self.date is not None and self.date.astimezone(dt.UTC).time() != dt.time(0):
            raise errors.InvalidArgument("'Date' must be at midnight GMT")


@dataclass(frozen=True)
class NoncurrentExpiration:
    """Delete noncurrent versions ``days`` after they became noncurrent, keeping the
    ``newer_versions`` newest of them whatever their age."""

    days: int
    newer_versions: int | None = None

    def __post_init__(self) -> None:
        if self.days <= 0:
            raise errors.InvalidArgument(
                "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer"
            )
        newer = self.newer_versions
        if newer is not None and not 1 <= newer <= MAX_NEWER_NONCURRENT:
            raise errors.InvalidArgument(
                f"'NewerNoncurrentVersions' must be between 1 and {MAX_NEWER_NONCURRENT}"
            )


@dataclass(frozen=True)
class LifecycleRule:
    id: str
    enabled: bool
    filter: LifecycleFilter = field(default_factory=LifecycleFilter)
    expiration: Expiration | None = None
    noncurrent: NoncurrentExpiration | None = None
    abort_multipart_days: int | None = None

    def __post_init__(self) -> None:
        if len(self.id) > MAX_RULE_ID:
            raise errors.InvalidArgument(
                f"ID length should not exceed allowed limit of {MAX_RULE_ID}"
            )
        if (
            self.expiration is None
            and self.noncurrent is None
            and self.abort_multipart_days is None
        ):
            raise errors.InvalidArgument("At least one action needs to be specified in a rule")
        if self.abort_multipart_days is not None:
            if self.abort_multipart_days <= 0:
                raise errors.InvalidArgument(
                    "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a "
                    "positive integer"
                )
            if self.filter.tags:
                raise errors.InvalidRequest(
                    "AbortIncompleteMultipartUpload cannot be specified with Tags."
                )
        marker = self.expiration is not None and self.expiration.expired_object_delete_marker
        if marker and self.filter.tags:
            raise errors.InvalidRequest("ExpiredObjectDeleteMarker cannot be specified with Tags.")


@dataclass(frozen=True)
class LifecycleConfig:
    rules: tuple[LifecycleRule, ...]

    def __post_init__(self) -> None:
        if not self.rules or len(self.rules) > MAX_RULES:
            raise errors.MalformedXML()
        ids = [r.id for r in self.rules if r.id]
        if len(ids) != len(set(ids)):
            raise errors.InvalidArgument(
                "Rule ID must be unique. Found same ID for more than one rule"
            )


def due(start: dt.datetime, days: int, day: dt.timedelta | None = None) -> dt.datetime:
    """When something ``days`` after ``start`` is due: as AWS counts, ``start`` plus the days,
    rounded up to the next midnight UTC. With ``day`` (a test setting that makes a day last
    seconds) no rounding: ``start`` plus that many such days."""
    if day is not None:
        return start + days * day
    moment = start.astimezone(dt.UTC) + dt.timedelta(days=days)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == moment else midnight + dt.timedelta(days=1)


def current_expiry(
    config: LifecycleConfig,
    key: str,
    tags: Mapping[str, str],
    size: int,
    created: dt.datetime,
    day: dt.timedelta | None = None,
) -> tuple[dt.datetime, str] | None:
    """When the current version of ``key`` expires and by which rule (the earliest of the
    enabled rules that apply), for ``x-amz-expiration``; None when none applies."""
    found: tuple[dt.datetime, str] | None = None
    for rule in config.rules:
        exp = rule.expiration
        if not rule.enabled or exp is None or not rule.filter.matches(key, tags, size):
            continue
        if exp.days is not None:
            when = due(created, exp.days, day)
        elif exp.date is not None:
            when = exp.date
        else:
            continue
        if found is None or when < found[0]:
            found = (when, rule.id)
    return found
