"""The real services, wired as ``bootstrap.build_runtime`` wires them, without a process or
HTTP: the real SQLite metadata store in a temp dir, the real built-in keystore and envelope
encryption, and in-memory sites (``dataplane/memory.py``) whose blobs age by a fake clock.

This is the ONE place tests build services. ``bootstrap.build_placement``/``build_runtime``
need Settings, a data dir and local-directory sites, so :func:`build_services` mirrors them
step for step instead; when a service's constructor changes, change it here (and there).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from andromede.bootstrap import object_services, open_sharded
from andromede.core import errors
from andromede.core.audit import AuditRecord
from andromede.core.models import Principal, Tenant
from andromede.core.placement import (
    ANY_JURISDICTION,
    Redundancy,
    Region,
    Site,
)
from andromede.crypto.envelope import AesGcmEnvelope
from andromede.dataplane.memory import MemorySite
from andromede.kms.builtin import NAME as BUILTIN
from andromede.kms.builtin import BuiltinKeystore
from andromede.metadata.sql import SqlMetadataStore, open_store
from andromede.ports import SiteBackend
from andromede.services.body import body_from_bytes
from andromede.services.buckets import Buckets
from andromede.services.encryption import Encryption
from andromede.services.janitor import Janitor
from andromede.services.keys import Keys
from andromede.services.lifecycle import Lifecycle
from andromede.services.locks import Locks
from andromede.services.multipart import Multipart
from andromede.services.objects import Integrity, ObjectAttributes, Objects, ReadResult
from andromede.services.placement import Placement
from andromede.services.repair import Repairs
from andromede.services.rewrap import KeyJobs
from support.metadata import T0, FakeClock

# The settings' defaults (``andromede.settings``), as bootstrap would read them.
REGION = "us-east-1"
DEFAULT_SITE = "local"
GARBAGE_GRACE = dt.timedelta(seconds=300)
TEMP_GRACE = dt.timedelta(seconds=900)
ORPHAN_SCAN_INTERVAL = dt.timedelta(seconds=3600)
SCRUB_RATE = 50e6

TENANT = "acme"
OTHER_TENANT = "globex"
ALICE = Principal("AKALICE", TENANT, False)
MALLORY = Principal("AKMALLORY", OTHER_TENANT, False)
OPERATOR = Principal("AKOPERATOR", "operators", True)


@dataclass
class ServiceStack:
    """The services of one gateway and what they run on, for one test."""

    clock: FakeClock
    store: SqlMetadataStore
    sites: dict[str, MemorySite]
    placement: Placement
    buckets: Buckets
    keys: Keys
    encryption: Encryption
    objects: Objects
    multipart: Multipart
    repairs: Repairs
    key_jobs: KeyJobs
    janitor: Janitor
    locks: Locks
    lifecycle: Lifecycle
    # Key events the services recorded (the audit trail's share of them).
    events: list[AuditRecord] = field(default_factory=list)

    async def close(self) -> None:
        """Close the key managers and the store."""
        await self.keys.close()
        await self.store.close()

    def site(self, name: str = DEFAULT_SITE) -> MemorySite:
        """A registered site's memory backend."""
        return self.sites[name]

    async def set_offline(self, name: str, offline: bool = True) -> None:
        """Take a site away (or bring it back) and let the registry probe it, as it would
        within ``placement_refresh_seconds`` on a server."""
        self.sites[name].offline = offline
        await self.placement.refresh(force=True)

    async def add_site(
        self, name: str, jurisdiction: str, failure_domain: str | None = None
    ) -> MemorySite:
        """Register a site as an operator does (its failure domain defaults to its name)."""
        await self.placement.add_site(
            OPERATOR, name, jurisdiction, failure_domain or name, "test", f"/memory/{name}"
        )
        return self.sites[name]

    async def add_region(
        self, name: str, jurisdictions: list[str], redundancy: str, min_failure_domains: int = 1
    ) -> Region:
        """Register a residency policy as an operator does."""
        return await self.placement.add_region(
            OPERATOR, name, jurisdictions, redundancy, min_failure_domains
        )

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        principal: Principal = ALICE,
        integrity: Integrity | None = None,
        attrs: ObjectAttributes | None = None,
    ) -> str:
        """PutObject of ``data``; returns the new version's ETag."""
        version = await self.objects.put(
            principal,
            bucket,
            key,
            body_from_bytes(data),
            attrs or ObjectAttributes(),
            integrity or Integrity(),
        )
        return version.etag

    async def get(self, bucket: str, key: str, *, principal: Principal = ALICE) -> bytes:
        """The whole object, read back."""
        return await read_body(await self.objects.get(principal, bucket, key))

    def stored_blobs(self) -> dict[str, set[str]]:
        """Committed blob ids on every site, by site."""
        return {name: set(site.blobs) for name, site in self.sites.items()}


