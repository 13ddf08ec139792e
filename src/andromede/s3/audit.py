"""The S3 face's side of the audit trail: what a request looked like from the outside."""

from __future__ import annotations

import datetime as dt

from andromede import asgi
from andromede.asgi import Scope
from andromede.core.audit import PrincipalKind, RequestTrace, arriving
from andromede.core.models import Principal
from andromede.s3.http import Response


def open_trace(scope: Scope, request_id: str, face: str = "s3") -> RequestTrace:
    """A trace for a request that just arrived (nothing of it is trusted yet)."""
    return arriving(
        face,
        request_id,
        asgi.headers(scope),
        asgi.raw(scope, "query_string"),
        asgi.client(scope),
        dt.datetime.now(dt.UTC),
    )


def authenticated(trace: RequestTrace, principal: Principal) -> None:
    """The request's signature checked out: it acts as ``principal``."""
    trace.principal_kind = PrincipalKind.OPERATOR if principal.is_operator else PrincipalKind.KEY
    trace.access_key_id = principal.access_key_id
    trace.principal_tenant = principal.tenant


def bytes_out(response: Response, head_only: bool) -> int:
    """The body bytes the response is about to send."""
    if head_only or response.status in (204, 304):
        return 0
    if isinstance(response.body, bytes):
        return len(response.body)
    return response.content_length or 0


def version_of(response: Response) -> str | None:
    """The version id a response names, if any."""
    for name, value in response.headers:
        if name == "x-amz-version-id":
            return value
    return None
