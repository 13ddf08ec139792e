"""What every admin route depends on: the gateway's services and the authenticated caller.

Both come through FastAPI dependencies that read the app's state, so the route modules hold
module-level routers and import nothing from ``admin/app.py``.

The aliases are module level: with postponed annotations FastAPI resolves a route's
``caller: Caller`` against its module's globals, and a local alias would be left a ForwardRef
(an unusable query parameter, and a broken OpenAPI document).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Annotated, Final

from fastapi import Depends, Request

from andromede.auth.sigv4 import SignedRequest, authenticate
from andromede.core import audit, errors
from andromede.core.audit import PrincipalKind
from andromede.core.models import Principal
from andromede.services.container import Services

API_VERSION: Final = "v1"


def services_of(request: Request) -> Services:
    """The services the admin app was built with (``create_admin_app`` keeps them)."""
    services: Services = request.app.state.services
    return services


async def authenticated(request: Request) -> Principal:
    """The SigV4-authenticated caller; the body is hashed when the signature covers it."""
    services = services_of(request)
    body = await request.body()
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    headers = [
        (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]
    ]
    signed = SignedRequest(
        request.method,
        raw_path.decode("latin-1").split("?", 1)[0],
        request.scope.get("query_string", b"").decode("latin-1"),
        headers,
    )

    async def lookup_secret(access_key_id: str) -> str | None:
        key = await services.accounts.lookup(access_key_id)
        return key.secret_key if key else None

    auth = await authenticate(signed, lookup_secret, dt.datetime.now(dt.UTC))
    principal = await services.accounts.principal_for(auth.access_key_id)
    trace = audit.current()
    if trace is not None:
        trace.principal_kind = (
            PrincipalKind.OPERATOR if principal.is_operator else PrincipalKind.KEY
        )
        trace.access_key_id, trace.principal_tenant = principal.access_key_id, principal.tenant
    if auth.payload_sha256 is not None and not hmac.compare_digest(
        auth.payload_sha256, hashlib.sha256(body).hexdigest()
    ):
        raise errors.ContentSHA256Mismatch()
    return principal


Caller = Annotated[Principal, Depends(authenticated)]
ServicesDep = Annotated[Services, Depends(services_of)]
