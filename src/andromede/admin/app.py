"""Admin REST API, mounted under a path prefix on the gateway's listener.

Requests are signed with SigV4 using the same access keys as S3 (any service name in the
scope); the CLI signs them with botocore. Operators manage tenants; a tenant's own keys may
manage that tenant's keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from andromede.auth.sigv4 import SignedRequest, authenticate
from andromede.core import audit, errors
from andromede.core.audit import PrincipalKind
from andromede.core.models import AccessKey, Principal, Tenant
from andromede.http_errors import lookup
from andromede.services.container import Services

API_VERSION = "v1"


class TenantIn(BaseModel):
    """A tenant to create."""

    name: str = Field(description="1-63 characters: lowercase letters, digits, '-'")


class TenantOut(BaseModel):
    """A tenant."""

    name: str
    created: dt.datetime


class KeyIn(BaseModel):
    """A key to create for a tenant."""

    tenant: str
    description: str = ""


class KeyOut(BaseModel):
    """An access key (never its secret)."""

    access_key_id: str
    tenant: str
    created: dt.datetime
    is_operator: bool
    description: str


class NewKeyOut(KeyOut):
    """A freshly created key: the only time its secret is shown."""

    secret_key: str


class WhoAmI(BaseModel):
    """The caller."""

    access_key_id: str
    tenant: str
    is_operator: bool


def _tenant(t: Tenant) -> TenantOut:
    return TenantOut(name=t.name, created=t.created)


def _key(k: AccessKey) -> KeyOut:
    return KeyOut(
        access_key_id=k.access_key_id,
        tenant=k.tenant,
        created=k.created,
        is_operator=k.is_operator,
        description=k.description,
    )


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _principal(request: Request) -> Principal:
    """The SigV4-authenticated caller; the body is hashed when the signature covers it."""
    services = _services(request)
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


# Module level, not inside create_admin_app: with postponed annotations FastAPI resolves
# ``caller: Caller`` against the module's globals, and a local alias would be left a
# ForwardRef (an unusable query parameter, and a broken OpenAPI document).
Caller = Annotated[Principal, Depends(_principal)]


def create_admin_app(services: Services) -> FastAPI:
    """The admin API; its OpenAPI document is at ``<mount point>/openapi.json``.

    The caller mounts it the way Starlette's ``Mount`` does: ``scope["root_path"]`` names the
    prefix and ``scope["path"]`` keeps it, so routes, ``/docs`` and the OpenAPI ``servers``
    entry all follow the prefix.
    """
    app = FastAPI(
        title="Andromède admin API",
        version=API_VERSION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )

    app.state.services = services

    @app.exception_handler(errors.AndromedeError)
    async def domain_error(_: Request, exc: errors.AndromedeError) -> JSONResponse:
        code, status = lookup(exc)
        message = exc.message if status != 500 else "internal error"
        return JSONResponse(
            {"code": code, "message": message},
            status_code=status,
            headers={"x-andromede-error-code": code},
        )

    @app.get(f"/{API_VERSION}/whoami", response_model=WhoAmI)
    async def whoami(caller: Caller) -> WhoAmI:
        return WhoAmI(
            access_key_id=caller.access_key_id, tenant=caller.tenant, is_operator=caller.is_operator
        )

    @app.get(f"/{API_VERSION}/tenants", response_model=list[TenantOut])
    async def list_tenants(caller: Caller) -> list[TenantOut]:
        return [_tenant(t) for t in await services.accounts.list_tenants(caller)]

    @app.post(f"/{API_VERSION}/tenants", response_model=TenantOut, status_code=201)
    async def create_tenant(body: TenantIn, caller: Caller) -> TenantOut:
        return _tenant(await services.accounts.create_tenant(caller, body.name))

    @app.get(f"/{API_VERSION}/keys", response_model=list[KeyOut])
    async def list_keys(caller: Caller, tenant: str | None = None) -> list[KeyOut]:
        return [_key(k) for k in await services.accounts.list_keys(caller, tenant)]

    @app.post(f"/{API_VERSION}/keys", response_model=NewKeyOut, status_code=201)
    async def create_key(body: KeyIn, caller: Caller) -> NewKeyOut:
        key = await services.accounts.create_key(caller, body.tenant, body.description)
        return NewKeyOut(**_key(key).model_dump(), secret_key=key.secret_key)

    @app.delete(f"/{API_VERSION}/keys/{{access_key_id}}", status_code=204)
    async def delete_key(access_key_id: str, caller: Caller) -> Response:
        await services.accounts.delete_key(caller, access_key_id)
        return Response(status_code=204)

    _ = (whoami, list_tenants, create_tenant, list_keys, create_key, delete_key, domain_error)
    # Imported here: the audit and key routes import ``Caller`` from this module.
    from andromede.admin.audit_routes import register_audit_routes  # noqa: PLC0415
    from andromede.admin.kms_routes import register_kms_routes  # noqa: PLC0415
    from andromede.admin.placement_routes import register_placement_routes  # noqa: PLC0415

    register_audit_routes(app, services)
    register_kms_routes(app, services)
    register_placement_routes(app, services)
    return app
