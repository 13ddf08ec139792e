"""Object lock rules: what a retention or a legal hold forbids, which changes are allowed,
and what a new version gets."""

from __future__ import annotations

import datetime as dt

import pytest

from andromede.core import errors
from andromede.core.object_lock import (
    DefaultRetention,
    LockMode,
    LockRequest,
    ObjectLockConfig,
    Retention,
    check_deletable,
    check_retention_change,
    lock_for_write,
)

NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
GOV = Retention(LockMode.GOVERNANCE, NOW + DAY)
COMP = Retention(LockMode.COMPLIANCE, NOW + DAY)


def test_compliance_forbids_every_delete_until_the_date() -> None:
    for bypass in (False, True):
        with pytest.raises(errors.AccessDenied, match="COMPLIANCE"):
            check_deletable(COMP, False, NOW, bypass)
    check_deletable(COMP, False, NOW + 2 * DAY, False)  # expired: a plain version again


def test_governance_yields_to_a_bypass_only() -> None:
    with pytest.raises(errors.AccessDenied, match="GOVERNANCE"):
        check_deletable(GOV, False, NOW, False)
    check_deletable(GOV, False, NOW, True)


def test_a_legal_hold_forbids_deletion_whatever_else() -> None:
    for retention in (None, GOV, Retention(LockMode.GOVERNANCE, NOW - DAY)):
        with pytest.raises(errors.AccessDenied, match="legal hold"):
            check_deletable(retention, True, NOW, True)
    check_deletable(None, False, NOW, False)


def test_compliance_can_only_be_extended() -> None:
    check_retention_change(COMP, Retention(LockMode.COMPLIANCE, NOW + 2 * DAY), NOW, False)
    for weaker in (None, Retention(LockMode.COMPLIANCE, NOW + DAY / 2), GOV):
        for bypass in (False, True):
            with pytest.raises(errors.AccessDenied):
                check_retention_change(COMP, weaker, NOW, bypass)


def test_governance_changes_need_a_bypass_except_extending() -> None:
    check_retention_change(GOV, Retention(LockMode.GOVERNANCE, NOW + 2 * DAY), NOW, False)
    for change in (None, Retention(LockMode.GOVERNANCE, NOW + DAY / 2), COMP):
        with pytest.raises(errors.AccessDenied):
            check_retention_change(GOV, change, NOW, False)
        check_retention_change(GOV, change, NOW, True)


def test_a_retention_date_must_be_in_the_future() -> None:
    with pytest.raises(errors.InvalidArgument):
        check_retention_change(None, Retention(LockMode.GOVERNANCE, NOW - DAY), NOW, False)
    with pytest.raises(errors.InvalidArgument):
        lock_for_write(ObjectLockConfig(), LockRequest(Retention(LockMode.COMPLIANCE, NOW)), NOW)


def test_new_versions_get_the_request_or_the_default() -> None:
    config = ObjectLockConfig(DefaultRetention(LockMode.COMPLIANCE, years=1))
    assert lock_for_write(config, LockRequest(), NOW) == (
        Retention(LockMode.COMPLIANCE, NOW + 365 * DAY),
        False,
    )
    asked = LockRequest(GOV, legal_hold=True)
    assert lock_for_write(config, asked, NOW) == (GOV, True)
    assert lock_for_write(ObjectLockConfig(), LockRequest(), NOW) == (None, False)
    assert lock_for_write(None, LockRequest(), NOW) == (None, False)
    with pytest.raises(errors.InvalidRequest, match="missing Object Lock"):
        lock_for_write(None, LockRequest(legal_hold=False), NOW)


@pytest.mark.parametrize(
    ("days", "years", "error"),
    [
        (None, None, errors.MalformedXML),
        (1, 1, errors.MalformedXML),
        (0, None, errors.InvalidRetentionPeriod),
        (-3, None, errors.InvalidRetentionPeriod),
        (None, 101, errors.InvalidRetentionPeriod),
        (36_501, None, errors.InvalidRetentionPeriod),
    ],
)
def test_default_retention_periods_are_checked(
    days: int | None, years: int | None, error: type[errors.AndromedeError]
) -> None:
    with pytest.raises(error):
        DefaultRetention(LockMode.GOVERNANCE, days, years)
