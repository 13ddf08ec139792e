"""Tenant isolation. Operators administer the platform; they do not read tenants' data."""

from __future__ import annotations

from andromede.core import audit, errors
from andromede.core.models import Bucket, ObjectVersion, Principal


def authorize_bucket(principal: Principal, bucket: Bucket) -> None:
    """Only the owning tenant's keys act on a bucket and its objects."""
    audit.note_owner(bucket.tenant)
    if bucket.tenant != principal.tenant:
        raise errors.AccessDenied()


def authorize_object(principal: Principal, version: ObjectVersion) -> None:
    """An object version belongs to its bucket's tenant (``owner``)."""
    audit.note_owner(version.owner)
    if version.owner != principal.tenant:
        raise errors.AccessDenied()


def require_operator(principal: Principal) -> None:
    """Platform administration is for operator keys."""
    if not principal.is_operator:
        raise errors.AccessDenied("This operation requires operator credentials.")


def authorize_tenant(principal: Principal, tenant: str) -> None:
    """A tenant's own keys, or an operator, may manage a tenant's keys."""
    audit.note_owner(tenant)
    if not principal.is_operator and principal.tenant != tenant:
        raise errors.AccessDenied()
