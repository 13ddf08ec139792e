"""The S3 ASGI application: request id → route → authenticate → handler → response."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import secrets
from dataclasses import dataclass

from andromede import http_errors
from andromede.auth.sigv4 import SignedRequest, authenticate
from andromede.core import errors
from andromede.core.limits import MAX_HEADER_SECTION
from andromede.s3 import xml
from andromede.s3.handlers import HANDLERS, Context
from andromede.s3.http import Receive, Request, Response, Scope, Send, build_request, send_response
from andromede.s3.router import resolve
from andromede.services.container import Services

log = logging.getLogger("andromede.s3")


@dataclass(frozen=True)
class S3Config:
    """What the S3 face needs to know of the settings."""

    region: str
    domain: str | None
    max_clock_skew: dt.timedelta = dt.timedelta(minutes=15)


def _request_id() -> str:
    return secrets.token_hex(8).upper()


def error_response(exc: errors.AndromedeError, req_resource: str, request_id: str) -> Response:
    """The S3 XML error document for a domain error."""
    code, status = http_errors.lookup(exc)
    if status == 304:
        return Response(304)
    message = (
        exc.message if status != 500 else "We encountered an internal error. Please try again."
    )
    children = [xml.element("Code", code), xml.element("Message", message)]
    if status != 500:
        children += [xml.element(k, v) for k, v in exc.details.items()]
    children += [xml.element("Resource", req_resource), xml.element("RequestId", request_id)]
    body = xml.document("Error", children, namespace=False)
    response = Response(status, [("content-type", "application/xml")], body)
    if code == "MethodNotAllowed":
        response.header("allow", "GET, HEAD, PUT, POST, DELETE")
    return response


class S3App:
    """ASGI callable serving the S3 API over a :class:`Services` bundle."""

    def __init__(self, services: Services, config: S3Config) -> None:
        self.services = services
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point (http only; lifespan is handled by the composing app)."""
        request_id = _request_id()
        head_only = scope.get("method") == "HEAD"
        resource = scope.get("path", "/")
        req: Request | None = None
        try:
            req = build_request(scope, receive, request_id, self.config.domain)
            response = await self._handle(req)
        except errors.AndromedeError as exc:
            response = error_response(exc, resource, request_id)
        except Exception:
            log.exception("internal error (request %s)", request_id)
            response = error_response(errors.AndromedeError(), resource, request_id)
        self._common_headers(response, request_id)
        if req is not None and req.body_unread():
            # A client that sent Expect: 100-continue never sends the body we refused; one that
            # did is mid-body. Either way the next bytes on this connection are not a request.
            response.header("connection", "close")
        try:
            await send_response(send, response, head_only)
        except errors.AndromedeError as exc:
            # The status line may be out already: all we can do is cut the connection, which
            # the client sees as a short read, never as wrong bytes.
            log.warning("response aborted (request %s): %s", request_id, exc)
            raise
        except Exception:
            log.exception("response aborted (request %s)", request_id)
            raise

    @staticmethod
    def _common_headers(response: Response, request_id: str) -> None:
        response.header("x-amz-request-id", request_id)
        response.header("x-amz-id-2", request_id)
        response.header("server", "Andromede")
        response.header("date", email.utils.formatdate(usegmt=True))

    async def _handle(self, req: Request) -> Response:
        size = sum(len(k) + len(v) + 4 for k, v in req.header_list)
        if size > MAX_HEADER_SECTION:
            raise errors.RequestHeaderSectionTooLarge(MaxSizeAllowed=str(MAX_HEADER_SECTION))
        endpoint = resolve(req.method, req.bucket, req.key, req.query, req.headers)
        if endpoint is None:
            raise errors.MethodNotAllowed(Method=req.method, ResourceType="OBJECT")
        auth = await authenticate(
            SignedRequest(req.method, req.raw_path, req.query_string, req.header_list),
            self._lookup_secret,
            dt.datetime.now(dt.UTC),
            self.config.max_clock_skew,
        )
        principal = await self.services.accounts.principal_for(auth.access_key_id)
        handler = HANDLERS.get(endpoint)
        if handler is None:
            raise errors.NotImplementedOperation(Operation=endpoint.value)
        ctx = Context(req, principal, auth, self.services, self.config.region)
        return await handler(ctx)

    async def _lookup_secret(self, access_key_id: str) -> str | None:
        key = await self.services.accounts.lookup(access_key_id)
        return key.secret_key if key is not None else None
