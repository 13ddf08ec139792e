"""Every admin API request leaves an audit record before its response starts.

A plain ASGI wrapper (not Starlette's BaseHTTPMiddleware): it holds back
``http.response.start`` until the record is durable. If the trail cannot be written the caller
gets a 503 instead, and the rest of the real response is dropped. The authentication
dependency fills the trace's principal; the error handler names the error code in the
``x-andromede-error-code`` header, which this wrapper reads and removes.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Final

from andromede import asgi
from andromede.asgi import App, Message, Receive, Scope, Send
from andromede.core import audit, errors
from andromede.core.audit import RequestTrace
from andromede.ports import AuditSink

ERROR_HEADER: Final = b"x-andromede-error-code"


def operation_name(scope: Scope) -> str:
    """``admin:CreateTenant`` for the endpoint function ``create_tenant``."""
    endpoint = scope.get("endpoint")
    name = getattr(endpoint, "__name__", "")
    if not name:
        return "admin:Unknown"
    return "admin:" + "".join(part.capitalize() for part in name.split("_"))


class AuditedApp:
    """Wraps the admin ASGI app so that no response leaves unrecorded."""

    def __init__(self, app: App, sink: AuditSink) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry (http)."""
        trace = audit.arriving(
            "admin",
            secrets.token_hex(8).upper(),
            asgi.headers(scope),
            asgi.raw(scope, "query_string"),
            asgi.client(scope),
            dt.datetime.now(dt.UTC),
        )
        if not self.sink.healthy():
            await _unavailable(send, trace.request_id)
            return
        token = audit.begin(trace)
        try:
            await self.app(scope, receive, _Recorder(self.sink, trace, scope, receive, send))
        finally:
            audit.end(token)


class _Recorder:
    """The ``send`` callable handed to the admin app."""

    def __init__(
        self, sink: AuditSink, trace: RequestTrace, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.sink, self.trace, self.scope, self.send = sink, trace, scope, send
        self.receive = receive
        self.dropped = False

    async def __call__(self, message: Message) -> None:
        if self.dropped:
            return
        if message["type"] != "http.response.start":
            await self.send(message)
            return
        headers = asgi.headers(message)
        code = next((v.decode("latin-1") for k, v in headers if k == ERROR_HEADER), None)
        length = next((int(v) for k, v in headers if k == b"content-length"), 0)
        self.trace.operation = operation_name(self.scope)
        self.trace.bytes_in = int(_header(self.scope, b"content-length") or 0)
        record = audit.record_of(self.trace, asgi.integer(message, "status"), code, length)
        try:
            await self.sink.record(record)
        except errors.AuditUnavailable:
            self.dropped = True
            await _unavailable(self.send, self.trace.request_id)
            return
        headers = [(k, v) for k, v in headers if k != ERROR_HEADER]
        headers.append((b"x-amz-request-id", self.trace.request_id.encode()))
        await self.send({**message, "headers": headers})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in asgi.headers(scope):
        if key == name:
            return value
    return None


async def _unavailable(send: Send, request_id: str) -> None:
    body = json.dumps(
        {"code": "ServiceUnavailable", "message": errors.AuditUnavailable.default_message}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-amz-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
