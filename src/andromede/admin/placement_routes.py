"""Sites, regions, repair and proof of residency over the admin API.

Sites and regions are the operator's; a residency report is the operator's or the bucket's
own tenant's. Route function names give the audit trail its operation names
(``add_site`` is ``admin:AddSite``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

from andromede.admin.app import API_VERSION, Caller
from andromede.core.placement import Region, Site
from andromede.services.container import Services
from andromede.services.placement import SiteView


class SiteIn(BaseModel):
    """A local-directory site to register."""

    name: str = Field(description="1-32 of lowercase letters, digits, '-'")
    jurisdiction: str = Field(description="ISO 3166-1 alpha-2 country code, e.g. FR")
    failure_domain: str = Field(description="Sites sharing a failure domain can fail together")
    provider: str = Field(default="self", description="Who operates the site")
    path: str = Field(description="Absolute directory on the gateway hosts")


class SiteOut(BaseModel):
    """A site and how it is doing."""

    name: str
    jurisdiction: str
    failure_domain: str
    provider: str
    path: str
    state: str = Field(description="active, or draining")
    available: bool | None = None
    used_bytes: int | None = None
    free_bytes: int | None = None
    shards: int | None = Field(default=None, description="Blobs with a shard on the site")
    drain: dict[str, Any] | None = Field(default=None, description="Drain progress")


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
        state=site.state.value,
    )
    if view is not None:
        out.available = view.available
        out.used_bytes, out.free_bytes = view.used_bytes, view.free_bytes
        out.shards, out.drain = view.shards, view.progress
    return out


def _region(region: Region) -> RegionOut:
    return RegionOut(
        name=region.name,
        jurisdictions=region.jurisdiction_list(),
        redundancy=str(region.redundancy),
        min_failure_domains=region.min_failure_domains,
    )


def register_placement_routes(app: FastAPI, services: Services) -> None:
    """Add the placement routes to the admin app."""
    placement = services.placement

    @app.post(f"/{API_VERSION}/sites", response_model=SiteOut, status_code=201)
    async def add_site(body: SiteIn, caller: Caller) -> SiteOut:
        site = await placement.add_site(
            caller, body.name, body.jurisdiction, body.failure_domain, body.provider, body.path
        )
        return _site(site)

    @app.get(f"/{API_VERSION}/sites", response_model=list[SiteOut])
    async def list_sites(caller: Caller) -> list[SiteOut]:
        return [_site(v.site, v) for v in await placement.list_sites(caller)]

    @app.post(f"/{API_VERSION}/sites/{{name}}/drain", response_model=SiteOut)
    async def drain_site(name: str, caller: Caller) -> SiteOut:
        return _site(await placement.drain_site(caller, name))

    @app.delete(f"/{API_VERSION}/sites/{{name}}", status_code=204)
    async def remove_site(name: str, caller: Caller) -> Response:
        await placement.remove_site(caller, name)
        return Response(status_code=204)

    @app.post(f"/{API_VERSION}/regions", response_model=RegionOut, status_code=201)
    async def add_region(body: RegionIn, caller: Caller) -> RegionOut:
        region = await placement.add_region(
            caller, body.name, body.jurisdictions, body.redundancy, body.min_failure_domains
        )
        return _region(region)

    @app.get(f"/{API_VERSION}/regions", response_model=list[RegionOut])
    async def list_regions(caller: Caller) -> list[RegionOut]:
        return [_region(r) for r in await placement.list_regions(caller)]

    @app.get(f"/{API_VERSION}/repair")
    async def repair_status(caller: Caller) -> dict[str, Any]:
        return await services.repairs.status(caller)

    @app.post(f"/{API_VERSION}/repair/run")
    async def run_repair(caller: Caller) -> dict[str, Any]:
        """Run one round now (queued repairs, drains, a full scrub pass) and return the
        status afterwards."""
        await services.repairs.run_now(caller)
        return await services.repairs.status(caller)

    @app.get(f"/{API_VERSION}/residency/public-key")
    async def residency_public_key(caller: Caller) -> Response:
        del caller
        return Response(services.residency.public_pem, media_type="application/x-pem-file")

    @app.get(f"/{API_VERSION}/residency/{{bucket}}")
    async def residency_report(bucket: str, caller: Caller) -> dict[str, Any]:
        return await services.residency.report(caller, bucket)

    _ = (
        add_site,
        list_sites,
        drain_site,
        remove_site,
        add_region,
        list_regions,
        repair_status,
        run_repair,
        residency_public_key,
        residency_report,
    )
