"""The loop every background job runs in: one pass, a pause, again, until cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("andromede.workers")


async def every(
    interval: float, job: Callable[[], Awaitable[object]], what: str, *, wait_first: bool = False
) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled.

    A failing pass is logged and the next one runs on time: a background job must outlive a
    site or key manager that is away for a while. This loop is the outermost frame of the job,
    so it is the one place that catches everything (cancellation is not an ``Exception``).
    """
    if wait_first:
        await asyncio.sleep(interval)
    while True:
        try:
            await job()
        except Exception:
            log.exception("%s failed; next try in %g s", what, interval)
        await asyncio.sleep(interval)
