"""Lifecycle use cases: a bucket's lifecycle configuration, and the job that applies every
bucket's rules (under a lease, like every background job).

A pass walks each bucket with rules, a page of keys at a time: a current version past its
expiration gets a delete marker (versioned bucket) or is deleted (versioning never enabled);
a delete marker left without any other version is removed where a rule asks; noncurrent
versions past ``NoncurrentDays`` go, but the ``NewerNoncurrentVersions`` newest; uploads begun
``DaysAfterInitiation`` ago are aborted. A version under object lock is never deleted (the
store checks it in the transaction that would delete it), and every deletion is an audit
event naming its rule. What a pass did is kept as the job's progress.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from andromede.core import audit, errors
from andromede.core.audit import AuditRecord
from andromede.core.ids import ObjectKey
from andromede.core.lifecycle import LifecycleConfig, LifecycleRule, current_expiry, due
from andromede.core.models import Bucket, DeleteCondition, ObjectVersion, Principal
from andromede.core.object_lock import check_deletable
from andromede.ports import Clock, MetadataStore
from andromede.services.buckets import Buckets
from andromede.services.objects import Objects

log = logging.getLogger("andromede.lifecycle")

PAGE = 200
# How long a gateway reuses a bucket's lifecycle configuration for ``x-amz-expiration``: a
# changed configuration shows in that header within this bound (the job reads it afresh).
CONFIG_CACHE_SECONDS = 5.0
_CONFIG_CACHE_SIZE = 10_000
EventRecorder = Callable[[AuditRecord], Awaitable[None]]


async def _no_events(_: AuditRecord) -> None:
    return None


@dataclass
class LifecycleTotals:
    """What one pass did."""

    buckets: int = 0
    expired: int = 0  # current versions: delete marker made, or deleted
    noncurrent_deleted: int = 0
    markers_removed: int = 0
    uploads_aborted: int = 0
    locked_kept: int = 0  # versions a rule named that object lock kept
    by_rule: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "buckets": self.buckets,
            "expired": self.expired,
            "noncurrent_deleted": self.noncurrent_deleted,
            "markers_removed": self.markers_removed,
            "uploads_aborted": self.uploads_aborted,
            "locked_kept": self.locked_kept,
        }


class Lifecycle:
    """Lifecycle configurations and the job that applies them."""

    def __init__(
        self,
        store: MetadataStore,
        buckets: Buckets,
        objects: Objects,
        clock: Clock,
        *,
        day: dt.timedelta | None = None,
        record_event: EventRecorder = _no_events,
    ) -> None:
        self._store = store
        self._buckets = buckets
        self._objects = objects
        self._clock = clock
        self.day = day  # a test setting: a lifecycle "day" this long, no rounding to midnight
        self._record_event = record_event
        self.last: LifecycleTotals | None = None
        self._configs: dict[str, tuple[float, LifecycleConfig | None]] = {}

    def set_event_recorder(self, record_event: EventRecorder) -> None:
        self._record_event = record_event

    # --- configuration --------------------------------------------------------------------------
    async def get(self, principal: Principal, bucket: str) -> LifecycleConfig:
        """GetBucketLifecycleConfiguration: NoSuchLifecycleConfiguration when none."""
        found = await self._buckets.get(principal, bucket)
        if found.lifecycle is None:
            raise errors.NoSuchLifecycleConfiguration(BucketName=bucket)
        return found.lifecycle

    async def put(self, principal: Principal, bucket: str, config: LifecycleConfig) -> None:
        """PutBucketLifecycleConfiguration: replaces the whole configuration."""
        found = await self._buckets.get(principal, bucket)
        await self._store.set_bucket_lifecycle(found.name, config)
        self._configs.pop(found.name, None)

    async def delete(self, principal: Principal, bucket: str) -> None:
        """DeleteBucketLifecycle: succeeds whether or not there was one."""
        found = await self._buckets.get(principal, bucket)
        await self._store.set_bucket_lifecycle(found.name, None)
        self._configs.pop(found.name, None)

    async def expiry_of(
        self, bucket: str, version: ObjectVersion
    ) -> tuple[dt.datetime, str] | None:
        """``expiry`` for a request's response, with the bucket's configuration as this
        gateway last read it (at most ``CONFIG_CACHE_SECONDS`` ago)."""
        if version.delete_marker:
            return None
        now = time.monotonic()
        hit = self._configs.get(bucket)
        if hit is None or now - hit[0] > CONFIG_CACHE_SECONDS:
            found = await self._store.get_bucket(bucket)
            if len(self._configs) >= _CONFIG_CACHE_SIZE:
                self._configs.clear()
            hit = self._configs[bucket] = (now, None if found is None else found.lifecycle)
        config = hit[1]
        if config is None:
            return None
        return current_expiry(
            config, version.key, version.tags, version.size, version.last_modified, self.day
        )

    def expiry(self, bucket: Bucket, version: ObjectVersion) -> tuple[dt.datetime, str] | None:
        """When ``version`` (current) expires and by which rule, for ``x-amz-expiration``."""
        if bucket.lifecycle is None or version.delete_marker:
            return None
        return current_expiry(
            bucket.lifecycle,
            version.key,
            version.tags,
            version.size,
            version.last_modified,
            self.day,
        )

    # --- the job ------------------------------------------------------------------------------
    async def run_once(self) -> dict[str, int]:
        """One pass over every bucket with rules; what it did. Its progress (the bucket and
        key it has reached, what it has done) is saved after each page, for operators
        (``andromede admin jobs list``)."""
        totals = LifecycleTotals()
        started = self._clock.now()
        for bucket in await self._store.buckets_with_lifecycle():
            assert bucket.lifecycle is not None
            totals.buckets += 1
            rules = [r for r in bucket.lifecycle.rules if r.enabled]
            after: str | None = ""
            while after is not None:
                page, after = await self._store.lifecycle_page(bucket.name, after, PAGE)
                for current, history in page:
                    await self._apply(bucket, rules, current, history, totals)
                await self._progress(started, totals, bucket.name, after)
            await self._abort_uploads(bucket, rules, totals)
        await self._progress(started, totals, None, None)
        self.last = totals
        return totals.as_dict()

    async def _progress(
        self, started: dt.datetime, totals: LifecycleTotals, bucket: str | None, key: str | None
    ) -> None:
        done = {
            "pass_started": started.isoformat(),
            "updated": self._clock.now().isoformat(),
            "finished": bucket is None,
            "bucket": bucket,
            "after_key": key,
            **totals.as_dict(),
        }
        await self._store.save_job_progress("lifecycle", json.dumps(done, sort_keys=True))

    async def _apply(
        self,
        bucket: Bucket,
        rules: list[LifecycleRule],
        current: ObjectVersion,
        history: list[ObjectVersion],
        totals: LifecycleTotals,
    ) -> None:
        now = self._clock.now()
        if current.delete_marker:
            rule = next(
                (
                    r
                    for r in rules
                    if r.expiration is not None
                    and r.expiration.expired_object_delete_marker
                    and r.filter.matches(current.key, {}, 0)
                ),
                None,
            )
            gone = (
                rule is not None
                and not history
                and await self._store.delete_version(
                    bucket.name, current.key, current.s3_version_id
                )
            )
            if gone and rule is not None:
                totals.markers_removed += 1
                await self._event(bucket, current, rule, "lifecycle:RemoveDeleteMarker")
        else:
            found = self.expiry(bucket, current)
            if found is not None and found[0] <= now:
                rule = next(r for r in rules if r.id == found[1])
                same = DeleteCondition(
                    if_match=current.etag, last_modified=current.last_modified, size=current.size
                )
                try:
                    await self._objects.delete_in(bucket, ObjectKey(current.key), same, None)
                except errors.PreconditionFailed:
                    return  # replaced meanwhile: the next pass judges the new version
                totals.expired += 1
                await self._event(bucket, current, rule, "lifecycle:Expiration")
        await self._noncurrent(bucket, rules, history, totals, now)

    async def _noncurrent(
        self,
        bucket: Bucket,
        rules: list[LifecycleRule],
        history: list[ObjectVersion],
        totals: LifecycleTotals,
        now: dt.datetime,
    ) -> None:
        def guard(v: ObjectVersion) -> None:
            check_deletable(v.retention, v.legal_hold, now, bypass=False)

        gone: set[str] = set()
        for rule in rules:
            for version in self._noncurrent_due(rule, history, gone, now):
                try:
                    done = await self._store.delete_version(
                        bucket.name, version.key, version.s3_version_id, None, guard
                    )
                except errors.AccessDenied:
                    totals.locked_kept += 1
                    continue
                if done is not None:
                    gone.add(version.version_id)
                    totals.noncurrent_deleted += 1
                    await self._event(bucket, version, rule, "lifecycle:NoncurrentExpiration")

    def _noncurrent_due(
        self,
        rule: LifecycleRule,
        history: list[ObjectVersion],
        gone: set[str],
        now: dt.datetime,
    ) -> list[ObjectVersion]:
        """The noncurrent versions (newest first in ``history``) ``rule`` expires now: those
        it applies to, past their days, but the ``newer_versions`` newest of them."""
        nc = rule.noncurrent
        if nc is None:
            return []
        out: list[ObjectVersion] = []
        kept = 0
        for version in history:
            if version.version_id in gone or version.delete_marker:
                continue
            if not rule.filter.matches(version.key, version.tags, version.size):
                continue
            kept += 1
            if nc.newer_versions is not None and kept <= nc.newer_versions:
                continue
            since = version.noncurrent_since or version.last_modified
            if due(since, nc.days, self.day) <= now:
                out.append(version)
        return out

    async def _abort_uploads(
        self, bucket: Bucket, rules: list[LifecycleRule], totals: LifecycleTotals
    ) -> None:
        now = self._clock.now()
        for rule in rules:
            days = rule.abort_multipart_days
            if days is None:
                continue
            oldest = now - (days * self.day if self.day is not None else dt.timedelta(days=days))
            for upload in await self._store.uploads_started_before(bucket.name, oldest, 1000):
                if not upload.key.startswith(rule.filter.prefix):
                    continue
                if due(upload.initiated, days, self.day) > now:
                    continue
                if await self._store.abort_upload(upload.upload_id):
                    totals.uploads_aborted += 1
                    await self._record_event(
                        self._record(
                            bucket,
                            upload.key,
                            upload.upload_id,
                            rule,
                            "lifecycle:AbortIncompleteMultipartUpload",
                        )
                    )

    async def _event(
        self, bucket: Bucket, version: ObjectVersion, rule: LifecycleRule, operation: str
    ) -> None:
        await self._record_event(
            self._record(bucket, version.key, version.s3_version_id, rule, operation)
        )

    def _record(
        self, bucket: Bucket, key: str, version_id: str, rule: LifecycleRule, operation: str
    ) -> AuditRecord:
        trace = audit.current()
        return AuditRecord(
            kind="event",
            time=self._clock.now(),
            face="lifecycle",
            operation=operation,
            request_id=trace.request_id if trace is not None else "",
            tenant=bucket.tenant,
            bucket=bucket.name,
            key=key,
            version_id=version_id,
            details=(("rule", rule.id),),
        )
