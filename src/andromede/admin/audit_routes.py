"""Reading the audit trail over the admin API: query (paged), JSON Lines export, public key.

Operators read every record; a tenant's keys read their own tenant's (see
:class:`andromede.services.audit.AuditLog`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from andromede.admin.deps import API_VERSION, Caller, ServicesDep
from andromede.core import errors
from andromede.core.audit import (
    AuditQuery,
    advance_after,
    format_after,
    parse_after,
    parse_time,
)
from andromede.core.models import Principal
from andromede.services.audit import MAX_LIMIT, AuditLog

DEFAULT_LIMIT: Final = 100
EXPORT_PAGE: Final = MAX_LIMIT
NDJSON: Final = "application/x-ndjson"

router = APIRouter()


class AuditPage(BaseModel):
    """One page of records, oldest first."""

    records: list[dict[str, object]] = Field(
        description=(
            "Records as the trail stores them (see docs/audit.md), each with its 'seq': "
            "type, time, face, operation, request_id, tenant, principal {kind, "
            "access_key_id, tenant}, source, user_agent, bucket, key, version_id, status, "
            "error, bytes_in, bytes_out, sites, and details for some events."
        )
    )
    next_after_seq: int | None = Field(
        description="Pass as after_seq for the next page; null when this page is the last."
    )
    next_after: str | None = Field(
        default=None,
        description=(
            "A cluster's gateways (records of several chains, each with its 'chain'): pass "
            "as after for the next page; null when this page is the last."
        ),
    )


# Module level for the same reason as ``Caller``: FastAPI resolves the annotations of the
# route functions against this module's globals.
TenantFilter = Annotated[
    str | None,
    Query(description="Records touching this tenant's data or made by its principals"),
]
SinceFilter = Annotated[str | None, Query(description="ISO 8601 time, inclusive (UTC if no zone)")]
UntilFilter = Annotated[str | None, Query(description="ISO 8601 time, exclusive (UTC if no zone)")]
BucketFilter = Annotated[str | None, Query(description="Bucket name")]
PrincipalFilter = Annotated[
    str | None,
    Query(
        description=(
            "An access key id, or a principal kind: key, operator, anonymous, "
            "unauthenticated, system"
        )
    ),
]
OperationFilter = Annotated[
    str | None, Query(description="AWS operation name (PutObject) or admin:CreateTenant")
]
OutcomeFilter = Annotated[
    str | None,
    Query(description="success (status < 400), failure, an HTTP status, or an error code"),
]
AfterSeq = Annotated[int, Query(ge=0, description="Only records with a greater seq")]
After = Annotated[
    str | None,
    Query(max_length=48 * 1024, description="Several chains: CHAIN:SEQ,... (from next_after)"),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Records per page")]


@dataclasses.dataclass(frozen=True)
class _Filters:
    tenant: str | None
    since: str | None
    until: str | None
    bucket: str | None
    principal: str | None
    operation: str | None
    outcome: str | None

    def query(
        self,
        after_seq: int,
        limit: int,
        until_default: dt.datetime | None = None,
        after: str | None = None,
    ) -> AuditQuery:
        until = _time("until", self.until)
        try:
            after_chains = parse_after(after or "")
        except ValueError as exc:
            raise errors.InvalidArgument(f"after: {exc}.") from None
        return AuditQuery(
            tenant=self.tenant,
            since=_time("since", self.since),
            until=until if until is not None else until_default,
            bucket=self.bucket,
            principal=self.principal,
            operation=self.operation,
            outcome=self.outcome,
            after_seq=after_seq,
            limit=limit,
            after_chains=after_chains,
        )


def _filters(
    tenant: TenantFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    bucket: BucketFilter = None,
    principal: PrincipalFilter = None,
    operation: OperationFilter = None,
    outcome: OutcomeFilter = None,
) -> _Filters:
    """The filters every audit route takes, as one dependency."""
    return _Filters(tenant, since, until, bucket, principal, operation, outcome)


# Module level for the same reason as ``Caller`` in admin/deps.py.
Filters = Annotated[_Filters, Depends(_filters)]


def _time(name: str, text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise errors.InvalidArgument(f"{name} is not an ISO 8601 time: {text!r}") from None


def _line(record: dict[str, object]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n"


async def _export(
    audit: AuditLog, caller: Principal, query: AuditQuery, first: list[dict[str, object]]
) -> AsyncIterator[bytes]:
    """Pages of JSON Lines: one page of records in memory at a time."""
    page = first
    while True:
        if page:
            yield "".join(_line(r) for r in page).encode("ascii")
        if len(page) < query.limit:
            return
        query = _next(query, page)
        page = await audit.query(caller, query)


def _next(query: AuditQuery, page: list[dict[str, object]]) -> AuditQuery:
    """The query of the page after ``page`` (one chain: by seq; several: by cursor)."""
    if "chain" in page[-1]:
        return dataclasses.replace(query, after_chains=advance_after(query.after_chains, page))
    return dataclasses.replace(query, after_seq=_seq(page[-1]))


def _seq(record: dict[str, object]) -> int:
    seq = record["seq"]
    assert isinstance(seq, int)
    return seq


@router.get(f"/{API_VERSION}/audit/records", response_model=AuditPage)
async def query_audit_records(
    caller: Caller,
    services: ServicesDep,
    filters: Filters,
    after_seq: AfterSeq = 0,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> AuditPage:
    """Records matching every filter given, oldest first, at most ``limit``."""
    query = filters.query(after_seq, limit, after=after)
    records = await services.audit.query(caller, query)
    more = len(records) == limit
    if more and "chain" in records[-1]:
        cursor = format_after(advance_after(query.after_chains, records))
        return AuditPage(records=records, next_after_seq=None, next_after=cursor)
    return AuditPage(records=records, next_after_seq=_seq(records[-1]) if more else None)


@router.get(
    f"/{API_VERSION}/audit/export",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {}}, "description": "One record per line"}},
)
async def export_audit_records(
    caller: Caller,
    services: ServicesDep,
    filters: Filters,
    after_seq: AfterSeq = 0,
    after: After = None,
) -> StreamingResponse:
    """Every matching record as JSON Lines, oldest first. Without ``until``, the export
    stops at requests that started after it did, so that it ends on a busy server."""
    query = filters.query(
        after_seq, EXPORT_PAGE, until_default=dt.datetime.now(dt.UTC), after=after
    )
    # The first page is read before the response starts: a refused query gets its error.
    first = await services.audit.query(caller, query)
    return StreamingResponse(_export(services.audit, caller, query, first), media_type=NDJSON)


@router.get(
    f"/{API_VERSION}/audit/public-key",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "PEM"}},
)
async def get_audit_public_key(caller: Caller, services: ServicesDep) -> PlainTextResponse:
    """The Ed25519 public key (PEM) that verifies the trail's checkpoints."""
    del caller  # any authenticated caller
    return PlainTextResponse(services.audit.public_key().decode("ascii"))
