"""Admin REST API, mounted under a path prefix on the gateway's listener.

Requests are signed with SigV4 using the same access keys as S3 (any service name in the
scope); the CLI signs them with botocore. The routes live in one router per area
(``*_routes.py``); they reach the services and the caller through ``admin/deps.py``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from andromede.admin.account_routes import router as account_router
from andromede.admin.audit_routes import router as audit_router
from andromede.admin.deps import API_VERSION
from andromede.admin.jobs_routes import router as jobs_router
from andromede.admin.kms_routes import router as kms_router
from andromede.admin.placement_routes import router as placement_router
from andromede.core import errors
from andromede.http_errors import lookup
from andromede.services.container import Services


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

    app.state.services = services  # read back by admin.deps.services_of

    @app.exception_handler(errors.AndromedeError)
    async def domain_error(_: Request, exc: errors.AndromedeError) -> JSONResponse:
        code, status = lookup(exc)
        message = exc.message if status != 500 else "internal error"
        return JSONResponse(
            {"code": code, "message": message},
            status_code=status,
            headers={"x-andromede-error-code": code},
        )

    _ = domain_error
    # In the order the OpenAPI document has always listed them.
    for router in (account_router, audit_router, kms_router, placement_router, jobs_router):
        app.include_router(router)
    return app
