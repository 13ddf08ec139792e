"""Background job: the janitor's sweep (``gateway.py`` runs it under its lease)."""

from __future__ import annotations

from andromede.services.janitor import Janitor


class Sweeper:
    """The janitor's sweep, as a background job."""

    def __init__(self, janitor: Janitor) -> None:
        self.janitor = janitor

    async def sweep(self, *, at_start: bool = False) -> dict[str, int]:
        """One pass now."""
        return await self.janitor.sweep(at_start=at_start)
