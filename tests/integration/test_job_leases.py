"""Background jobs across gateways: three ``andromede serve`` on one PostgreSQL database (separate
data dirs standing in for hosts) share the jobs through their leases, and the jobs of a gateway
killed with SIGKILL resume on the others within the documented bound (a term and a poll)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from pathlib import Path

import pytest

from andromede.cli.client import AdminClient, AdminError
from andromede.core.leases import Lease
from andromede.metadata.sql import open_store
from support.postgres import create_database
from support.server import Server, running_server

pytestmark = pytest.mark.postgres

TERM_S = 2.0
JOBS = {"key jobs", "lifecycle", "repair", "sweep"}
SLACK_S = 10.0  # process scheduling on a loaded machine; the bound itself is asserted below


def _leases(url: str) -> list[Lease]:
    async def read() -> list[Lease]:
        store = await open_store(url)
        try:
            return await store.list_leases()
        finally:
            await store.close()

    return asyncio.run(read())


def _pid(lease: Lease) -> int:
    return int(lease.holder.split(":")[1])


def _held(url: str, alive: set[int]) -> dict[str, Lease]:
    """The jobs whose lease a live gateway holds now (by the database's expiry)."""
    now = time.time()
    return {
        lease.job: lease
        for lease in _leases(url)
        if _pid(lease) in alive and lease.expires.timestamp() > now
    }


def _wait_held(url: str, alive: set[int], within: float) -> dict[str, Lease]:
    deadline = time.monotonic() + within
    while True:
        held = _held(url, alive)
        if set(held) == JOBS or time.monotonic() > deadline:
            return held
        time.sleep(0.1)


def test_a_killed_gateways_jobs_resume_on_the_others(postgres_url: str, tmp_path: Path) -> None:
    url = create_database(postgres_url, "leases_" + secrets.token_hex(4))
    env = {"ANDROMEDE_DATABASE_URL": url, "ANDROMEDE_JOB_LEASE_SECONDS": str(TERM_S)}
    with contextlib.ExitStack() as stack:
        gateways: list[Server] = [
            stack.enter_context(running_server(tmp_path / f"gw{n}", **env)) for n in range(3)
        ]
        pids = {g.proc.pid: g for g in gateways if g.proc is not None}
        held = _wait_held(url, set(pids), TERM_S + SLACK_S)
        assert set(held) == JOBS, held
        # Exactly one lease row per job, whatever the three did meanwhile.
        assert sorted(lease.job for lease in _leases(url)) == sorted(JOBS)

        victim_pid = _pid(held["repair"])
        orphaned = {job for job, lease in held.items() if _pid(lease) == victim_pid}
        pids[victim_pid].stop(kill=True)
        killed = time.monotonic()
        alive = set(pids) - {victim_pid}
        after = _wait_held(url, alive, TERM_S + TERM_S / 3 + SLACK_S)
        took = time.monotonic() - killed
        assert set(after) == JOBS, after
        for job in orphaned:
            assert after[job].epoch == held[job].epoch + 1  # taken over, fenced
        # The bound: the dead holder's term (its last renewal was at most a beat before the
        # kill) and one poll of the others, with room for a loaded machine.
        assert took < TERM_S + TERM_S / 3 + SLACK_S
        print(f"jobs {sorted(orphaned)} resumed on another gateway {took:.1f} s after the kill")

        # What an operator sees, through any live gateway: the CLI over the admin API.
        live = next(g for pid, g in pids.items() if pid != victim_pid)
        shown = json.loads(live.cli("admin", "jobs", "list", "--json").stdout)
        assert {j["job"]: (j["holder"], j["epoch"], j["running"]) for j in shown} == {
            job: (lease.holder, lease.epoch, True) for job, lease in after.items()
        }
        # A tenant's own key may not see where the platform's jobs run.
        _, access, secret = live.new_tenant()
        with pytest.raises(AdminError) as refused:
            AdminClient(live.endpoint, access, secret).request("GET", "/v1/jobs")
        assert str(refused.value).startswith("AccessDenied: ")
