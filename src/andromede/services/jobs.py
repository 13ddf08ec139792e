"""Which gateway process runs each background job: the leases, as an operator sees them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from andromede.auth.policy import require_operator
from andromede.core.leases import Lease
from andromede.core.models import Principal
from andromede.ports import Clock, LeaseStore


@dataclass(frozen=True)
class JobView:
    """A job's lease, whether it runs now (held, not expired), and the progress it saved
    (the lifecycle job's, for instance), if any."""

    lease: Lease
    running: bool
    progress: dict[str, object] | None = None


class JobsStore(LeaseStore, Protocol):
    """The leases, and what jobs saved of their progress."""

    async def job_progress(self, job: str) -> str | None: ...


class Jobs:
    """The background jobs' leases (``core/leases.py``)."""

    def __init__(self, store: JobsStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def leases(self, principal: Principal) -> list[JobView]:
        """Every job that ever ran, by name: its holder, epoch and expiry. A lease past its
        expiry means the job waits for a process to take it (its holder died or stopped)."""
        require_operator(principal)
        now = self._clock.now()
        views = []
        for lease in await self._store.list_leases():
            saved = await self._store.job_progress(lease.job)
            progress = None if saved is None else json.loads(saved)
            views.append(JobView(lease, now < lease.expires, progress))
        return views
