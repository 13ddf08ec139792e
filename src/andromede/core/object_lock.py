"""Object lock (WORM): retention modes, default retention, and what a lock forbids.

A version under retention cannot be deleted (nor its retention shortened or removed) until
its retain-until date: in COMPLIANCE mode by nobody, in GOVERNANCE mode only by a request
that asks to bypass it (``x-amz-bypass-governance-retention: true``) from a principal with
that right. A legal hold forbids deletion until it is removed, whatever the retention. Dates
are compared with the server's clock (keep it synchronised: docs/object-lock.md).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from andromede.core import errors

# AWS bounds a default retention: 36,500 days or 100 years.
MAX_DAYS = 36_500
MAX_YEARS = 100


class LockMode(enum.StrEnum):
    GOVERNANCE = "GOVERNANCE"
    COMPLIANCE = "COMPLIANCE"


@dataclass(frozen=True)
class Retention:
    """A version's retention: its mode and the date until which it holds."""

    mode: LockMode
    until: dt.datetime

    def active(self, now: dt.datetime) -> bool:
        return self.until > now


@dataclass(frozen=True)
class DefaultRetention:
    """A bucket's default retention: a mode and a period in days or in years."""

    mode: LockMode
    days: int | None = None
    years: int | None = None

    def __post_init__(self) -> None:
        if (self.days is None) == (self.years is None):
            raise errors.MalformedXML()
        period = self.days if self.days is not None else self.years
        bound = MAX_DAYS if self.days is not None else MAX_YEARS
        if period is None or period <= 0 or period > bound:
            raise errors.InvalidRetentionPeriod(
                "Default retention period must be a positive integer value "
                f"(at most {MAX_DAYS} days or {MAX_YEARS} years)."
            )

    def retention(self, now: dt.datetime) -> Retention:
        """The retention a version written at ``now`` gets (a year is 365 days, as AWS counts)."""
        days = self.days if self.days is not None else 365 * (self.years or 0)
        return Retention(self.mode, now + dt.timedelta(days=days))


@dataclass(frozen=True)
class ObjectLockConfig:
    """A bucket's object lock: enabled (it cannot be turned off), with or without a default
    retention for new versions."""

    default: DefaultRetention | None = None


def check_retention_change(
    current: Retention | None, new: Retention | None, now: dt.datetime, bypass: bool
) -> None:
    """PutObjectRetention: AccessDenied when ``new`` would weaken or change an active
    retention. A COMPLIANCE retention can only be extended; a GOVERNANCE one can be extended,
    and shortened, removed or changed to COMPLIANCE only with ``bypass``."""
    if new is not None and not new.active(now):
        raise errors.InvalidArgument(
            "The retain until date must be in the future.", ArgumentName="RetainUntilDate"
        )
    if current is None or not current.active(now):
        return
    weaker = new is None or new.until < current.until
    if current.mode is LockMode.COMPLIANCE:
        if weaker or (new is not None and new.mode is not LockMode.COMPLIANCE):
            raise errors.AccessDenied(
                "The version is under COMPLIANCE retention until "
                f"{current.until.isoformat()}: it can only be extended."
            )
        return
    changed = new is not None and new.mode is not LockMode.GOVERNANCE
    if (weaker or changed) and not bypass:
        raise errors.AccessDenied(
            "The version is under GOVERNANCE retention until "
            f"{current.until.isoformat()}: shortening, removing or changing it needs "
            "x-amz-bypass-governance-retention."
        )


def check_deletable(
    retention: Retention | None, legal_hold: bool, now: dt.datetime, bypass: bool
) -> None:
    """Deleting a version for good: AccessDenied under a legal hold, an active COMPLIANCE
    retention, or an active GOVERNANCE retention without ``bypass``."""
    if legal_hold:
        raise errors.AccessDenied("The version is under a legal hold: it cannot be deleted.")
    if retention is None or not retention.active(now):
        return
    if retention.mode is LockMode.COMPLIANCE or not bypass:
        raise errors.AccessDenied(
            f"The version is under {retention.mode.value} retention until "
            f"{retention.until.isoformat()}: it cannot be deleted."
        )


@dataclass(frozen=True)
class LockRequest:
    """What a write asks for: ``x-amz-object-lock-mode`` with ``-retain-until-date``, and
    ``-legal-hold``."""

    retention: Retention | None = None
    legal_hold: bool | None = None

    @property
    def asked(self) -> bool:
        return self.retention is not None or self.legal_hold is not None


def lock_for_write(
    config: ObjectLockConfig | None, request: LockRequest, now: dt.datetime
) -> tuple[Retention | None, bool]:
    """The retention and legal hold a new version gets: what the request asks, else the
    bucket's default retention. InvalidRequest when the bucket has no object lock but the
    request asks for one; InvalidArgument for a retain-until date in the past."""
    if config is None:
        if request.asked:
            raise errors.InvalidRequest("Bucket is missing Object Lock Configuration")
        return None, False
    retention = request.retention
    if retention is not None and not retention.active(now):
        raise errors.InvalidArgument(
            "The retain until date must be in the future.",
            ArgumentName="x-amz-object-lock-retain-until-date",
        )
    if retention is None and config.default is not None:
        retention = config.default.retention(now)
    return retention, bool(request.legal_hold)
