"""Background job: remove audit trail segments past their retention period.

Runs only where the gateway writes the trail itself; under ``serve`` the audit writer process
applies retention (see ``audit_process.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable

from andromede.workers.loop import every

INTERVAL_S = 3600.0


class AuditRetention:
    """Hourly: whole segments older than ``retention`` go, and, when the trail is shipped to
    a collector, only once shipped.

    ``apply(cutoff, shipped_seq)`` is the trail's retention; ``shipped()`` the last seq the
    collector has (None when nothing ships the trail).
    """

    def __init__(
        self,
        apply: Callable[[float, int | None], object],
        retention: dt.timedelta,
        shipped: Callable[[], int] | None,
    ) -> None:
        self._apply = apply
        self._retention = retention
        self._shipped = shipped

    async def run_once(self) -> None:
        """One pass now (file work, off the event loop)."""
        cutoff = time.time() - self._retention.total_seconds()
        shipped = await asyncio.to_thread(self._shipped) if self._shipped else None
        await asyncio.to_thread(self._apply, cutoff, shipped)

    async def run_forever(self, interval: float = INTERVAL_S) -> None:
        """Loop; a failing pass is logged and retried next interval."""
        await every(interval, self.run_once, "audit retention")
