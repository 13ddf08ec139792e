"""Sites, regions, repair and proof of residency over the admin API.

Sites and regions are the operator's; a residency report is the operator's or the bucket's
own tenant's. Route function names give the audit trail its operation names
(``add_site`` is ``admin:AddSite``).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from andromede.admin.deps import API_VERSION, Caller, ServicesDep
from andromede.core import errors
from andromede.core.locations import RadosLocation
from andromede.core.placement import Region, Site
from andromede.core.repair import DrainProgress, RepairTotals, ScrubState
from andromede.services.placement import SiteView
from andromede.services.repair import RepairStatus
from andromede.services.residency import report_document

router = APIRouter()


class SiteIn(BaseModel):
    """A site to register: a local directory, or a Ceph pool."""

    name: str = Field(description="1-32 of lowercase letters, digits, '-'")
    jurisdiction: str = Field(description="ISO 3166-1 alpha-2 country code, e.g. FR")
    failure_domain: str = Field(description="Sites sharing a failure domain can fail together")
    provider: str = Field(default="self", description="Who operates the site")
    backend: Literal["local", "rados"] = Field(default="local", description="local or rados")
    path: str | None = Field(default=None, description="local: absolute directory on the hosts")
    ceph_conf: str | None = Field(
        default=None, description="rados: the cluster's ceph.conf on the gateway hosts"
    )
    pool: str | None = Field(default=None, description="rados: the pool")
    ceph_user: str = Field(default="admin", description="rados: cephx user, without client.")
    namespace: str = Field(default="", description="rados: a RADOS namespace of the pool")

    def location(self) -> str:
        """Where the site's bytes live, as the registry writes it (``core/locations.py``)."""
        if self.backend == "local":
            if self.path is None or self.pool is not None or self.ceph_conf is not None:
                raise errors.InvalidArgument("A local site takes a path (and no pool).")
            return self.path
        if self.path is not None or not self.pool or not self.ceph_conf:
            raise errors.InvalidArgument("A rados site takes a pool and a ceph_conf (no path).")
        return str(RadosLocation(self.pool, self.ceph_conf, self.ceph_user, self.namespace))


class SiteOut(BaseModel):
    """A site and how it is doing."""

    name: str
    jurisdiction: str
    failure_domain: str
    provider: str
    path: str = Field(description="Where the bytes live: a directory, or rados:POOL?...")
    backend: str = Field(description="local or rados")
    state: str = Field(description="active, or draining")
    available: bool | None = None
    problem: str | None = Field(default=None, description="Why the site is unavailable")
    used_bytes: int | None = None
    free_bytes: int | None = None
    shards: int | None = Field(default=None, description="Blobs with a shard on the site")
    drain: dict[str, object] | None = Field(default=None, description="Drain progress")


class RegionIn(BaseModel):
    """A residency policy."""

    name: str = Field(description="Usable as a bucket's LocationConstraint")
    jurisdictions: list[str] = Field(description="Allowed ISO 3166-1 alpha-2 codes")
    redundancy: str = Field(description="replicas:N or ec:K+M")
    min_failure_domains: int = Field(default=1, description="Distinct failure domains a blob spans")


class RegionOut(BaseModel):
    """A residency policy."""

    name: str
    jurisdictions: list[str]
    redundancy: str
    min_failure_domains: int


def _site(site: Site, view: SiteView | None = None) -> SiteOut:
    out = SiteOut(
        name=site.name,
        jurisdiction=site.jurisdiction,
        failure_domain=site.failure_domain,
        provider=site.provider,
        path=site.path,
        backend="local" if RadosLocation.parse(site.path) is None else "rados",
        state=site.state.value,
    )
    if view is not None:
        out.available = view.available
        out.problem = view.problem
        out.used_bytes, out.free_bytes = view.used_bytes, view.free_bytes
        out.shards = view.shards
        out.drain = None if view.progress is None else _drain(view.progress)
    return out


# The JSON of the repair jobs' records. The metadata store happens to keep the same shapes
# (metadata/records.py), but this is the API's contract and changes only with its version:
# a drain's keys in the order the job fills them, the jobs' states with sorted keys, a scrub
# counter left out until it is first counted.


def _drain(progress: DrainProgress) -> dict[str, object]:
    out: dict[str, object] = {"state": progress.state.value, "moved": progress.moved}
    if progress.failed is not None:
        out["failed"] = progress.failed
    out["blocked"] = list(progress.blocked)
    if progress.remaining is not None:
        out["remaining"] = progress.remaining
    if progress.updated is not None:
        out["updated"] = progress.updated.isoformat()
    return out


