"""The load generator's side of the wire: SigV4 presigning and a minimal HTTP/1.1 client.

URLs are presigned locally (botocore takes ~280 us per URL, which would be the bottleneck);
each simulated client owns one keep-alive connection, whose responses httptools parses straight
out of a reused receive buffer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import hmac
import urllib.parse
from typing import cast

import httptools

from .common import REGION, REQUEST_TIMEOUT_S, WRITE_CHUNK, BenchError, KiB, MiB

# --------------------------------------------------------------------------------------------
# SigV4 query signing (presigned URLs), computed locally: botocore takes ~280 us per URL.


class Presigner:
    """Presigns path-style S3 URLs (UNSIGNED-PAYLOAD, only `host` signed), AWS SigV4."""

    def __init__(self, access_key: str, secret_key: str, hostport: str, region: str = REGION):
        self._access_key = access_key
        self._secret_key = secret_key
        self._host = hostport
        self._region = region
        self._key = b""
        self._amzdate = ""
        self._scope = ""
        self._query = ""
        self.refresh()

    def refresh(self, now: datetime.datetime | None = None) -> None:
        """Start a new signing window (URLs stay valid for an hour)."""
        now = now or datetime.datetime.now(datetime.UTC)
        day = now.strftime("%Y%m%d")
        self._amzdate = now.strftime("%Y%m%dT%H%M%SZ")
        self._scope = f"{day}/{self._region}/s3/aws4_request"
        key = ("AWS4" + self._secret_key).encode()
        for part in (day, self._region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._key = key
        cred = urllib.parse.quote(f"{self._access_key}/{self._scope}", safe="-_.~")
        self._query = (
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={cred}"
            f"&X-Amz-Date={self._amzdate}&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        )

    def target(self, method: str, path: str) -> str:
        """Request target for `path` (already URI-encoded, e.g. "/bucket/key")."""
        creq = f"{method}\n{path}\n{self._query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        sts = (
            f"AWS4-HMAC-SHA256\n{self._amzdate}\n{self._scope}\n"
            f"{hashlib.sha256(creq.encode()).hexdigest()}"
        )
        sig = hmac.new(self._key, sts.encode(), hashlib.sha256).hexdigest()
        return f"{path}?{self._query}&X-Amz-Signature={sig}"


# --------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client: one connection per simulated client, reused across requests.


@dataclasses.dataclass
class Response:
    status: int
    nbytes: int
    head: bytes  # first bytes of the body, for error messages


class _Protocol(asyncio.BufferedProtocol):
    """Receives straight into a reused buffer; httptools parses status, length and chunking."""

    def __init__(self) -> None:
        self._buf = bytearray(256 * KiB)
        self._view = memoryview(self._buf)
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.keep_alive = True
        self.closed = False
        self._status = 0
        self._nbytes = 0
        self._head = bytearray()
        self.writable = asyncio.Event()
        self.writable.set()

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=4 * MiB)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._parser.feed_data(self._view[:nbytes])
        except httptools.HttpParserError as exc:
            self._fail(BenchError(f"bad HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        self._fail(BenchError(f"connection closed by the server ({exc or 'EOF'})"))

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._nbytes += len(body)
        if len(self._head) < 2048:
            self._head += body[:2048]

    def on_message_complete(self) -> None:
        self.keep_alive = bool(self._parser.should_keep_alive())
        resp = Response(self._status, self._nbytes, bytes(self._head))
        self._nbytes = 0
        self._head.clear()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(resp)

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class HttpConnection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._proto: _Protocol | None = None

    async def _protocol(self) -> _Protocol:
        if self._proto is None or self._proto.closed or not self._proto.keep_alive:
            if self._proto is not None and self._proto.transport is not None:
                self._proto.transport.close()
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(_Protocol, self._host, self._port)
            self._proto = proto
        return self._proto

    async def request(self, head: bytes, body: memoryview | bytes | None = None) -> Response:
        proto = await self._protocol()
        transport = proto.transport
        if transport is None or proto.waiter is not None:
            raise BenchError("a connection was used by two requests at once")
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        proto.waiter = waiter
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            if body is None or len(body) <= 64 * KiB:
                transport.write(head + bytes(body or b""))
            else:
                transport.write(head)
                view = memoryview(body)
                for off in range(0, len(view), WRITE_CHUNK):
                    if waiter.done():  # answered before the whole body was sent: an error
                        proto.keep_alive = False
                        break
                    transport.write(view[off : off + WRITE_CHUNK])
                    if not proto.writable.is_set():
                        await proto.writable.wait()
            resp = await waiter
        proto.waiter = None
        return resp

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()


class S3Raw:
    """PUT and GET through presigned URLs over a pool of connections."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str) -> None:
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme != "http":
            raise BenchError("only http:// endpoints are supported (loopback benchmarks)")
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.hostport = url.netloc
        self.bucket = bucket
        self.signer = Presigner(access_key, secret_key, self.hostport)
        self.conns: list[HttpConnection] = []
        self.requests = 0  # answered, successful or not

    def conn(self, i: int) -> HttpConnection:
        while len(self.conns) <= i:
            self.conns.append(HttpConnection(self.host, self.port))
        return self.conns[i]

    def _target(self, method: str, key: str) -> str:
        path = "/" + self.bucket + "/" + urllib.parse.quote(key, safe="/-_.~")
        return self.signer.target(method, path)

    async def put(self, i: int, key: str, prefix: bytes, body: memoryview | bytes) -> None:
        size = len(prefix) + len(body)
        head = (
            f"PUT {self._target('PUT', key)} HTTP/1.1\r\nHost: {self.hostport}\r\n"
            f"Content-Length: {size}\r\n\r\n"
        ).encode()
        if len(body) <= 64 * KiB:
            resp = await self.conn(i).request(head, prefix + bytes(body))
        else:
            resp = await self.conn(i).request(head + prefix, body)
        self.requests += 1
        _check(resp, "PUT", key)

    async def get(self, i: int, key: str, size: int) -> None:
        head = f"GET {self._target('GET', key)} HTTP/1.1\r\nHost: {self.hostport}\r\n\r\n"
        resp = await self.conn(i).request(head.encode())
        self.requests += 1
        _check(resp, "GET", key)
        if resp.nbytes != size:
            raise BenchError(f"GET {key}: got {resp.nbytes} bytes, expected {size}")

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.conns.clear()


def _check(resp: Response, method: str, key: str) -> None:
    if not 200 <= resp.status < 300:
        text = resp.head[:600].decode(errors="replace")
        raise BenchError(f"{method} {key}: HTTP {resp.status}: {text}")
