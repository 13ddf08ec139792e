"""The root ASGI app of a gateway process: lifespan, health, admin API and S3 on one listener,
and the background jobs, each run where its lease in the database is held."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Coroutine

from andromede import asgi
from andromede.asgi import App, Receive, Scope, Send
from andromede.audit.syslog import SyslogShipper
from andromede.audit.trail import HashChainTrail
from andromede.audit_process import SHUTDOWN_SHIP_S, shipper_for
from andromede.bootstrap import Runtime, build_runtime
from andromede.metadata.sql import SystemClock
from andromede.process import tune_gateway_process
from andromede.s3.app import S3App, S3Config
from andromede.services.health import Readiness
from andromede.settings import Settings, load_settings
from andromede.workers.audit_retention import AuditRetention
from andromede.workers.lease import JobLease, StartGate
from andromede.workers.leased import LeasedJobs

log = logging.getLogger("andromede")
ADMIN_PREFIX = "/_andromede/admin"
HEALTH_PATH = "/_andromede/health"
READY_PATH = "/_andromede/ready"
START_GATE_POLL_S = 0.02


class Gateway:
    """The root ASGI app: lifespan, health, admin API and S3 on one listener."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self._s3: S3App | None = None
        self._admin: App | None = None
        self._admin_built = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        self._lease = JobLease(settings.data_dir)
        self._shipper: SyslogShipper | None = None
        self._ready: Readiness | None = None

    async def startup(self) -> None:
        """Open everything, and start the background jobs' loops (each job runs where its
        lease is held)."""
        tune_gateway_process(asyncio.get_running_loop())
        runtime = await build_runtime(self.settings)
        self.runtime = runtime
        self._s3 = S3App(
            runtime.services,
            S3Config(
                self.settings.region,
                self.settings.domain,
                dt.timedelta(seconds=self.settings.max_clock_skew_seconds),
                self.settings.body_idle_timeout_seconds,
            ),
            runtime.audit,
        )
        self._ready = Readiness(runtime.store, runtime.audit)
        holder = self._lease.try_take()
        if self.settings.start_token is not None:
            holder = await self._pass_start_gate(runtime, holder)
        self._background = asyncio.create_task(self._background_jobs(runtime, holder))

    async def _pass_start_gate(self, runtime: Runtime, holder: bool) -> bool:
        """Under ``serve`` on a single host: return once the leftovers of a crash are swept,
        by this process if it holds the job lease (or takes it over from a holder that died
        before the sweep was done). Returns whether this process holds the lease."""
        assert self.settings.start_token is not None
        gate = StartGate(self.settings.data_dir, self.settings.start_token)
        while not holder and not gate.is_open():
            await asyncio.sleep(START_GATE_POLL_S)
            holder = self._lease.try_take()
        # Once the gate is open others may be serving: an at-start sweep would then remove
        # the temporary files of their writes in flight.
        if holder and not gate.is_open():
            await runtime.sweeper.sweep(at_start=True)
            gate.open()
        return holder

    async def _build_admin(self) -> App:
        """The admin API, built at its first request rather than at startup: FastAPI and the
        routes' pydantic models cost ~0.6 s of CPU to import and build, about as much as the
        rest of a worker's start, for an API that operators call now and then. Built in a
        thread, so the S3 requests of this process go on meanwhile."""
        async with self._admin_built:
            if self._admin is None:
                assert self.runtime is not None
                self._admin = await asyncio.to_thread(_admin_app, self.runtime)
        return self._admin

    def _jobs(self, runtime: Runtime, local_holder: bool) -> list[Coroutine[object, object, None]]:
        """Every process runs the loops of the shared jobs (sweeper, key jobs, repair,
        lifecycle): each runs where its lease in the database is held
        (``workers/leased.py``). The trail's retention and shipping concern this host's
        trail: they run in the process holding the data dir's local lease, when it writes the
        trail itself (under ``serve``, the audit writer process runs those)."""
        settings = self.settings
        leased = LeasedJobs(
            runtime.store,
            SystemClock(),
            settings.job_lease_seconds,
            single_host=settings.embedded,
        )
        jobs = [
            # The first pass waits an interval: under ``serve`` the data dir was just swept.
            leased.run(
                "sweep", settings.sweep_interval_seconds, runtime.sweeper.sweep, wait_first=True
            ),
            leased.run("key jobs", settings.kms_job_interval_seconds, runtime.key_jobs.run_once),
            leased.run(
                "repair", settings.repair_interval_seconds, runtime.services.repairs.run_once
            ),
            leased.run(
                "lifecycle",
                settings.lifecycle_interval_seconds,
                runtime.services.lifecycle.run_once,
            ),
        ]
        if local_holder and isinstance(runtime.audit, HashChainTrail):
            self._shipper = shipper_for(settings)
            if self._shipper is not None:
                jobs.append(self._shipper.run_forever())
            retention = AuditRetention(
                runtime.audit.apply_retention,
                dt.timedelta(days=settings.audit_retention_days),
                self._shipper.cursor.load if self._shipper is not None else None,
            )
            jobs.append(retention.run_forever())
        return jobs

    async def _background_jobs(self, runtime: Runtime, local_holder: bool) -> None:
        await asyncio.gather(*self._jobs(runtime, local_holder))

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
        self._lease.release()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = asgi.text(scope, "path")
        if path == HEALTH_PATH:
            await _plain(send, 200, "ok\n")
            return
        if path == READY_PATH:
            problems = ["starting"] if self._ready is None else await self._ready.problems()
            await _plain(
                send, 503 if problems else 200, "".join(f"{p}\n" for p in problems) or "ready\n"
            )
            return
        if path.startswith(ADMIN_PREFIX + "/") or path == ADMIN_PREFIX:
            # Mounted as Starlette's Mount does: the prefix moves into root_path, path keeps it.
            mounted: Scope = {**scope, "root_path": asgi.text(scope, "root_path") + ADMIN_PREFIX}
            admin = self._admin or await self._build_admin()
            await admin(mounted, receive, send)
            return
        assert self._s3 is not None
        await self._s3(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
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


def _admin_app(runtime: Runtime) -> App:
    from andromede.admin.app import create_admin_app  # noqa: PLC0415 - see Gateway._build_admin
    from andromede.admin.recording import AuditedApp  # noqa: PLC0415

    return AuditedApp(create_admin_app(runtime.services), runtime.audit)


def create_app() -> Gateway:
    """uvicorn factory: settings come from the environment that ``serve`` prepared."""
    return Gateway(load_settings())


async def _plain(send: Send, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})