async def read_body(result: ReadResult) -> bytes:
    """Every byte of a GET's body."""
    assert result.body is not None
    return b"".join([piece async for piece in result.body])


async def build_services(
    tmp_path: Path, *, clock: FakeClock | None = None, kms_cache_seconds: float = 2.0
) -> ServiceStack:
    """Open a fresh store in ``tmp_path`` and wire every service over memory sites, with the
    tenants ``acme`` and ``globex`` registered. Close it with :meth:`ServiceStack.close`."""
    clock = clock or FakeClock(T0)
    store = await open_store(
        f"sqlite+aiosqlite:///{tmp_path / 'metadata.db'}",
        garbage_grace=GARBAGE_GRACE,
        clock=clock,
    )
    for tenant in (TENANT, OTHER_TENANT):
        await store.create_tenant(Tenant(tenant, clock.now()))
    sites: dict[str, MemorySite] = {}
    placement = _build_placement(store, clock, sites)
    await placement.start()
    buckets = Buckets(store, clock, REGION, placement.check_location)
    keys = Keys(
        store,
        {BUILTIN: BuiltinKeystore(tmp_path / "keystore")},
        clock,
        region=REGION,
        cache_seconds=kms_cache_seconds,
    )
    encryption = Encryption(keys, AesGcmEnvelope(), store, buckets)
    objects, multipart = object_services(store, placement, buckets, encryption, clock)
    repairs = Repairs(store, placement, clock, scrub_rate=SCRUB_RATE)
    janitor = Janitor(
        store,
        placement,
        clock,
        garbage_grace=GARBAGE_GRACE,
        temp_grace=TEMP_GRACE,
        orphan_scan_interval=ORPHAN_SCAN_INTERVAL,
    )
    stack = ServiceStack(
        clock,
        store,
        sites,
        placement,
        buckets,
        keys,
        encryption,
        objects,
        multipart,
        repairs,
        KeyJobs(store, keys, clock),
        janitor,
        Locks(store, buckets, clock),
        Lifecycle(store, buckets, objects, clock),
    )

    async def record(event: AuditRecord) -> None:
        stack.events.append(event)

    keys.set_event_recorder(record)
    stack.lifecycle.set_event_recorder(record)
    return stack


def _build_placement(
    store: SqlMetadataStore, clock: FakeClock, sites: dict[str, MemorySite]
) -> Placement:
    """``bootstrap.build_placement`` over memory sites: the default site and region of a
    fresh ``serve`` (one site, one copy, any jurisdiction), layouts over ShardedBlobs. The
    registry is reloaded at every placement (``refresh_seconds=0``), so a site a test takes
    offline is seen at the next write, as it would be a couple of seconds later on a server."""

    def open_site(site: Site, create: bool) -> SiteBackend:
        del create  # a memory site is made on first sight, like a newly registered directory
        return sites.setdefault(site.name, MemorySite(site.name, clock=clock))

    return Placement(
        store,
        clock,
        open_site,
        open_sharded,
        default_site=Site(DEFAULT_SITE, "EU", DEFAULT_SITE, "self", f"/memory/{DEFAULT_SITE}"),
        default_region=Region(REGION, frozenset({ANY_JURISDICTION}), Redundancy.replicas(1), 1),
        refresh_seconds=0.0,
    )


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    """A body arriving in several pieces."""
    for piece in pieces:
        yield piece


# HTTP dates around any clock a test sets: for If-Modified-Since and its kin.
PAST = "Sat, 01 Jan 2000 00:00:00 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"


async def assert_absent(stack: ServiceStack, bucket: str, key: str) -> None:
    """``key`` is not visible in ``bucket`` (to its owner)."""
    with pytest.raises(errors.NoSuchKey):
        await stack.objects.get(ALICE, bucket, key)
