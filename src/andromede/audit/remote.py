"""The audit sink of a worker under ``andromede serve``: records go to the writer process.

See ``writer.py`` for the wire format. A record is durable when the writer says so. If the
writer says it failed, or the connection is lost, the waiting requests get AuditUnavailable
(the faces answer 503), and new requests are refused for ``retry_seconds`` while the sink
reconnects.

A request alone in its worker appends its record itself when an :class:`InlineAppender` is
given (``inline.py``): same chain, same lock, no round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import cast

from andromede.audit import format as fmt
from andromede.audit.inline import InlineAppender
from andromede.audit.writer import ACK, LENGTH
from andromede.core import errors
from andromede.core.audit import AuditRecord

log = logging.getLogger("andromede.audit")


async def wait_durable(
    done: asyncio.Future[None], wait_seconds: float, on_timeout: Callable[[], None]
) -> None:
    """Wait for a record's acknowledgement, at most ``wait_seconds`` (a hung disk must not hang
    requests: they fail closed). The writer's acknowledgements settle futures in order and
    skip one that is done already (timed out, or its request cancelled)."""
    # A timer rather than wait_for(shield(...)): no task and no second future per record. A
    # future that times out, or whose request is cancelled, is done: the writer's
    # acknowledgement then skips it, in order.
    timer = asyncio.get_running_loop().call_later(wait_seconds, _expire, done)
    try:
        await done
    except _Expired:
        on_timeout()
        log.error("audit record not durable after %.1f s: refusing the request", wait_seconds)
        raise errors.AuditUnavailable() from None
    finally:
        timer.cancel()


async def _alone(inline: InlineAppender) -> bool:
    """Whether the request is still alone once the event loop has had two turns: one to read
    what other connections sent (their requests' tasks are created), one to start those tasks
    (each opens its trace). Everything a GET does before its record may be synchronous, so
    without these turns the other requests would not have started yet."""
    if not inline.usable():
        return False
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return inline.usable()


class _Expired(Exception):
    """A record's acknowledgement did not come in time."""


def _expire(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_exception(_Expired())


class RemoteTrail:
    """An :class:`andromede.ports.AuditSink` backed by the writer process at ``path``."""

    def __init__(
        self,
        path: Path,
        retry_seconds: float = 1.0,
        wait_seconds: float = 10.0,
        inline: InlineAppender | None = None,
    ) -> None:
        self.path = path
        self.inline = inline
        self.retry_seconds = retry_seconds
        self.wait_seconds = wait_seconds
        self._reconnecting: asyncio.Task[None] | None = None
        self._pending: deque[asyncio.Future[None]] = deque()
        self._writer: asyncio.WriteTransport | None = None
        self._failed_until = 0.0
        self._closing = False

    async def start(self, wait_s: float = 10.0) -> None:
        """Connect, retrying for ``wait_s`` while the writer process starts."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                await self._connect()
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.05)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_unix_connection(lambda: _Acks(self), str(self.path))
        self._writer = cast(asyncio.WriteTransport, transport)

    def healthy(self) -> bool:
        """Connected, and no failure reported within ``retry_seconds``."""
        if self._writer is None and not self._closing:
            self._reconnect_soon()
        return self._writer is not None and time.monotonic() >= self._failed_until

    async def record(self, record: AuditRecord) -> None:
        """Return once the writer has made ``record`` durable; AuditUnavailable otherwise."""
        writer = self._writer
        if writer is None:
            raise errors.AuditUnavailable()
        text = fmt.dumps(record.as_dict())
        inline = self.inline
        if inline is not None and not self._pending and await _alone(inline):
            try:
                if inline.append(text):
                    return
            except OSError as exc:
                self._give_up()
                log.error("audit trail write failed, refusing requests: %s", exc)
                raise errors.AuditUnavailable() from exc
        body = text.encode("ascii")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(done)
        writer.write(LENGTH.pack(len(body)) + body)
        await wait_durable(done, self.wait_seconds, self._give_up)

    def _give_up(self) -> None:
        self._failed_until = time.monotonic() + self.retry_seconds

    def _acknowledged(self, status: int, count: int) -> None:
        """The writer's answer for the next ``count`` records sent (IndexError: more than
        were sent, a broken writer)."""
        if status:
            self._failed_until = time.monotonic() + self.retry_seconds
        for _ in range(count):
            done = self._pending.popleft()
            if done.done():
                continue
            if status:
                done.set_exception(errors.AuditUnavailable())
            else:
                done.set_result(None)

    def _connection_lost(self, exc: BaseException | None) -> None:
        if not self._closing:
            log.error("audit writer connection lost: %r", exc)
        self._lost()

    def _lost(self) -> None:
        """Every waiting request fails: its record may or may not be durable, so the request
        must not be acknowledged."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._failed_until = time.monotonic() + self.retry_seconds
        while self._pending:
            done = self._pending.popleft()
            if not done.done():
                done.set_exception(errors.AuditUnavailable())

    def _reconnect_soon(self) -> None:
        """One reconnection attempt at a time, at most one per ``retry_seconds``."""
        if self._reconnecting is not None or time.monotonic() < self._failed_until:
            return
        self._reconnecting = asyncio.get_running_loop().create_task(self._retry())

    async def _retry(self) -> None:
        try:
            await self._connect()
        except OSError:
            self._failed_until = time.monotonic() + self.retry_seconds
        finally:
            self._reconnecting = None

    async def close(self) -> None:
        """Disconnect (the writer process signs the head when it stops)."""
        self._closing = True
        if self.inline is not None:
            self.inline.close()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _Acks(asyncio.Protocol):
    """The connection to the writer: acknowledgements are settled as their bytes arrive,
    in the event loop's read callback (no reader task to wake per group)."""

    def __init__(self, trail: RemoteTrail) -> None:
        self._trail = trail
        self._buffer = bytearray()
        self._transport: asyncio.BaseTransport | None = None
        self._broken: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        size = ACK.size
        taken = 0
        try:
            while len(self._buffer) - taken >= size:
                status, count = ACK.unpack_from(self._buffer, taken)
                taken += size
                self._trail._acknowledged(status, count)
        except IndexError as exc:  # acknowledged more than was sent: the writer is broken
            self._broken = exc
            if self._transport is not None:
                self._transport.close()  # connection_lost follows
            return
        del self._buffer[:taken]

    def connection_lost(self, exc: Exception | None) -> None:
        self._trail._connection_lost(exc or self._broken)