def _scrub(state: ScrubState | None) -> dict[str, object]:
    if state is None:
        return {}
    out: dict[str, object] = {
        "blob_id": state.blob_id,
        "bytes_checked": state.bytes_checked,
    }
    counters = {"passes": state.passes, "checked": state.checked, "found_bad": state.found_bad}
    counters.update((o.value, n) for o, n in state.outcomes.items())
    out.update((k, n) for k, n in counters.items() if n)
    if state.last_pass_finished is not None:
        out["last_pass_finished"] = state.last_pass_finished.isoformat()
    return dict(sorted(out.items()))


def _repair_totals(totals: RepairTotals | None) -> dict[str, object]:
    if totals is None:
        return {}
    out: dict[str, object] = {"bytes_rebuilt": totals.bytes_rebuilt}
    out.update((o.value, n) for o, n in totals.outcomes.items())
    if totals.updated is not None:
        out["updated"] = totals.updated.isoformat()
    return dict(sorted(out.items()))


def _repair_status(status: RepairStatus) -> dict[str, object]:
    return {
        "degraded_blobs": status.degraded_blobs,
        "bytes_at_risk": status.bytes_at_risk,
        "scrub": _scrub(status.scrub),
        "repair": _repair_totals(status.repair),
        "drains": {site: _drain(p) for site, p in status.drains.items()},
    }


def _region(region: Region) -> RegionOut:
    return RegionOut(
        name=region.name,
        jurisdictions=region.jurisdiction_list(),
        redundancy=str(region.redundancy),
        min_failure_domains=region.min_failure_domains,
    )


@router.post(f"/{API_VERSION}/sites", response_model=SiteOut, status_code=201)
async def add_site(body: SiteIn, caller: Caller, services: ServicesDep) -> SiteOut:
    site = await services.placement.add_site(
        caller, body.name, body.jurisdiction, body.failure_domain, body.provider, body.location()
    )
    return _site(site)


@router.get(f"/{API_VERSION}/sites", response_model=list[SiteOut])
async def list_sites(caller: Caller, services: ServicesDep) -> list[SiteOut]:
    return [_site(v.site, v) for v in await services.placement.list_sites(caller)]


@router.post(f"/{API_VERSION}/sites/{{name}}/drain", response_model=SiteOut)
async def drain_site(name: str, caller: Caller, services: ServicesDep) -> SiteOut:
    return _site(await services.placement.drain_site(caller, name))


@router.delete(f"/{API_VERSION}/sites/{{name}}", status_code=204)
async def remove_site(name: str, caller: Caller, services: ServicesDep) -> Response:
    await services.placement.remove_site(caller, name)
    return Response(status_code=204)


@router.post(f"/{API_VERSION}/regions", response_model=RegionOut, status_code=201)
async def add_region(body: RegionIn, caller: Caller, services: ServicesDep) -> RegionOut:
    region = await services.placement.add_region(
        caller, body.name, body.jurisdictions, body.redundancy, body.min_failure_domains
    )
    return _region(region)


@router.get(f"/{API_VERSION}/regions", response_model=list[RegionOut])
async def list_regions(caller: Caller, services: ServicesDep) -> list[RegionOut]:
    return [_region(r) for r in await services.placement.list_regions(caller)]


@router.get(f"/{API_VERSION}/repair")
async def repair_status(caller: Caller, services: ServicesDep) -> dict[str, object]:
    return _repair_status(await services.repairs.status(caller))


@router.post(f"/{API_VERSION}/repair/run")
async def run_repair(caller: Caller, services: ServicesDep) -> dict[str, object]:
    """Run one round now (queued repairs, drains, a full scrub pass) and return the
    status afterwards."""
    await services.repairs.run_now(caller)
    return _repair_status(await services.repairs.status(caller))


@router.get(f"/{API_VERSION}/residency/public-key")
async def residency_public_key(caller: Caller, services: ServicesDep) -> Response:
    del caller
    return Response(services.residency.public_pem, media_type="application/x-pem-file")


@router.get(f"/{API_VERSION}/residency/{{bucket}}")
async def residency_report(bucket: str, caller: Caller, services: ServicesDep) -> dict[str, object]:
    return report_document(await services.residency.report(caller, bucket))
