"""Background job: run the janitor periodically."""

from __future__ import annotations

from andromede.services.janitor import Janitor
from andromede.workers.loop import every


class Sweeper:
    """Runs :meth:`Janitor.sweep` every ``interval`` seconds until cancelled."""

    def __init__(self, janitor: Janitor) -> None:
        self.janitor = janitor

    async def sweep(self, *, at_start: bool = False) -> dict[str, int]:
        """One pass now."""
        return await self.janitor.sweep(at_start=at_start)

    async def run_forever(self, interval: float) -> None:
        """Loop; a failing pass is logged and retried next interval. The first pass waits an
        interval: under ``serve`` this process has just swept, before any worker served."""
        await every(interval, self.janitor.sweep, "sweep", wait_first=True)
