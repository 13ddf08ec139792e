"""Tenants and access keys."""

from __future__ import annotations

import contextlib
import time

from andromede.auth.policy import authorize_tenant, require_operator
from andromede.core import errors
from andromede.core.ids import TenantName, new_access_key_id, new_secret_key
from andromede.core.models import AccessKey, Principal, Tenant
from andromede.ports import Clock, MetadataStore


class Accounts:
    """Tenant and key management, and the credential lookup that authentication uses."""

    def __init__(self, store: MetadataStore, clock: Clock, key_cache_seconds: float = 5.0) -> None:
        self._store = store
        self._clock = clock
        self._ttl = key_cache_seconds
        self._cache: dict[str, tuple[float, AccessKey | None]] = {}

    async def lookup(self, access_key_id: str) -> AccessKey | None:
        """The key for a request signature, cached briefly (deleted keys stop within the TTL)."""
        hit = self._cache.get(access_key_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        key = await self._store.get_access_key(access_key_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[access_key_id] = (now + self._ttl, key)
        return key

    async def principal_for(self, access_key_id: str) -> Principal:
        """The principal behind a verified access key id."""
        key = await self.lookup(access_key_id)
        if key is None:
            raise errors.InvalidAccessKeyId()
        return Principal(key.access_key_id, key.tenant, key.is_operator)

    async def ensure_root(self, tenant: str, access_key_id: str, secret_key: str) -> None:
        """First start: the operator key, which also acts in the default tenant."""
        if await self._store.get_tenant(tenant) is None:
            with contextlib.suppress(errors.TenantAlreadyExists):  # another worker was first
                await self._store.create_tenant(Tenant(TenantName(tenant), self._clock.now()))
        if await self._store.get_access_key(access_key_id) is None:
            key = AccessKey(
                access_key_id,
                secret_key,
                tenant,
                self._clock.now(),
                is_operator=True,
                description="operator (root)",
            )
            try:
                await self._store.create_access_key(key)
            except errors.AndromedeError:
                if await self._store.get_access_key(access_key_id) is None:
                    raise

    async def create_tenant(self, principal: Principal, name: str) -> Tenant:
        """Operators create tenants."""
        require_operator(principal)
        tenant = Tenant(TenantName(name), self._clock.now())
        await self._store.create_tenant(tenant)
        return tenant

    async def list_tenants(self, principal: Principal) -> list[Tenant]:
        """Operators see every tenant."""
        require_operator(principal)
        return await self._store.list_tenants()

    async def create_key(
        self, principal: Principal, tenant: str, description: str = ""
    ) -> AccessKey:
        """A new key for a tenant; the secret is returned once and only here."""
        authorize_tenant(principal, tenant)
        if await self._store.get_tenant(tenant) is None:
            raise errors.NoSuchTenant()
        key = AccessKey(
            new_access_key_id(),
            new_secret_key(),
            tenant,
            self._clock.now(),
            description=description,
        )
        await self._store.create_access_key(key)
        return key

    async def list_keys(self, principal: Principal, tenant: str | None) -> list[AccessKey]:
        """Keys of one tenant (its own keys, or an operator), or of all (operators)."""
        if tenant is None:
            if principal.is_operator:
                return await self._store.list_access_keys(None)
            tenant = principal.tenant
        authorize_tenant(principal, tenant)
        return await self._store.list_access_keys(tenant)

    async def delete_key(self, principal: Principal, access_key_id: str) -> None:
        """Remove a key; it stops working within the lookup cache TTL on every worker."""
        key = await self._store.get_access_key(access_key_id)
        if key is None:
            raise errors.NoSuchAccessKey()
        authorize_tenant(principal, key.tenant)
        await self._store.delete_access_key(access_key_id)
        self._cache.pop(access_key_id, None)
