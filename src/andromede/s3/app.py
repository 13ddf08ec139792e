"""The S3 ASGI application: request id → route → authenticate → handler → response."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass

from andromede import asgi, http_errors
from andromede.asgi import Receive, Scope, Send
from andromede.auth.sigv4 import SignedRequest, authenticate
from andromede.core import audit, errors
from andromede.core.audit import RequestTrace
from andromede.core.limits import MAX_HEADER_SECTION
from andromede.ports import AuditSink
from andromede.s3 import audit as face_audit
from andromede.s3 import xml
from andromede.s3.handlers import HANDLERS, Context
from andromede.s3.headers import http_now
from andromede.s3.http import Request, Response, build_request, send_response
from andromede.s3.router import resolve
from andromede.services.container import Services

log = logging.getLogger("andromede.s3")


@dataclass(frozen=True)
class S3Config:
    """What the S3 face needs to know of the settings."""

    region: str
    domain: str | None
    max_clock_skew: dt.timedelta = dt.timedelta(minutes=15)
    # S3 closes a connection whose body stalls for about 20 seconds.
    body_idle_timeout: float = 20.0


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
    for name, value in exc.headers:
        response.header(name, value)
    return response


async def _first_chunk_read(response: Response) -> Response:
    """Read a streamed body's first chunk now: a read that fails at once (missing or corrupt
    data) becomes an error response, and the audit record, written before the response
    starts, says so rather than 200."""
    body = response.body
    if isinstance(body, bytes) or response.status in (204, 304):
        return response
    try:
        response.first_chunk = await anext(body, b"")
    except BaseException:
        await body.aclose()
        raise
    return response


class S3App:
    """ASGI callable serving the S3 API over a :class:`Services` bundle."""

    def __init__(self, services: Services, config: S3Config, audit_sink: AuditSink) -> None:
        self.services = services
        self.config = config
        self.audit = audit_sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point (http only; lifespan is handled by the composing app)."""
        request_id = _request_id()
        trace = face_audit.open_trace(scope, request_id)
        token = audit.begin(trace)
        try:
            await self._serve(scope, receive, send, trace)
        finally:
            audit.end(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, trace: RequestTrace) -> None:
        request_id = trace.request_id
        head_only = scope.get("method") == "HEAD"
        resource = asgi.text(scope, "path", "/")
        req: Request | None = None
        failure: errors.AndromedeError | None = None
        try:
            req = build_request(
                scope, receive, request_id, self.config.domain, self.config.body_idle_timeout
            )
            response = await self._handle(req, trace)
        except errors.AndromedeError as exc:
            failure = exc
        except Exception:
            log.exception("internal error (request %s)", request_id)
            failure = errors.AndromedeError()
        if failure is None and not head_only:
            try:
                response = await _first_chunk_read(response)
            except errors.AndromedeError as exc:
                failure = exc
        if failure is not None:
            response = error_response(failure, resource, request_id)
        if not isinstance(failure, errors.AuditUnavailable):
            response = await self._record(trace, req, response, failure, head_only, resource)
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

    async def _record(
        self,
        trace: RequestTrace,
        req: Request | None,
        response: Response,
        failure: errors.AndromedeError | None,
        head_only: bool,
        resource: str,
    ) -> Response:
        """Make the request's audit record durable; if that fails, the answer is a 503."""
        trace.bytes_in = req.bytes_received if req is not None else 0
        if trace.version_id is None:
            trace.version_id = face_audit.version_of(response)
        code = http_errors.lookup(failure)[0] if failure is not None else None
        record = audit.record_of(
            trace, response.status, code, face_audit.bytes_out(response, head_only)
        )
        try:
            await self.audit.record(record)
        except errors.AuditUnavailable as exc:
            if not isinstance(response.body, bytes):
                await response.body.aclose()
            return error_response(exc, resource, trace.request_id)
        return response

    @staticmethod
    def _common_headers(response: Response, request_id: str) -> None:
        response.header("x-amz-request-id", request_id)
        response.header("x-amz-id-2", request_id)
        response.header("server", "Andromede")
        response.header("date", http_now())

    async def _handle(self, req: Request, trace: RequestTrace) -> Response:
        if not self.audit.healthy():
            raise errors.AuditUnavailable()
        trace.bucket, trace.key = req.bucket, req.key
        size = sum(len(k) + len(v) + 4 for k, v in req.header_list)
        if size > MAX_HEADER_SECTION:
            raise errors.RequestHeaderSectionTooLarge(MaxSizeAllowed=str(MAX_HEADER_SECTION))
        endpoint = resolve(req.method, req.bucket, req.key, req.query, req.headers)
        if endpoint is None:
            raise errors.MethodNotAllowed(Method=req.method, ResourceType="OBJECT")
        trace.operation = endpoint.value
        auth = await authenticate(
            SignedRequest(req.method, req.raw_path, req.query_string, req.header_list),
            self._lookup_secret,
            dt.datetime.now(dt.UTC),
            self.config.max_clock_skew,
        )
        principal = await self.services.accounts.principal_for(auth.access_key_id)
        face_audit.authenticated(trace, principal)
        handler = HANDLERS.get(endpoint)
        if handler is None:
            raise errors.NotImplementedOperation(Operation=endpoint.value)
        ctx = Context(req, principal, auth, self.services, self.config.region)
        return await handler(ctx)

    async def _lookup_secret(self, access_key_id: str) -> str | None:
        key = await self.services.accounts.lookup(access_key_id)
        return key.secret_key if key is not None else None
