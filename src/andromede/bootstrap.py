"""Composition root: Settings → adapters → services, and nothing else.

The root ASGI app lives in ``gateway.py``, process tuning in ``process.py``, the background
jobs' loops in ``workers/``, the data dir's first files in ``localfiles.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit.chains_reader import ChainsReader
from andromede.audit.discard import DiscardSink
from andromede.audit.inline import InlineAppender
from andromede.audit.keys import load_or_create_signing_key, public_pem
from andromede.audit.mirror import RadosMirror
from andromede.audit.reader import SegmentReader
from andromede.audit.remote import RemoteTrail
from andromede.audit.trail import HashChainTrail
from andromede.audit_process import trail_config
from andromede.core.locations import RadosLocation
from andromede.core.models import DEFAULT_TENANT, BlobRef
from andromede.core.placement import ANY_JURISDICTION, Layout, Redundancy, Region, Site
from andromede.crypto.envelope import AesGcmEnvelope
from andromede.dataplane.local import LocalSite
from andromede.dataplane.rados import RadosSite
from andromede.dataplane.sharded import ShardedBlobs
from andromede.kms.factory import open_key_managers
from andromede.localfiles import read_credentials
from andromede.metadata.sql import SqlMetadataStore, SystemClock, open_store
from andromede.ports import AuditReader, AuditSink, Clock, MetadataStore, ShardSet, SiteBackend
from andromede.services.accounts import Accounts
from andromede.services.audit import AuditLog
from andromede.services.buckets import Buckets
from andromede.services.container import Services
from andromede.services.datapath import DataReader, DataWriter
from andromede.services.encryption import Encryption
from andromede.services.janitor import Janitor
from andromede.services.jobs import Jobs
from andromede.services.keys import Keys
from andromede.services.lifecycle import Lifecycle
from andromede.services.locks import Locks
from andromede.services.multipart import Multipart
from andromede.services.objects import Objects
from andromede.services.placement import Placement
from andromede.services.repair import Repairs
from andromede.services.residency import Residency
from andromede.services.rewrap import KeyJobs
from andromede.settings import Settings
from andromede.workers.sweeper import Sweeper

log = logging.getLogger("andromede")
DEFAULT_SITE = "local"


@dataclass
class Runtime:
    """Everything one gateway process holds."""

    settings: Settings
    store: SqlMetadataStore
    placement: Placement
    services: Services
    sweeper: Sweeper
    audit: AuditSink
    key_jobs: KeyJobs

    async def close(self) -> None:
        """Sign the trail's head, close the key managers and the store."""
        await self.audit.close()
        await self.services.keys.close()
        await self.store.close()


async def open_audit(settings: Settings, signer: Ed25519PrivateKey) -> AuditSink:
    """The audit sink the settings ask for: the writer process when ``serve`` started one,
    else a writer thread in this process; ``discard`` only for benchmarks."""
    if settings.audit_sink == "discard":
        log.warning("audit_sink = discard: requests are NOT recorded (benchmarks only)")
        return DiscardSink()
    if settings.audit_sink != "trail":
        raise ValueError(f"unknown audit_sink {settings.audit_sink!r} (trail or discard)")
    if settings.audit_writer_socket is not None:
        inline = None
        if settings.audit_inline_sync:
            inline = InlineAppender(trail_config(settings), signer)
            inline.open()
        remote = RemoteTrail(
            settings.audit_writer_socket,
            settings.audit_retry_seconds,
            settings.audit_record_wait_seconds,
            inline,
        )
        try:
            await remote.start()
        except BaseException:
            if inline is not None:
                inline.close()
            raise
        return remote
    trail = HashChainTrail(trail_config(settings), signer, settings.audit_record_wait_seconds)
    trail.open()
    return trail


def build_placement(settings: Settings, store: SqlMetadataStore, clock: SystemClock) -> Placement:
    """The site registry: local-directory and Ceph sites, layouts over them, and the defaults
    that let ``serve`` run with zero setup (one site in the data dir, one copy)."""

    def open_site(site: Site, create: bool) -> SiteBackend:
        rados = RadosLocation.parse(site.path)
        if rados is not None:
            return RadosSite(site.name, rados)
        return LocalSite(site.name, site.path, create=create)

    default_site = Site(
        DEFAULT_SITE,
        settings.default_site_jurisdiction,
        DEFAULT_SITE,
        "self",
        str((settings.data_dir / "sites" / DEFAULT_SITE).resolve()),
    )
    default_region = Region(
        settings.region, frozenset({ANY_JURISDICTION}), Redundancy.replicas(1), 1
    )
    return Placement(
        store,
        clock,
        open_site,
        open_sharded,
        default_site=default_site if settings.data_dir_site else None,
        follow_default_site=settings.embedded,
        default_region=default_region,
        refresh_seconds=settings.placement_refresh_seconds,
        reserve_bytes=settings.site_reserve_bytes,
    )


