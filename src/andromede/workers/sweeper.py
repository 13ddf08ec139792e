"""Background job: run the janitor periodically."""

from __future__ import annotations

import asyncio
import logging

from andromede.services.janitor import Janitor

log = logging.getLogger("andromede.sweeper")


class Sweeper:
    """Runs :meth:`Janitor.sweep` every ``interval`` seconds until cancelled."""

    def __init__(self, janitor: Janitor) -> None:
        self.janitor = janitor

    async def sweep(self, *, at_start: bool = False) -> dict[str, int]:
        """One pass now."""
        return await self.janitor.sweep(at_start=at_start)

    async def run_forever(self, interval: float) -> None:
        """Loop; a failing pass is logged and retried next interval."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.janitor.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed")
