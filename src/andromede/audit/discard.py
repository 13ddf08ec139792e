"""A sink that keeps nothing: only for measuring what the trail costs (``audit_sink =
"discard"``). The server warns loudly at start when it is configured."""

from __future__ import annotations

from andromede.core.audit import AuditRecord


class DiscardSink:
    """Accepts every record and stores none."""

    def healthy(self) -> bool:
        """Always writable."""
        return True

    async def record(self, record: AuditRecord) -> None:
        """Drop ``record``."""
        del record

    async def close(self) -> None:
        """Nothing to flush."""
