"""Minimal ASGI request/response types for the S3 face (no framework: S3 routes oddly and
streams many-GiB bodies)."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from andromede import asgi
from andromede.asgi import Receive, Scope, Send
from andromede.core import errors


@dataclass
class Request:
    """One S3 request, parsed just enough to route and authenticate it."""

    method: str
    raw_path: str
    query_string: str
    query: dict[str, str]
    header_list: list[tuple[str, str]]
    headers: dict[str, str]
    bucket: str | None
    key: str | None
    client: str
    receive: Receive
    request_id: str
    body_consumed: bool = False
    bytes_received: int = 0
    idle_timeout: float | None = None

    def header(self, name: str) -> str | None:
        """A header by lowercase name (repeated headers are joined with ',')."""
        return self.headers.get(name)

    async def stream(self) -> AsyncIterator[bytes]:
        """The raw body, as it arrives."""
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    message = await self.receive()
            except TimeoutError:
                # A client that announced more than it sends holds no request forever.
                raise errors.RequestTimeout() from None
            if message["type"] == "http.disconnect":
                raise errors.IncompleteBody()
            chunk = asgi.raw(message, "body")
            if chunk:
                self.bytes_received += len(chunk)
                yield chunk
            if not message.get("more_body", False):
                self.body_consumed = True
                return

    def body_unread(self) -> bool:
        """True when the client announced a body that was not read to its end."""
        if self.body_consumed:
            return False
        length = self.headers.get("content-length", "0").strip()
        return "transfer-encoding" in self.headers or length not in ("", "0")


def decode_path(raw: bytes) -> str:
    """Percent-decode a request path as UTF-8; anything else is InvalidURI-like."""
    try:
        return urllib.parse.unquote(raw.decode("ascii"), errors="strict")
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise errors.InvalidArgument("Couldn't parse the specified URI.") from exc


def build_request(
    scope: Scope,
    receive: Receive,
    request_id: str,
    domain: str | None,
    idle_timeout: float | None = None,
) -> Request:
    """Turn an ASGI scope into a :class:`Request`, splitting bucket and key.

    Path style: ``/bucket/key``. Virtual-host style: ``bucket.<domain>/key`` when ``domain``
    is configured. The key is taken verbatim: ``../`` is part of a key, never a path.
    """
    header_list = [
        (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in asgi.headers(scope)
    ]
    headers: dict[str, str] = {}
    for name, value in header_list:
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    raw_path_bytes = asgi.raw(scope, "raw_path") or asgi.text(scope, "path").encode()
    raw_path = raw_path_bytes.decode("latin-1").split("?", 1)[0]
    path = decode_path(raw_path.encode("latin-1"))
    query_string = asgi.raw(scope, "query_string").decode("latin-1")
    query = dict(urllib.parse.parse_qsl(query_string, keep_blank_values=True))
    host = headers.get("host", "").rsplit(":", 1)[0].lower() if headers.get("host") else ""
    bucket: str | None
    key: str | None
    if domain and host.endswith("." + domain):
        bucket = host[: -len(domain) - 1]
        key = path[1:] or None
    else:
        stripped = path[1:] if path.startswith("/") else path
        if not stripped:
            bucket, key = None, None
        else:
            bucket_part, sep, rest = stripped.partition("/")
            bucket = bucket_part
            key = rest if sep and rest else None
    client = asgi.client(scope) or ("", 0)
    return Request(
        method=asgi.text(scope, "method"),
        raw_path=raw_path,
        query_string=query_string,
        query=query,
        header_list=header_list,
        headers=headers,
        bucket=bucket,
        key=key,
        client=str(client[0]),
        receive=receive,
        request_id=request_id,
        idle_timeout=idle_timeout,
    )


@dataclass
class Response:
    """What a handler returns: status, headers, and a body (bytes or a stream)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncGenerator[bytes, None] = b""
    content_length: int | None = None
    first_chunk: bytes | None = None  # a streamed body's first chunk, already read from it

    def header(self, name: str, value: str) -> Response:
        """Add a header; returns self for chaining."""
        self.headers.append((name, value))
        return self


def xml_response(body: bytes, status: int = 200) -> Response:
    """An XML document response."""
    return Response(status, [("content-type", "application/xml")], body)


async def send_response(send: Send, response: Response, head_only: bool) -> None:
    """Send headers then the body, streaming when it is an iterator."""
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    body = response.body
    first = b""
    if not isinstance(body, bytes) and not head_only:
        # The first chunk before the status line, so that a read failing at once becomes an
        # error response (the S3 app reads it even earlier, before the audit record).
        prefetched = response.first_chunk
        first = prefetched if prefetched is not None else await anext(body, b"")
    if isinstance(body, bytes):
        length = len(body) if response.content_length is None else response.content_length
    else:
        length = response.content_length if response.content_length is not None else -1
    if length >= 0 and response.status not in (204, 304):
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if head_only or response.status in (204, 304):
        if not isinstance(body, bytes):
            await body.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if isinstance(body, bytes):
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    if first:
        await send({"type": "http.response.body", "body": first, "more_body": True})
    async for chunk in body:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
