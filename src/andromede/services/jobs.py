"""Which gateway process runs each background job: the leases, as an operator sees them."""

from __future__ import annotations

from dataclasses import dataclass

from andromede.auth.policy import require_operator
from andromede.core.leases import Lease
from andromede.core.models import Principal
from andromede.ports import Clock, LeaseStore


@dataclass(frozen=True)
class JobView:
    """A job's lease, and whether it runs now (held, not expired)."""

    lease: Lease
    running: bool


class Jobs:
    """The background jobs' leases (``core/leases.py``)."""

    def __init__(self, store: LeaseStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def leases(self, principal: Principal) -> list[JobView]:
        """Every job that ever ran, by name: its holder, epoch and expiry. A lease past its
        expiry means the job waits for a process to take it (its holder died or stopped)."""
        require_operator(principal)
        now = self._clock.now()
        return [JobView(lease, now < lease.expires) for lease in await self._store.list_leases()]
