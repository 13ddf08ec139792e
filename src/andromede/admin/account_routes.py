"""Tenants and access keys over the admin API, and ``whoami``.

Operators manage tenants; a tenant's own keys may manage that tenant's keys (see
:class:`andromede.services.accounts.Accounts`, which decides). Route function names give the
audit trail its operation names (``create_tenant`` is ``admin:CreateTenant``).
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from andromede.admin.deps import API_VERSION, Caller, ServicesDep
from andromede.core.models import AccessKey, Tenant

router = APIRouter()


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


@router.get(f"/{API_VERSION}/whoami", response_model=WhoAmI)
async def whoami(caller: Caller) -> WhoAmI:
    return WhoAmI(
        access_key_id=caller.access_key_id, tenant=caller.tenant, is_operator=caller.is_operator
    )


@router.get(f"/{API_VERSION}/tenants", response_model=list[TenantOut])
async def list_tenants(caller: Caller, services: ServicesDep) -> list[TenantOut]:
    return [_tenant(t) for t in await services.accounts.list_tenants(caller)]


@router.post(f"/{API_VERSION}/tenants", response_model=TenantOut, status_code=201)
async def create_tenant(body: TenantIn, caller: Caller, services: ServicesDep) -> TenantOut:
    return _tenant(await services.accounts.create_tenant(caller, body.name))


@router.get(f"/{API_VERSION}/keys", response_model=list[KeyOut])
async def list_keys(
    caller: Caller, services: ServicesDep, tenant: str | None = None
) -> list[KeyOut]:
    return [_key(k) for k in await services.accounts.list_keys(caller, tenant)]


@router.post(f"/{API_VERSION}/keys", response_model=NewKeyOut, status_code=201)
async def create_key(body: KeyIn, caller: Caller, services: ServicesDep) -> NewKeyOut:
    key = await services.accounts.create_key(caller, body.tenant, body.description)
    return NewKeyOut(**_key(key).model_dump(), secret_key=key.secret_key)


@router.delete(f"/{API_VERSION}/keys/{{access_key_id}}", status_code=204)
async def delete_key(access_key_id: str, caller: Caller, services: ServicesDep) -> Response:
    await services.accounts.delete_key(caller, access_key_id)
    return Response(status_code=204)
