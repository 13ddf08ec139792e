"""Tenant key-encryption keys (KEKs) over the admin API: create, rotate, disable, destroy.

Operators manage every tenant's keys; a tenant's own access keys manage that tenant's (see
:class:`andromede.services.keys.Keys`, which decides). The key manager's handle for a key's
material never leaves the server: versions show their number and date only.

The route functions' names give the audit trail its operation names (``create_kms_key`` is
``admin:CreateKmsKey``); "Kms" keeps them apart from the access-key routes' ``admin:CreateKey``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from andromede.admin.deps import API_VERSION, Caller, services_of
from andromede.core.keys import (
    DEFAULT_KEY_ALIAS,
    MAX_DELETION_DAYS,
    MIN_DELETION_DAYS,
    KeyState,
    KmsKey,
    RewrapProgress,
)
from andromede.services.keys import Keys

KEYS = f"/{API_VERSION}/kms/keys"
KEY = KEYS + "/{key_id}"

router = APIRouter()


class KmsKeyIn(BaseModel):
    """A key to create."""

    tenant: str | None = Field(
        default=None,
        description="Tenant that owns the key; the caller's own tenant when omitted",
    )
    description: str = Field(default="", description="Free text")


class DeletionIn(BaseModel):
    """When to destroy a key."""

    # Not bounded here: the service refuses a window out of range with InvalidArgument (400),
    # as AWS KMS does, where a schema bound would answer FastAPI's 422.
    days: int = Field(
        default=MAX_DELETION_DAYS,
        description=(
            f"Waiting period before the key is destroyed, {MIN_DELETION_DAYS} to "
            f"{MAX_DELETION_DAYS} days"
        ),
    )


class KeyVersionOut(BaseModel):
    """One generation of a key's material."""

    number: int = Field(description="1 for the material the key was created with, then +1")
    created: dt.datetime = Field(description="When this version was made")


class RewrapOut(BaseModel):
    """The background re-wrap of the key's data keys under its current version."""

    target_version: int = Field(description="The version data keys are re-wrapped under")
    scanned: int = Field(
        description="Data keys examined by the latest pass (one per sealed object or part)"
    )
    rewrapped: int = Field(description="Data keys re-wrapped so far")
    done: bool = Field(description="Every data key of the key is under target_version")
    started: dt.datetime | None = Field(description="When the re-wrap began")
    finished: dt.datetime | None = Field(description="When it ended; null while running")


class KmsKeyOut(BaseModel):
    """A tenant's key-encryption key (metadata only: its material stays in the key manager)."""

    key_id: str = Field(description="The key's id (a UUID)")
    arn: str = Field(
        description="The ARN S3 clients see in x-amz-server-side-encryption-aws-kms-key-id"
    )
    tenant: str = Field(description="The tenant that owns the key")
    alias: str | None = Field(
        description=f"'{DEFAULT_KEY_ALIAS}' for the tenant's default key (SSE-S3), else null"
    )
    manager: str = Field(description="The key manager holding the material")
    state: KeyState = Field(
        description=(
            "Enabled; Disabled (no encryption nor decryption); PendingDeletion (unusable, "
            "destroyed at deletion_date unless cancelled); Destroyed (its data is unreadable)"
        )
    )
    description: str = Field(description="Free text")
    created: dt.datetime = Field(description="When the key was created")
    current_version: int | None = Field(
        description="The version new data keys are wrapped under; null once destroyed"
    )
    versions: list[KeyVersionOut] = Field(description="Every version still held, oldest first")
    deletion_date: dt.datetime | None = Field(
        description="When a key pending deletion is destroyed; null otherwise"
    )
    rewrap: RewrapOut | None = Field(
        description="Progress of the re-wrap started by the last rotation; null if none"
    )


class KmsErrorOut(BaseModel):
    """A refused request."""

    code: str = Field(description="The error code, as AWS KMS and S3 name them")
    message: str = Field(description="What went wrong")


_ERRORS: dict[int | str, dict[str, object]] = {
    400: {
        "model": KmsErrorOut,
        "description": (
            "KMS.NotFoundException (no such key), KMS.KMSInvalidStateException or "
            "KMS.DisabledException (the key's state forbids this), InvalidArgument"
        ),
    },
    403: {"model": KmsErrorOut, "description": "AccessDenied: another tenant's key"},
    503: {"model": KmsErrorOut, "description": "ServiceUnavailable: the key manager is down"},
}


def _rewrap(progress: RewrapProgress | None) -> RewrapOut | None:
    if progress is None:
        return None
    return RewrapOut(
        target_version=progress.target_version,
        scanned=progress.scanned,
        rewrapped=progress.rewrapped,
        done=progress.done,
        started=progress.started,
        finished=progress.finished,
    )


