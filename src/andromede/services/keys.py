"""Tenant key-encryption keys: their life cycle, and wrapping data keys under them.

A KEK's material stays in its key manager (built-in keystore, PKCS#11 token, KMIP server);
its state and versions live in the metadata store. Every state change is recorded in the
audit trail as an event. Gateways cache key states for at most ``cache_seconds``: that is
how long a key disabled through another gateway process may still serve requests here (a
change made through this process applies at once). Unwrapped data keys are cached (a bounded
LRU) while their key is enabled: every use checks the key's state first, itself at most
``cache_seconds`` old, so a cached data key outlives a disable or destroy by no more than that
bound, and a hot object's key is unwrapped once, not once per read.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from andromede.auth.policy import authorize_tenant
from andromede.core import audit, errors
from andromede.core.audit import AuditRecord
from andromede.core.envelope import dek_aad
from andromede.core.keys import (
    DEFAULT_KEY_ALIAS,
    KekRef,
    KeyState,
    KeyVersion,
    KmsKey,
    RewrapProgress,
    check_usable,
    deletion_date,
    new_key_id,
    parse_key_reference,
)
from andromede.core.models import Principal
from andromede.ports import Clock, KeyManager, MetadataStore

log = logging.getLogger("andromede.keys")

BUILTIN = "builtin"
_DEK_CACHE_ENTRIES = 4096
MAX_DESCRIPTION = 256
# Attempts of a read-check-write on a key when other writers keep changing it.
_CAS_ATTEMPTS = 5

EventRecorder = Callable[[AuditRecord], Awaitable[None]]


async def _no_events(_: AuditRecord) -> None:
    return None


def _request_id() -> str:
    """The request that caused an event, if any (background jobs have none)."""
    trace = audit.current()
    return trace.request_id if trace is not None else ""


class Keys:
    """Key life cycle (admin API) and DEK wrapping (data path)."""

    def __init__(
        self,
        store: MetadataStore,
        managers: Mapping[str, KeyManager],
        clock: Clock,
        *,
        region: str,
        tenant_managers: Mapping[str, str] | None = None,
        cache_seconds: float = 2.0,
        record_event: EventRecorder = _no_events,
    ) -> None:
        self._store = store
        self._managers = dict(managers)
        self._clock = clock
        self.region = region
        self._tenant_managers = dict(tenant_managers or {})
        self._ttl = cache_seconds
        self._record_event = record_event
        self._keys: dict[str, tuple[float, KmsKey | None]] = {}
        self._defaults: dict[str, str] = {}
        self._deks: collections.OrderedDict[tuple[str, int, bytes, str], bytes] = (
            collections.OrderedDict()
        )
        for tenant, name in self._tenant_managers.items():
            if name not in self._managers:
                raise ValueError(f"tenant {tenant!r}: no key manager named {name!r}")

    @property
    def cache_seconds(self) -> float:
        """How long another process may act on a key state older than the stored one."""
        return self._ttl

    def set_event_recorder(self, record_event: EventRecorder) -> None:
        """Where key events go (the audit trail, once it is open)."""
        self._record_event = record_event

    def manager_for_tenant(self, tenant: str) -> str:
        """The key manager that holds a tenant's new keys."""
        return self._tenant_managers.get(tenant, BUILTIN)

    def _now(self) -> dt.datetime:
        now = self._clock.now()  # the store keeps milliseconds: hand out what it returns
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _manager(self, key: KmsKey) -> KeyManager:
        manager = self._managers.get(key.manager)
        if manager is None:
            raise errors.KeyManagerUnavailable(f"Key manager {key.manager!r} is not configured.")
        return manager

    # --- cache -----------------------------------------------------------------------------
    async def _load(self, key_id: str) -> KmsKey | None:
        hit = self._keys.get(key_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        key = await self._store.get_kms_key(key_id)
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[key_id] = (now + self._ttl, key)
        if key is None or key.state is not KeyState.ENABLED:
            self._forget_deks(key_id)
        return key

    def _remember(self, key: KmsKey) -> None:
        self._keys[key.key_id] = (time.monotonic() + self._ttl, key)
        if key.state is not KeyState.ENABLED:
            self._forget_deks(key.key_id)

    def _forget_deks(self, key_id: str) -> None:
        """Drop the unwrapped data keys of a key that stopped working (they are unusable
        already, since every use checks the key's state: this only frees them)."""
        for entry in [e for e in self._deks if e[0] == key_id]:
            del self._deks[entry]

    # --- life cycle ------------------------------------------------------------------------
    async def _owned(self, principal: Principal, key_id: str) -> KmsKey:
        reference = parse_key_reference(key_id)
        if reference == DEFAULT_KEY_ALIAS:
            key = await self._store.get_kms_key_by_alias(principal.tenant, DEFAULT_KEY_ALIAS)
        else:
            key = await self._store.get_kms_key(reference)
        if key is None:
            raise errors.KmsNotFound(f"Key '{key_id[:80]}' does not exist.")
        authorize_tenant(principal, key.tenant)
        return key

    async def _new_key(self, tenant: str, description: str, alias: str | None) -> KmsKey:
        manager_name = self.manager_for_tenant(tenant)
        manager = self._managers[manager_name]
        key_id = new_key_id()
        handle = await manager.create_key(f"{tenant}/{key_id}/1")
        now = self._now()
        key = KmsKey(
            key_id=key_id,
            tenant=tenant,
            manager=manager_name,
            state=KeyState.ENABLED,
            created=now,
            versions=(KeyVersion(1, handle, now),),
            description=description,
            alias=alias,
        )
        try:
            await self._store.create_kms_key(key)
        except BaseException:
            with contextlib.suppress(errors.AndromedeError):
                await manager.destroy_key(handle)
            raise
        self._remember(key)
        return key

    async def create(
        self, principal: Principal, tenant: str | None, description: str = ""
    ) -> KmsKey:
        """A new KEK for ``tenant`` (default: the caller's), in the tenant's key manager."""
        owner = tenant or principal.tenant
        authorize_tenant(principal, owner)
        if len(description) > MAX_DESCRIPTION:
            raise errors.InvalidArgument(
                f"A key description has at most {MAX_DESCRIPTION} characters."
            )
        key = await self._new_key(owner, description, None)
        await self._event("kms:CreateKey", key, principal)
        return key

    async def list(self, principal: Principal, tenant: str | None) -> list[KmsKey]:
        """Keys of one tenant (operators may list every tenant's keys)."""
        if tenant is None and not principal.is_operator:
            tenant = principal.tenant
        if tenant is not None:
            authorize_tenant(principal, tenant)
        return await self._store.list_kms_keys(tenant)

    async def describe(self, principal: Principal, key_id: str) -> KmsKey:
        """One key."""
        return await self._owned(principal, key_id)

    async def rotate(self, principal: Principal, key_id: str) -> KmsKey:
        """A new key version for new DEKs; old DEKs are re-wrapped in the background."""
        key = await self._owned(principal, key_id)
        manager = self._manager(key)
        for _ in range(_CAS_ATTEMPTS):
            check_usable(key)
            number = key.current.number + 1
            handle = await manager.create_key(f"{key.tenant}/{key.key_id}/{number}")
            now = self._now()
            rotated = replace(
                key,
                versions=(*key.versions, KeyVersion(number, handle, now)),
                rewrap=RewrapProgress(target_version=number, started=now),
            )
            if await self._store.update_kms_key(rotated, expected=key):
                self._remember(rotated)
                await self._event("kms:RotateKey", rotated, principal, version=str(number))
                return rotated
            await manager.destroy_key(handle)  # lost a race: this version was never used
            key = await self._owned(principal, key_id)
        raise errors.ServiceUnavailable("The key keeps changing; retry.")

    async def _transition(
        self,
        principal: Principal,
        key_id: str,
        allowed_from: tuple[KeyState, ...],
        operation: str,
        change: Callable[[KmsKey], KmsKey],
    ) -> KmsKey:
        for _ in range(_CAS_ATTEMPTS):
            key = await self._owned(principal, key_id)
            if key.state not in allowed_from:
                raise errors.KmsInvalidState(f"{key.key_id} is {key.state.value}.")
            changed = change(key)
            if await self._store.update_kms_key(changed, expected=key):
                self._remember(changed)
                await self._event(operation, changed, principal)
                return changed
        raise errors.ServiceUnavailable("The key keeps changing; retry.")

    async def disable(self, principal: Principal, key_id: str) -> KmsKey:
        """Reads and writes under the key fail until it is enabled again."""
        return await self._transition(
            principal,
            key_id,
            (KeyState.ENABLED, KeyState.DISABLED),
            "kms:DisableKey",
            lambda key: replace(key, state=KeyState.DISABLED),
        )

    async def enable(self, principal: Principal, key_id: str) -> KmsKey:
        """Undo :meth:`disable`."""
        return await self._transition(
            principal,
            key_id,
            (KeyState.ENABLED, KeyState.DISABLED),
            "kms:EnableKey",
            lambda key: replace(key, state=KeyState.ENABLED),
        )

    async def schedule_deletion(self, principal: Principal, key_id: str, days: int) -> KmsKey:
        """The key stops working now and is destroyed after ``days`` (7 to 30)."""
        key = await self._owned(principal, key_id)  # NotFound before a bad waiting period
        when = deletion_date(self._now(), days)
        await self._refuse_if_locked(key)
        return await self._transition(
            principal,
            key_id,
            (KeyState.ENABLED, KeyState.DISABLED),
            "kms:ScheduleKeyDeletion",
            lambda key: replace(key, state=KeyState.PENDING_DELETION, deletion_date=when),
        )

    async def cancel_deletion(self, principal: Principal, key_id: str) -> KmsKey:
        """A key pending deletion comes back disabled (as AWS KMS does)."""
        return await self._transition(
            principal,
            key_id,
            (KeyState.PENDING_DELETION,),
            "kms:CancelKeyDeletion",
            lambda key: replace(key, state=KeyState.DISABLED, deletion_date=None),
        )

    async def destroy(self, principal: Principal, key_id: str) -> KmsKey:
        """Crypto-shredding, now: every version's material is destroyed in the key manager,
        so no DEK it wrapped (hence no byte of those objects) can be recovered. Only a key
        pending deletion may be destroyed early."""
        key = await self._owned(principal, key_id)
        if key.state is not KeyState.PENDING_DELETION:
            raise errors.KmsInvalidState(
                f"{key.key_id} is {key.state.value}: schedule its deletion first."
            )
        return await self._shred(key, principal)

    async def _refuse_if_locked(self, key: KmsKey) -> None:
        """KmsInvalidState naming a bucket and a date when the key seals a version that
        object lock protects (COMPLIANCE retention or legal hold): destroying the key would
        destroy that version, which nobody may do before the date."""
        found = await self._store.locked_under_key(key.tenant, key.key_id, self._now())
        if found is None:
            return
        bucket, name, until = found
        why = (
            "under a legal hold"
            if until is None
            else f"under COMPLIANCE retention until {until.isoformat()}"
        )
        raise errors.KmsInvalidState(
            f"Key {key.key_id} seals object versions that object lock protects (in bucket "
            f"{bucket}, {name} is {why}): it cannot be scheduled for deletion or destroyed "
            "before then."
        )

    async def _shred(self, key: KmsKey, principal: Principal | None) -> KmsKey:
        await self._refuse_if_locked(key)
        # The key is pending deletion, so unusable everywhere already. Its material goes
        # first and the state after: if the manager fails half-way, the key stays pending and
        # the deletion job retries (destroying a handle twice is fine).
        manager = self._manager(key)
        for version in key.versions:
            await manager.destroy_key(version.handle)
        for _ in range(_CAS_ATTEMPTS):
            destroyed = replace(
                key, state=KeyState.DESTROYED, alias=None, deletion_date=self._now(), rewrap=None
            )
            if await self._store.update_kms_key(destroyed, expected=key):
                self._remember(destroyed)
                await self._event("kms:DestroyKey", destroyed, principal)
                return destroyed
            fresh = await self._store.get_kms_key(key.key_id)
            if fresh is None or fresh.state is KeyState.DESTROYED:
                raise errors.KmsInvalidState(f"{key.key_id} is already destroyed.")
            key = fresh
        raise errors.ServiceUnavailable("The key keeps changing; retry.")

    async def destroy_due(self) -> int:
        """Destroy keys whose waiting period is over (a background job); returns how many."""
        now = self._now()
        count = 0
        for key in await self._store.list_kms_keys(None):
            if (
                key.state is KeyState.PENDING_DELETION
                and key.deletion_date is not None
                and key.deletion_date <= now
            ):
                try:
                    await self._shred(key, None)
                except errors.KmsInvalidState as exc:
                    log.warning("key %s not destroyed: %s", key.key_id, exc.message)
                    continue
                count += 1
        return count

    async def _event(
        self, operation: str, key: KmsKey, principal: Principal | None, **details: str
    ) -> None:
        record = AuditRecord(
            kind="event",
            time=self._now(),
            face="kms",
            operation=operation,
            request_id=_request_id(),
            tenant=key.tenant,
            access_key_id=principal.access_key_id if principal else None,
            principal_tenant=principal.tenant if principal else None,
            details=(
                ("key_id", key.key_id),
                ("manager", key.manager),
                ("state", key.state.value),
                *details.items(),
            ),
        )
        await self._record_event(record)

    async def record_failure(self, operation: str, tenant: str, **details: str) -> None:
        """An event for the trail: e.g. stored data that failed authentication."""
        await self._record_event(
            AuditRecord(
                kind="event",
                time=self._now(),
                face="kms",
                operation=operation,
                request_id=_request_id(),
                tenant=tenant,
                details=tuple(details.items()),
            )
        )

    # --- data path -------------------------------------------------------------------------
    async def default_key(self, tenant: str) -> KmsKey:
        """The tenant's default KEK (SSE-S3, and writes without a header), made on first use."""
        key_id = self._defaults.get(tenant)
        if key_id is not None:
            key = await self._load(key_id)
            if key is not None and key.alias == DEFAULT_KEY_ALIAS:
                return key
        key = await self._store.get_kms_key_by_alias(tenant, DEFAULT_KEY_ALIAS)
        if key is None:
            try:
                key = await self._new_key(tenant, "default key", DEFAULT_KEY_ALIAS)
            except errors.KmsAliasExists:  # another gateway made it first
                key = await self._store.get_kms_key_by_alias(tenant, DEFAULT_KEY_ALIAS)
                if key is None:
                    raise
            else:
                await self._event("kms:CreateKey", key, None, alias=DEFAULT_KEY_ALIAS)
        self._defaults[tenant] = key.key_id
        self._remember(key)
        return key

    async def resolve(self, tenant: str, reference: str | None) -> KmsKey:
        """The KEK an SSE-KMS request names (None or ``alias/default``: the default key).
        A key of another tenant is AccessDenied."""
        key_id = parse_key_reference(reference) if reference else DEFAULT_KEY_ALIAS
        if key_id == DEFAULT_KEY_ALIAS:
            return await self.default_key(tenant)
        key = await self._load(key_id)
        if key is None:
            raise errors.KmsNotFound(f"Invalid keyId '{key_id}'")
        if key.tenant != tenant:
            raise errors.AccessDenied("The key belongs to another tenant.")
        return key

    async def wrap(self, key: KmsKey, dek: bytes, context: str) -> tuple[KekRef, bytes]:
        """Wrap a new DEK under the key's current version: the newest this process knows of,
        between ``key`` as given and its cached state (a job hands in a key fresher than the
        cache; a request, one that the cache may have seen rotated or disabled since)."""
        cached = await self._load(key.key_id)
        if cached is not None and cached.current.number >= key.current.number:
            key = cached
        check_usable(key)
        version = key.current
        aad = dek_aad(key.tenant, key.key_id, version.number, context)
        wrapped = await self._manager(key).wrap(version.handle, dek, aad)
        return KekRef(key.key_id, version.number), wrapped

    async def unwrap(self, tenant: str, kek: KekRef, wrapped: bytes, context: str) -> bytes:
        """The DEK of a stored blob, if its KEK is usable now."""
        key = await self._load(kek.key_id)
        if key is None:
            raise errors.KmsNotFound(f"The object's key {kek.key_id} does not exist.")
        if key.tenant != tenant:
            raise errors.AccessDenied("The object's key belongs to another tenant.")
        check_usable(key)  # before the cache: a cached DEK works only while its key does
        # The context too: a wrapped DEK opens only under the context it was bound to.
        entry = (kek.key_id, kek.version, wrapped, context)
        hit = self._deks.get(entry)
        if hit is not None:
            self._deks.move_to_end(entry)
            return hit
        version = key.version(kek.version)
        aad = dek_aad(tenant, key.key_id, version.number, context)
        try:
            dek = await self._manager(key).unwrap(version.handle, wrapped, aad)
        except errors.KmsNotFound as exc:  # destroyed through another process, not seen yet
            raise errors.KmsInvalidState(
                f"{key.key_id} is destroyed: its data cannot be recovered."
            ) from exc
        self._deks[entry] = dek
        while len(self._deks) > _DEK_CACHE_ENTRIES:
            self._deks.popitem(last=False)
        return dek

    async def rewrap(
        self, tenant: str, kek: KekRef, wrapped: bytes, context: str, target: KmsKey
    ) -> tuple[KekRef, bytes]:
        """Unwrap under an old version and wrap under ``target``'s current one."""
        dek = await self.unwrap(tenant, kek, wrapped, context)
        return await self.wrap(target, dek, context)

    async def save_progress(self, key: KmsKey, progress: RewrapProgress) -> KmsKey | None:
        """Record re-wrap progress on the key (what ``describe`` shows). None when the key
        moved on meanwhile (rotated again, disabled, destroyed): the job then stops, and a
        newer rotation's re-wrap takes over."""
        for _ in range(_CAS_ATTEMPTS):
            fresh = await self._store.get_kms_key(key.key_id)
            if (
                fresh is None
                or fresh.state is not KeyState.ENABLED
                or fresh.rewrap is None
                or fresh.rewrap.target_version != progress.target_version
            ):
                return None
            updated = replace(fresh, rewrap=progress)
            if await self._store.update_kms_key(updated, expected=fresh):
                self._remember(updated)
                return updated
        return None

    async def keys_to_rewrap(self) -> builtins.list[KmsKey]:
        """Keys with a re-wrap not finished yet."""
        return [
            k
            for k in await self._store.list_kms_keys(None)
            if k.rewrap is not None and not k.rewrap.done and k.state is KeyState.ENABLED
        ]

    async def close(self) -> None:
        """Close the key managers."""
        for manager in self._managers.values():
            await manager.close()
