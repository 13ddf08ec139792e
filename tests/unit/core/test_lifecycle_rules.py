"""Lifecycle rules: validation as AWS answers, which objects a filter takes, and when a
rule's days fall due (rounded up to midnight UTC, or a test day's length)."""

from __future__ import annotations

import datetime as dt

import pytest

from andromede.core import errors
from andromede.core.lifecycle import (
    Expiration,
    LifecycleConfig,
    LifecycleFilter,
    LifecycleRule,
    NoncurrentExpiration,
    current_expiry,
    due,
)

T = dt.datetime(2026, 12, 7, 15, 30, tzinfo=dt.UTC)


def test_days_fall_due_at_the_next_midnight_utc() -> None:
    assert due(T, 1) == dt.datetime(2026, 12, 9, tzinfo=dt.UTC)
    midnight = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    assert due(midnight, 2) == dt.datetime(2026, 12, 9, tzinfo=dt.UTC)
    assert due(T, 3, dt.timedelta(seconds=10)) == T + dt.timedelta(seconds=30)


def test_filters_take_all_their_predicates() -> None:
    f = LifecycleFilter("logs/", (("class", "tmp"),), size_greater_than=10, size_less_than=100)
    assert f.matches("logs/a", {"class": "tmp", "x": "y"}, 50)
    assert not f.matches("data/a", {"class": "tmp"}, 50)
    assert not f.matches("logs/a", {"class": "keep"}, 50)
    assert not f.matches("logs/a", {"class": "tmp"}, 10)
    assert not f.matches("logs/a", {"class": "tmp"}, 100)
    with pytest.raises(errors.InvalidArgument):
        LifecycleFilter(size_greater_than=100, size_less_than=10)


def test_the_earliest_enabled_rule_sets_the_expiry() -> None:
    rules = (
        LifecycleRule("late", True, LifecycleFilter("a"), Expiration(days=30)),
        LifecycleRule("soon", True, LifecycleFilter("a/"), Expiration(days=2)),
        LifecycleRule("off", False, LifecycleFilter(""), Expiration(days=1)),
    )
    config = LifecycleConfig(rules)
    assert current_expiry(config, "a/x", {}, 1, T) == (due(T, 2), "soon")
    assert current_expiry(config, "ab", {}, 1, T) == (due(T, 30), "late")
    assert current_expiry(config, "b", {}, 1, T) is None


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (Expiration, errors.MalformedXML),
        (lambda: Expiration(days=1, expired_object_delete_marker=True), errors.MalformedXML),
        (lambda: Expiration(days=0), errors.InvalidArgument),
        (lambda: Expiration(date=T), errors.InvalidArgument),  # not midnight
        (lambda: NoncurrentExpiration(0), errors.InvalidArgument),
        (lambda: NoncurrentExpiration(1, 101), errors.InvalidArgument),
        (
            lambda: LifecycleRule("x" * 256, True, expiration=Expiration(days=1)),
            errors.InvalidArgument,
        ),
        (lambda: LifecycleRule("none", True), errors.InvalidArgument),
        (
            lambda: LifecycleRule(
                "t", True, LifecycleFilter(tags=(("a", "b"),)), abort_multipart_days=1
            ),
            errors.InvalidRequest,
        ),
        (lambda: LifecycleConfig(()), errors.MalformedXML),
        (
            lambda: LifecycleConfig(
                (LifecycleRule("same", True, expiration=Expiration(days=1)),) * 2
            ),
            errors.InvalidArgument,
        ),
    ],
)
def test_invalid_rules_are_refused(make: object, error: type[errors.AndromedeError]) -> None:
    with pytest.raises(error):
        make()  # type: ignore[operator]
