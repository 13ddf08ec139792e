"""The background jobs over the admin API: which gateway process runs each (operators only)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel, Field

from andromede.admin.deps import API_VERSION, Caller, ServicesDep

router = APIRouter()


class JobOut(BaseModel):
    """A background job's lease."""

    job: str
    holder: str = Field(description="The process holding the lease: host:pid:random")
    epoch: int = Field(description="1 for the first holder, one more at each takeover")
    expires: dt.datetime
    running: bool = Field(
        description="The lease is held now; false: it expired, and the job waits for the "
        "next process to take it (within a third of job_lease_seconds)"
    )
    progress: dict[str, object] | None = Field(
        default=None,
        description="What the job's current or last pass has done, where it saves it (the "
        "lifecycle job: bucket and key reached, versions expired, uploads aborted...)",
    )


@router.get(f"/{API_VERSION}/jobs", response_model=list[JobOut])
async def list_jobs(caller: Caller, services: ServicesDep) -> list[JobOut]:
    views = await services.jobs.leases(caller)
    return [
        JobOut(
            job=v.lease.job,
            holder=v.lease.holder,
            epoch=v.lease.epoch,
            expires=v.lease.expires,
            running=v.running,
            progress=v.progress,
        )
        for v in views
    ]
