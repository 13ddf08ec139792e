"""Composition root: Settings → adapters → services → ASGI apps."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import fcntl
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.admin.app import create_admin_app
from andromede.admin.recording import AuditedApp
from andromede.audit.discard import DiscardSink
from andromede.audit.keys import load_or_create_signing_key, public_pem
from andromede.audit.reader import SegmentReader
from andromede.audit.remote import RemoteTrail
from andromede.audit.syslog import SyslogShipper
from andromede.audit.trail import HashChainTrail
from andromede.audit_process import SHUTDOWN_SHIP_S, shipper_for, trail_config
from andromede.core.ids import new_access_key_id, new_secret_key
from andromede.core.models import DEFAULT_TENANT, BlobRef
from andromede.core.placement import ANY_JURISDICTION, Layout, Redundancy, Region, Site
from andromede.crypto.envelope import AesGcmEnvelope
from andromede.dataplane.local import LocalSite
from andromede.dataplane.sharded import ShardedBlobs
from andromede.kms.factory import open_key_managers
from andromede.localfiles import RootCredentials, read_credentials, write_credentials
from andromede.metadata.sql import SqlMetadataStore, SystemClock, open_store
from andromede.ports import AuditSink, ShardSet, SiteBackend
from andromede.s3.app import S3App, S3Config
from andromede.services.accounts import Accounts
from andromede.services.audit import AuditLog
from andromede.services.buckets import Buckets
from andromede.services.container import Services
from andromede.services.datapath import DataReader, DataWriter
from andromede.services.encryption import Encryption
from andromede.services.janitor import Janitor
from andromede.services.keys import Keys
from andromede.services.multipart import Multipart
from andromede.services.objects import Objects
from andromede.services.placement import Placement
from andromede.services.repair import Repairs
from andromede.services.residency import Residency
from andromede.services.rewrap import KeyJobs
from andromede.settings import Settings, load_settings
from andromede.workers.sweeper import Sweeper

log = logging.getLogger("andromede")
ADMIN_PREFIX = "/_andromede/admin"
SWITCH_INTERVAL_S = 0.0005
HEALTH_PATH = "/_andromede/health"
DEFAULT_SITE = "local"
RETENTION_INTERVAL_S = 3600.0
RESIDENCY_KEY_FILE = "residency-signing.key"


def prepare_data_dir(settings: Settings) -> tuple[RootCredentials, bool]:
    """Create the data dir and, on first start, the root credentials (0600).

    Returns the credentials and whether they were created by this call.
    """
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = read_credentials(data_dir)
    if existing is not None:
        return existing, False
    access = _env_secret("ANDROMEDE_ROOT_ACCESS_KEY") or new_access_key_id()
    secret = _env_secret("ANDROMEDE_ROOT_SECRET_KEY") or new_secret_key()
    creds = RootCredentials(access, secret)
    write_credentials(data_dir, creds)
    return creds, True


def _env_secret(name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(name + "_FILE")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return None


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
        remote = RemoteTrail(
            settings.audit_writer_socket,
            settings.audit_retry_seconds,
            settings.audit_record_wait_seconds,
        )
        await remote.start()
        return remote
    trail = HashChainTrail(trail_config(settings), signer, settings.audit_record_wait_seconds)
    trail.open()
    return trail


def build_placement(settings: Settings, store: SqlMetadataStore, clock: SystemClock) -> Placement:
    """The site registry: local-directory sites, layouts over them, and the defaults that let
    ``serve`` run with zero setup (one site in the data dir, one copy)."""

    def open_site(site: Site, create: bool) -> SiteBackend:
        return LocalSite(site.name, site.path, create=create)

    def sharded(
        layout: Layout,
        sites: Callable[[str], SiteBackend],
        unavailable: Callable[[], frozenset[str]],
        degraded: Callable[[BlobRef], None],
        failed: Callable[[str], None],
    ) -> ShardSet:
        return ShardedBlobs(
            layout,
            sites,
            unavailable=unavailable,
            on_degraded=degraded,
            on_site_error=failed,
        )

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
        sharded,
        default_site=default_site,
        default_region=default_region,
        refresh_seconds=settings.placement_refresh_seconds,
        reserve_bytes=settings.site_reserve_bytes,
    )


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
    writer, reader = DataWriter(placement, encryption), DataReader(placement, encryption)
    objects = Objects(store, buckets, clock, encryption, writer, reader)
    multipart = Multipart(store, objects, encryption, writer, reader, clock)
    signer = load_or_create_signing_key(settings.audit_key_path)
    audit_log = AuditLog(SegmentReader(settings.audit_path), public_pem(signer))
    repairs = Repairs(store, placement, clock, scrub_rate=settings.scrub_bytes_per_second)
    residency_key = load_or_create_signing_key(settings.data_dir / RESIDENCY_KEY_FILE)
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
    key_jobs = KeyJobs(store, keys, clock)
    return Runtime(settings, store, placement, services, sweeper, audit_sink, key_jobs)


# glibc serves allocations from 128 KiB up with fresh mmap()s, each unmapped again when freed,
# so a library that allocates and frees MiB-sized buffers per call pays page faults and zeroing
# every time: pyeclib's encode of a 4 MiB stripe ran at ~500 MB/s that way against ~5 GB/s
# from the heap, and it holds the GIL throughout. Buffers up to 16 MiB now come from the heap;
# two arenas keep at most 32 MiB free each (a bound on what the process keeps: a 1 GiB
# erasure-coded round trip grew RSS by ~75 MB, against ~50 MB with glibc's defaults).
MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 32 << 20
ARENA_MAX = 2
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; False where libc is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        and mallopt(_M_ARENA_MAX, ARENA_MAX)
    )


class Gateway:
    """The root ASGI app: lifespan, health, admin API and S3 on one listener."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self._s3: S3App | None = None
        self._admin: Any = None
        self._background: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None
        self._shipper: SyslogShipper | None = None

    async def startup(self) -> None:
        """Open everything; one worker per data dir also runs the sweeper."""
        # Worker threads mostly wait in fsync: more of them let the filesystem journal batch
        # concurrent requests' syncs (the default pool is cores + 4).
        # The SQLite writer thread is CPU-bound between its fsyncs; with the default 5 ms GIL
        # switch interval an inline read on the event loop that gives up the GIL inside sqlite
        # may wait that long to get it back.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        tune_malloc()
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=32, thread_name_prefix="andromede-io")
        )
        runtime = await build_runtime(self.settings)
        self.runtime = runtime
        self._s3 = S3App(
            runtime.services,
            S3Config(
                self.settings.region,
                self.settings.domain,
                dt.timedelta(seconds=self.settings.max_clock_skew_seconds),
            ),
            runtime.audit,
        )
        self._admin = AuditedApp(create_admin_app(runtime.services), runtime.audit)
        if self._take_sweeper_lock():
            self._background = asyncio.create_task(self._background_jobs(runtime))

    async def _background_jobs(self, runtime: Runtime) -> None:
        """The jobs one process per data dir runs: the sweeper; and the trail's retention and
        shipping when this process writes the trail itself (under ``serve``, the audit writer
        process runs those)."""
        jobs = [
            runtime.sweeper.run_forever(self.settings.sweep_interval_seconds),
            runtime.key_jobs.run_forever(self.settings.kms_job_interval_seconds),
            runtime.services.repairs.run_forever(self.settings.repair_interval_seconds),
        ]
        if isinstance(runtime.audit, HashChainTrail):
            self._shipper = shipper_for(self.settings)
            if self._shipper is not None:
                jobs.append(self._shipper.run_forever())
            retention = dt.timedelta(days=self.settings.audit_retention_days)
            jobs.append(audit_retention(runtime.audit, retention, self._shipper))
        await asyncio.gather(*jobs)

    def _take_sweeper_lock(self) -> bool:
        path = self.settings.data_dir / "sweeper.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def shutdown(self) -> None:
        """Stop background work and close the store."""
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        if self.runtime is not None:
            await self.runtime.close()
        if self._shipper is not None:
            # The shutdown checkpoint was written just now: ship it too, if the collector
            # answers soon (otherwise the next start ships it).
            try:
                await asyncio.wait_for(self._shipper.ship_once(), SHUTDOWN_SHIP_S)
            except (OSError, TimeoutError):
                log.warning("audit: the shutdown checkpoint was not shipped; the next start will")
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI entry."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "")
        if path == HEALTH_PATH:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok\n"})
            return
        if path.startswith(ADMIN_PREFIX + "/") or path == ADMIN_PREFIX:
            # Mounted as Starlette's Mount does: the prefix moves into root_path, path keeps it.
            mounted = {**scope, "root_path": scope.get("root_path", "") + ADMIN_PREFIX}
            await self._admin(mounted, receive, send)
            return
        assert self._s3 is not None
        await self._s3(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def audit_retention(
    trail: HashChainTrail, retention: dt.timedelta, shipper: SyslogShipper | None
) -> None:
    """Hourly: remove trail segments older than the retention period (whole segments only,
    and only once shipped when a collector is configured)."""
    while True:
        try:
            cutoff = time.time() - retention.total_seconds()
            shipped = await asyncio.to_thread(shipper.cursor.load) if shipper else None
            await asyncio.to_thread(trail.apply_retention, cutoff, shipped)
        except OSError:
            log.exception("audit retention failed")
        await asyncio.sleep(RETENTION_INTERVAL_S)


def create_app() -> Gateway:
    """uvicorn factory: settings come from the environment that ``serve`` prepared."""
    return Gateway(load_settings())


async def sweep_at_start(settings: Settings) -> dict[str, int]:
    """Before workers start (single host): remove leftovers of interrupted writes."""
    runtime = await build_runtime(settings)
    try:
        return await runtime.sweeper.sweep(at_start=True)
    finally:
        await runtime.close()


@contextlib.asynccontextmanager
async def running_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime for in-process use (tests, tools)."""
    runtime = await build_runtime(settings)
    try:
        yield runtime
    finally:
        await runtime.close()
