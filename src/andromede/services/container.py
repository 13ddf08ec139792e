"""The services one gateway runs, built by bootstrap and handed to the faces."""

from __future__ import annotations

from dataclasses import dataclass

from andromede.services.accounts import Accounts
from andromede.services.audit import AuditLog
from andromede.services.buckets import Buckets
from andromede.services.encryption import Encryption
from andromede.services.jobs import Jobs
from andromede.services.keys import Keys
from andromede.services.lifecycle import Lifecycle
from andromede.services.locks import Locks
from andromede.services.multipart import Multipart
from andromede.services.objects import Objects
from andromede.services.placement import Placement
from andromede.services.repair import Repairs
from andromede.services.residency import Residency


@dataclass(frozen=True)
class Services:
    """Every use case, by area."""

    accounts: Accounts
    buckets: Buckets
    objects: Objects
    multipart: Multipart
    audit: AuditLog
    keys: Keys
    encryption: Encryption
    placement: Placement
    repairs: Repairs
    residency: Residency
    jobs: Jobs
    locks: Locks
    lifecycle: Lifecycle
