"""Whether a gateway process can serve now: what a load balancer's health check asks.

Live (``/_andromede/health``): the process answers. Ready (``/_andromede/ready``): the metadata
database answers within ``DATABASE_WAIT_S`` and the audit trail takes records, the two things
without which every request fails. A site that is down is not a reason: reads go around it and
writes go elsewhere when the policy allows, so a gateway that sees one site down still serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from andromede.core import errors
from andromede.ports import AuditSink, PlacementStore

log = logging.getLogger("andromede.health")
DATABASE_WAIT_S: Final = 2.0
# A check's result is reused this long: a balancer's checks cost the database little.
REUSE_S: Final = 0.5


class Readiness:
    """The readiness check of one gateway process."""

    def __init__(self, store: PlacementStore, audit: AuditSink) -> None:
        self._store = store
        self._audit = audit
        self._last: tuple[float, list[str]] | None = None

    async def problems(self) -> list[str]:
        """Why this process cannot serve now (empty: ready)."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < REUSE_S:
            return self._last[1]
        found: list[str] = []
        try:
            await asyncio.wait_for(self._store.list_regions(), DATABASE_WAIT_S)
        except TimeoutError:
            found.append(f"the metadata database did not answer within {DATABASE_WAIT_S:g} s")
        except (errors.MetadataUnavailable, OSError) as exc:
            # The answer goes to anyone who asks: the cause (hosts, ports) stays in the log.
            log.warning("not ready: the metadata database cannot be reached: %s", exc)
            found.append("the metadata database cannot be reached")
        if not self._audit.healthy():
            found.append("the audit trail refuses records")
        self._last = (time.monotonic(), found)
        return found
