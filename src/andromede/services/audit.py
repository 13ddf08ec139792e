"""Reading the audit trail: who may see which records, and the key that signs checkpoints."""

from __future__ import annotations

import dataclasses
from typing import Final

from andromede.core import audit as trace
from andromede.core import errors
from andromede.core.audit import AuditQuery
from andromede.core.models import Principal
from andromede.ports import AuditReader

MAX_LIMIT: Final = 1000
_OUTCOME_WORDS: Final = ("success", "failure")


class AuditLog:
    """Queries over the trail. Operators may read all of it; a tenant's keys read only the
    records of their own tenant: those touching its data or settings, and those its own
    principals made."""

    def __init__(self, reader: AuditReader, public_key_pem: bytes) -> None:
        self._reader = reader
        self._public_key_pem = public_key_pem

    async def query(self, principal: Principal, query: AuditQuery) -> list[dict[str, object]]:
        """Records matching ``query`` (seq after ``query.after_seq``, at most ``query.limit``,
        oldest first), as the trail stores them plus their ``seq``.

        A tenant's key is held to its own tenant: the tenant filter is set to it, and naming
        another tenant is AccessDenied. Reading a tenant's trail is itself noted as touching
        that tenant, so the tenant sees in its trail that an operator read it.
        """
        _validate(query)
        if not principal.is_operator:
            if query.tenant is not None and query.tenant != principal.tenant:
                raise errors.AccessDenied("A tenant's credentials read only its own audit trail.")
            query = dataclasses.replace(query, tenant=principal.tenant)
        if query.tenant is not None:
            trace.note_owner(query.tenant)
        return await self._reader.query(query)

    def public_key(self) -> bytes:
        """The PEM (SubjectPublicKeyInfo) of the Ed25519 key that signs the trail's
        checkpoints: what ``andromede audit verify --public-key`` takes."""
        return self._public_key_pem


def _validate(query: AuditQuery) -> None:
    if not 1 <= query.limit <= MAX_LIMIT:
        raise errors.InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}.")
    if query.after_seq < 0:
        raise errors.InvalidArgument("after_seq must not be negative.")
    for name, moment in (("since", query.since), ("until", query.until)):
        if moment is not None and moment.tzinfo is None:
            raise errors.InvalidArgument(f"{name} must name its time zone.")
    outcome = query.outcome
    if outcome is not None and not (
        outcome in _OUTCOME_WORDS or (outcome.isascii() and outcome.isalnum())
    ):
        raise errors.InvalidArgument(
            "outcome is 'success', 'failure', an HTTP status or an error code."
        )