def open_sharded(
    layout: Layout,
    sites: Callable[[str], SiteBackend],
    unavailable: Callable[[], frozenset[str]],
    degraded: Callable[[BlobRef], None],
    failed: Callable[[str], None],
) -> ShardSet:
    """A layout's blobs spread over its sites (replicas or erasure-coded shards)."""
    return ShardedBlobs(
        layout, sites, unavailable=unavailable, on_degraded=degraded, on_site_error=failed
    )


def object_services(
    store: MetadataStore,
    placement: Placement,
    buckets: Buckets,
    encryption: Encryption,
    clock: Clock,
) -> tuple[Objects, Multipart]:
    """Objects and Multipart over one data path both ways: the writer and reader are built
    once, here, and shared."""
    writer, reader = DataWriter(placement, encryption), DataReader(placement, encryption)
    objects = Objects(store, buckets, clock, encryption, writer, reader)
    return objects, Multipart(store, objects, encryption, writer, reader, clock)


async def build_runtime(settings: Settings) -> Runtime:
    """Open the store and sites and wire the services."""
    clock = SystemClock()
    store = await open_store(
        settings.db_url,
        garbage_grace=dt.timedelta(seconds=settings.garbage_grace_seconds),
        clock=clock,
    )
    placement = build_placement(settings, store, clock)
    await placement.start()
    accounts = Accounts(store, clock, settings.key_cache_seconds)
    buckets = Buckets(store, clock, settings.region, placement.check_location)
    if settings.unsafe_plaintext_for_benchmarks:
        log.warning("unsafe_plaintext_for_benchmarks: new data is stored UNENCRYPTED")
    if not settings.embedded and settings.keystore_dir is None:
        log.warning(
            "shared metadata database, built-in keystore in this data dir (%s): keys made "
            "through this gateway are unknown to the others; set ANDROMEDE_KEYSTORE_DIR to "
            "storage every gateway shares, or use a PKCS#11 or KMIP key manager "
            "(docs/deploy.md)",
            settings.keystore_path,
        )
    managers = open_key_managers(
        settings.keystore_path, settings.keystore_passphrase_file, settings.key_managers
    )
    keys = Keys(
        store,
        managers,
        clock,
        region=settings.region,
        tenant_managers=settings.tenant_key_managers,
        cache_seconds=settings.kms_cache_seconds,
    )
    encryption = Encryption(
        keys,
        AesGcmEnvelope(),
        store,
        buckets,
        plaintext_for_benchmarks=settings.unsafe_plaintext_for_benchmarks,
    )
    objects, multipart = object_services(store, placement, buckets, encryption, clock)
    signer = load_or_create_signing_key(settings.audit_key_path)
    reader: AuditReader = SegmentReader(settings.audit_path)
    mirror = RadosLocation.parse(settings.audit_rados) if settings.audit_rados else None
    if mirror is not None:  # every gateway's chain, from the pool they mirror to
        reader = ChainsReader(RadosMirror(mirror), settings.data_dir / "audit-chains")
    audit_log = AuditLog(reader, public_pem(signer))
    repairs = Repairs(store, placement, clock, scrub_rate=settings.scrub_bytes_per_second)
    residency_key = load_or_create_signing_key(settings.residency_key_path)
    residency = Residency(
        store,
        placement,
        residency_key.sign,
        public_pem(residency_key),
        lambda: clock.now().isoformat(),
    )
    services = Services(
        accounts,
        buckets,
        objects,
        multipart,
        audit_log,
        keys,
        encryption,
        placement,
        repairs,
        residency,
        Jobs(store, clock),
        Locks(store, buckets, clock),
        Lifecycle(
            store,
            buckets,
            objects,
            clock,
            day=None
            if settings.lifecycle_day_seconds is None
            else dt.timedelta(seconds=settings.lifecycle_day_seconds),
        ),
    )
    creds = read_credentials(settings.data_dir)
    if creds is not None:
        await accounts.ensure_root(DEFAULT_TENANT, creds.access_key_id, creds.secret_key)
    sweeper = Sweeper(
        Janitor(
            store,
            placement,
            clock,
            garbage_grace=dt.timedelta(seconds=settings.garbage_grace_seconds),
            temp_grace=dt.timedelta(seconds=settings.temp_grace_seconds),
            orphan_scan_interval=dt.timedelta(seconds=settings.orphan_scan_interval_seconds),
        )
    )
    audit_sink = await open_audit(settings, signer)
    keys.set_event_recorder(audit_sink.record)
    services.lifecycle.set_event_recorder(audit_sink.record)
    key_jobs = KeyJobs(store, keys, clock)
    return Runtime(settings, store, placement, services, sweeper, audit_sink, key_jobs)
