"""Background jobs under leases held in the metadata database (``core/leases.py``).

Every gateway process runs :meth:`LeasedJobs.run` for every job. For each job one process at a
time holds the lease and runs passes every ``interval``; the others poll for it every third of
the lease's term. The holder renews on that same beat while its pass runs. A renewal refused
(another took over: the epoch moved) or impossible until a sixth of a term before the lease
expires (the database away) cancels the pass in flight: a job must tolerate being cancelled
between any two awaits, as it already is at shutdown, and keeps its progress in the database.
A step already handed to a thread (a file written, a shard sent) finishes after the cancel: the
jobs' steps are each safe to repeat or to meet a concurrent request, as they always were.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from andromede.core import errors
from andromede.core.leases import Lease
from andromede.ports import Clock, LeaseStore
from andromede.workers.loop import every

log = logging.getLogger("andromede.workers")


def holder_name() -> str:
    """This process, as lease holders are named: host, pid and a random suffix (a pid is
    reused after a restart; the suffix is not)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Lost(Exception):
    """The lease is no longer this process's."""


class LeasedJobs:
    """Runs each job of this process only while it holds that job's lease."""

    def __init__(
        self,
        store: LeaseStore,
        clock: Clock,
        term_seconds: float,
        holder: str | None = None,
        *,
        single_host: bool = False,
    ) -> None:
        self.store = store
        self.clock = clock
        self.term = dt.timedelta(seconds=term_seconds)
        self.beat = term_seconds / 3
        # A holder that cannot renew stops this long before its lease expires in the database:
        # room for its event loop to be late in cancelling the pass in flight.
        self.margin = term_seconds / 6
        self.holder = holder or holder_name()
        # Every process of the database is on this host (the embedded SQLite file): a lease
        # whose holder's pid is gone here is taken at once, not after its term (a restart after
        # kill -9 does not wait for the dead run's leases).
        self.single_host = single_host

    async def run(
        self,
        job: str,
        interval: float,
        work: Callable[[], Awaitable[object]],
        *,
        wait_first: bool = False,
    ) -> None:
        """Until cancelled: take ``job``'s lease when it is free, then run ``work`` every
        ``interval`` seconds (after one interval when ``wait_first``) for as long as it stays
        this process's. A failing pass is logged and the next one runs on time."""
        while True:
            asked = time.monotonic()  # the lease's term counts from before the asking
            lease = await self._take(job)
            if lease is None and self.single_host:
                lease = await self._take_from_the_dead(job)
            if lease is None:
                await asyncio.sleep(self.beat)
                continue
            log.info("job %s: lease taken by %s (epoch %d)", job, self.holder, lease.epoch)
            try:
                await self._hold(lease, asked, interval, work, wait_first)
            except _Lost:
                log.warning("job %s: lease lost by %s; the job stops here", job, self.holder)

    async def _take(self, job: str) -> Lease | None:
        try:
            return await self.store.take_lease(job, self.holder, self.clock.now(), self.term)
        except (errors.ServiceUnavailable, OSError) as exc:  # the database away: expected
            log.warning("job %s: lease not readable (%s); next try in %.0f s", job, exc, self.beat)
            return None
        except Exception:
            log.exception("job %s: lease not readable; next try in %.0f s", job, self.beat)
            return None

    async def _take_from_the_dead(self, job: str) -> Lease | None:
        try:
            current = {lease.job: lease for lease in await self.store.list_leases()}.get(job)
            if current is None or not _dead_here(current.holder):
                return None
            log.info("job %s: its holder %s is gone from this host", job, current.holder)
            return await self.store.take_lease(
                job, self.holder, self.clock.now(), self.term, take_from=current.holder
            )
        except (errors.ServiceUnavailable, OSError) as exc:
            log.warning("job %s: lease not readable (%s)", job, exc)
            return None

    async def _hold(
        self,
        lease: Lease,
        asked: float,
        interval: float,
        work: Callable[[], Awaitable[object]],
        wait_first: bool,
    ) -> None:
        held = [lease]  # the latest renewal, for the release
        passes = asyncio.create_task(every(interval, work, lease.job, wait_first=wait_first))
        renewing = asyncio.create_task(self._renew(held, asked))
        try:
            done, _ = await asyncio.wait({passes, renewing}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # _Lost (or a bug) surfaces here
        finally:
            for task in (passes, renewing):
                task.cancel()
            for task in (passes, renewing):
                with contextlib.suppress(asyncio.CancelledError, _Lost):
                    await task
            await self._release(held[-1])

    async def _renew(self, held: list[Lease], asked: float) -> None:
        """Renew every beat, appending each renewal to ``held``; raise _Lost when refused, or
        once no renewal has succeeded for all but ``margin`` of a term (the database away or
        stalled: another process may take over once the term is over), at that moment and not
        a beat later. ``asked``: when the lease was asked for (monotonic), the start of its
        term as this process counts it."""
        lease = held[-1]
        valid_until = asked + self.term.total_seconds() - self.margin
        while True:
            await asyncio.sleep(max(0.0, min(self.beat, valid_until - time.monotonic())))
            started = time.monotonic()
            if started >= valid_until:
                raise _Lost()
            try:
                renewed = await asyncio.wait_for(
                    self.store.renew_lease(lease, self.clock.now(), self.term),
                    valid_until - started,
                )
            except Exception as exc:
                if time.monotonic() >= valid_until:
                    raise _Lost() from exc
                log.warning("job %s: lease not renewed (%r); retrying", lease.job, exc)
                continue
            if renewed is None:
                raise _Lost()
            lease = renewed
            held.append(renewed)
            del held[:-1]
            valid_until = started + self.term.total_seconds() - self.margin

    async def _release(self, lease: Lease) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(self.store.release_lease(lease, self.clock.now()))


def _dead_here(holder: str) -> bool:
    """Whether ``holder`` names a process of this host that no longer exists. A pid reused by
    a live process reads as alive: the lease then waits for its term, the safe side."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
