"""Background job: queued repairs, drains and some scrubbing, periodically."""

from __future__ import annotations

from andromede.services.repair import Repairs
from andromede.workers.loop import every


class RepairWorker:
    """Runs :meth:`Repairs.run_once` every ``interval`` seconds until cancelled."""

    def __init__(self, repairs: Repairs) -> None:
        self.repairs = repairs

    async def run_forever(self, interval: float) -> None:
        """Loop; a failing round is logged and retried next interval."""
        await every(interval, self.repairs.run_once, "repair round")