def kms_key_out(key: KmsKey, region: str) -> KmsKeyOut:
    """The API's view of ``key``: every field but the versions' key-manager handles."""
    return KmsKeyOut(
        key_id=key.key_id,
        arn=key.arn(region),
        tenant=key.tenant,
        alias=key.alias,
        manager=key.manager,
        state=key.state,
        description=key.description,
        created=key.created,
        current_version=key.current.number if key.versions else None,
        versions=[KeyVersionOut(number=v.number, created=v.created) for v in key.versions],
        deletion_date=key.deletion_date,
        rewrap=_rewrap(key.rewrap),
    )


# Module level for the same reason as ``Caller`` in admin/deps.py.
KeyId = Annotated[str, Path(description="The key's id (a UUID)")]
TenantFilter = Annotated[
    str | None,
    Query(description="Only this tenant's keys; an operator sees every tenant's without it"),
]


def _keys(request: Request) -> Keys:
    return services_of(request).keys


KeysDep = Annotated[Keys, Depends(_keys)]


@router.get(KEYS, response_model=list[KmsKeyOut], responses=_ERRORS)
async def list_kms_keys(
    caller: Caller, keys: KeysDep, tenant: TenantFilter = None
) -> list[KmsKeyOut]:
    """Keys of one tenant (the caller's own when the caller is not an operator)."""
    return [kms_key_out(k, keys.region) for k in await keys.list(caller, tenant)]


@router.post(KEYS, response_model=KmsKeyOut, status_code=201, responses=_ERRORS)
async def create_kms_key(caller: Caller, keys: KeysDep, body: KmsKeyIn | None = None) -> KmsKeyOut:
    """A new key, Enabled, at version 1."""
    body = body or KmsKeyIn()
    return kms_key_out(await keys.create(caller, body.tenant, body.description), keys.region)


@router.get(KEY, response_model=KmsKeyOut, responses=_ERRORS)
async def describe_kms_key(caller: Caller, keys: KeysDep, key_id: KeyId) -> KmsKeyOut:
    """One key."""
    return kms_key_out(await keys.describe(caller, key_id), keys.region)


@router.post(KEY + "/rotate", response_model=KmsKeyOut, responses=_ERRORS)
async def rotate_kms_key(caller: Caller, keys: KeysDep, key_id: KeyId) -> KmsKeyOut:
    """New material (the next version) for new data keys; the existing data keys are
    re-wrapped under it in the background (see ``rewrap``)."""
    return kms_key_out(await keys.rotate(caller, key_id), keys.region)


@router.post(KEY + "/disable", response_model=KmsKeyOut, responses=_ERRORS)
async def disable_kms_key(caller: Caller, keys: KeysDep, key_id: KeyId) -> KmsKeyOut:
    """Refuse every read and write of data under the key until it is enabled again."""
    return kms_key_out(await keys.disable(caller, key_id), keys.region)


@router.post(KEY + "/enable", response_model=KmsKeyOut, responses=_ERRORS)
async def enable_kms_key(caller: Caller, keys: KeysDep, key_id: KeyId) -> KmsKeyOut:
    """Make a disabled key usable again."""
    return kms_key_out(await keys.enable(caller, key_id), keys.region)


@router.post(KEY + "/schedule-deletion", response_model=KmsKeyOut, responses=_ERRORS)
async def schedule_kms_key_deletion(
    caller: Caller, keys: KeysDep, key_id: KeyId, body: DeletionIn | None = None
) -> KmsKeyOut:
    """Make the key unusable now, and destroy it after the waiting period."""
    days = (body or DeletionIn()).days
    return kms_key_out(await keys.schedule_deletion(caller, key_id, days), keys.region)


@router.post(KEY + "/cancel-deletion", response_model=KmsKeyOut, responses=_ERRORS)
async def cancel_kms_key_deletion(caller: Caller, keys: KeysDep, key_id: KeyId) -> KmsKeyOut:
    """Keep a key pending deletion after all."""
    return kms_key_out(await keys.cancel_deletion(caller, key_id), keys.region)


@router.post(KEY + "/destroy", response_model=KmsKeyOut, responses=_ERRORS)
async def destroy_kms_key(caller: Caller, keys: KeysDep, key_id: KeyId) -> KmsKeyOut:
    """Destroy a key pending deletion now: its material is erased and every object under
    it becomes unreadable, irreversibly (crypto-shredding)."""
    return kms_key_out(await keys.destroy(caller, key_id), keys.region)
