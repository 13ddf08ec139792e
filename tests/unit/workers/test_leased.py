"""Background jobs under database leases (``workers/leased.py``), on a real SQLite store, with
terms of a fraction of a second: one runner at a time, a release hands over at once, and a
holder cut off from the database stops before another takes over."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from andromede.core.leases import Lease
from andromede.metadata.sql import SqlMetadataStore, SystemClock, open_store
from andromede.workers.leased import LeasedJobs

TERM = 0.6
INTERVAL = 0.02


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlMetadataStore]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}")
    try:
        yield opened
    finally:
        await opened.close()


class Cut:
    """The store as one gateway reaches it, until the network between them is cut: then every
    call fails, as a connection refused would."""

    def __init__(self, store: SqlMetadataStore) -> None:
        self.store = store
        self.cut = False

    async def _call(self, call: Callable[[], Awaitable[Lease | None]]) -> Lease | None:
        if self.cut:
            raise ConnectionRefusedError("metadata database unreachable")
        return await call()

    async def take_lease(self, *args: object) -> Lease | None:
        return await self._call(lambda: self.store.take_lease(*args))  # type: ignore[arg-type]

    async def renew_lease(self, *args: object) -> Lease | None:
        return await self._call(lambda: self.store.renew_lease(*args))  # type: ignore[arg-type]

    async def release_lease(self, *args: object) -> None:
        await self._call(lambda: self.store.release_lease(*args))  # type: ignore[arg-type]

    async def list_leases(self) -> list[Lease]:
        return await self.store.list_leases()


class Passes:
    """When each runner's passes ran: (holder, start, end) in monotonic seconds."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float, float]] = []

    def job(self, holder: str) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            self.runs.append((holder, start, time.monotonic()))

        return work

    def by(self, holder: str) -> list[tuple[str, float, float]]:
        return [r for r in self.runs if r[0] == holder]


async def _wait_for(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_runner_at_a_time_and_a_release_hands_over(store: SqlMetadataStore) -> None:
    passes = Passes()
    a = LeasedJobs(store, SystemClock(), TERM, holder="gw-a")
    b = LeasedJobs(store, SystemClock(), TERM, holder="gw-b")
    task_a = asyncio.create_task(a.run("sweep", INTERVAL, passes.job("gw-a")))
    await _wait_for(lambda: len(passes.runs) >= 3, 5)
    task_b = asyncio.create_task(b.run("sweep", INTERVAL, passes.job("gw-b")))
    await asyncio.sleep(TERM * 1.5)  # several renewals: B never gets in
    assert {r[0] for r in passes.runs} == {"gw-a"}

    # A stops (a gateway shut down): it releases, and B takes over at its next poll.
    stopped = time.monotonic()
    await _stop(task_a)
    await _wait_for(lambda: bool(passes.by("gw-b")), 5)
    assert passes.by("gw-b")[0][1] - stopped < TERM / 3 + 0.5
    await _stop(task_b)
    (lease,) = await store.list_leases()
    assert (lease.holder, lease.epoch) == ("gw-b", 2)


async def test_a_holder_cut_off_stops_before_another_takes_over(store: SqlMetadataStore) -> None:
    passes = Passes()
    reach_a = Cut(store)
    a = LeasedJobs(reach_a, SystemClock(), TERM, holder="gw-a")
    b = LeasedJobs(store, SystemClock(), TERM, holder="gw-b")
    task_a = asyncio.create_task(a.run("repair", INTERVAL, passes.job("gw-a")))
    await _wait_for(lambda: len(passes.runs) >= 3, 5)
    task_b = asyncio.create_task(b.run("repair", INTERVAL, passes.job("gw-b")))

    reach_a.cut = True
    cut = time.monotonic()
    # B takes over once A's lease has expired: within a term and a poll of the cut.
    await _wait_for(lambda: bool(passes.by("gw-b")), 5)
    first_b = passes.by("gw-b")[0][1]
    assert first_b - cut < TERM + TERM / 3 + 0.5
    # A's last pass ended before B's first began, and A ran none since: never two runners.
    await asyncio.sleep(10 * INTERVAL)
    assert max(end for _, _, end in passes.by("gw-a")) <= first_b
    # A keeps trying, and gets nothing while B renews, even once it reaches the store again.
    reach_a.cut = False
    ran = len(passes.by("gw-a"))
    await asyncio.sleep(TERM)
    assert len(passes.by("gw-a")) == ran
    await _stop(task_a, task_b)
    (lease,) = await store.list_leases()
    # B holds it. Its epoch is 2, or more where the machine stalled B past its own term and
    # B took its expired lease again (a new epoch each time, as for any takeover); either
    # way A never got it back (its passes are counted above).
    assert lease.holder == "gw-b"
    assert lease.epoch >= 2


def _dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("single_host", [True, False])
async def test_a_dead_holder_of_this_host_is_replaced_at_once_on_a_single_host(
    store: SqlMetadataStore, single_host: bool
) -> None:
    """The embedded store is one host's: a lease whose holder's process is gone (a kill -9
    before this restart) is taken at once; where gateways may share the database from several
    hosts, it waits for its term."""
    dead = f"{socket.gethostname()}:{_dead_pid()}:0000"
    assert await store.take_lease("sweep", dead, SystemClock().now(), dt.timedelta(seconds=60))
    passes = Passes()
    runner = LeasedJobs(store, SystemClock(), TERM, holder="gw-new", single_host=single_host)
    task = asyncio.create_task(runner.run("sweep", INTERVAL, passes.job("gw-new")))
    await asyncio.sleep(TERM)
    await _stop(task)
    assert bool(passes.runs) is single_host
