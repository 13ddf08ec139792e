"""The audit trail: where records go, and how they are read back."""

from __future__ import annotations

from typing import Protocol

from andromede.core.audit import AuditQuery, AuditRecord


class AuditSink(Protocol):
    """Where audit records go; :meth:`record` returns only once the record is durable."""

    def healthy(self) -> bool:
        """False while writes are known to fail (requests are then refused up front)."""
        ...

    async def record(self, record: AuditRecord) -> None:
        """Make ``record`` durable; raises AuditUnavailable when it cannot."""
        ...

    async def close(self) -> None:
        """Flush, sign the head, release files."""
        ...


class AuditReader(Protocol):
    """Reads the trail back (records only, oldest first)."""

    async def query(self, query: AuditQuery) -> list[dict[str, object]]:
        """Records matching ``query`` with ``seq > query.after_seq``, at most ``query.limit``."""
        ...
