"""The audit sink of a process that writes the trail itself, from a thread.

Under ``andromede serve`` the workers hand their records to the writer process instead
(``remote.py``, ``writer.py``); this sink serves everything else: tests, tools, and the start-up
sweep that runs before the writer process exists. Requests hand the thread their record and
wait; the thread takes every record waiting and appends them as one group through
:class:`~andromede.audit.chain.ChainWriter` (one ``pwrite``, one ``fdatasync``), then wakes
each event loop once. A failed group fails every request in it (the faces answer 503) and marks
the trail unhealthy for ``retry_seconds``, during which new requests are refused before they do
anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import format as fmt
from andromede.audit.chain import ChainWriter, TrailConfig
from andromede.audit.remote import wait_durable
from andromede.core import errors
from andromede.core.audit import AuditRecord

log = logging.getLogger("andromede.audit")
MAX_GROUP: Final = 4096
__all__ = ["HashChainTrail", "TrailConfig"]


@dataclass
class _Pending:
    body: str
    loop: asyncio.AbstractEventLoop | None
    done: asyncio.Future[None] | Future[None]


def _settle(items: list[_Pending], error: BaseException | None) -> None:
    """Resolve waiting requests (on their event loop's thread)."""
    for item in items:
        if item.done.done():
            continue  # the request was cancelled (client gone)
        if error is None:
            item.done.set_result(None)
        else:
            failure = errors.AuditUnavailable()
            failure.__cause__ = error
            item.done.set_exception(failure)


class HashChainTrail:
    """An :class:`andromede.ports.AuditSink` that writes the trail itself, from a thread of
    this process (tests, tools, and any process that runs without the writer process)."""

    def __init__(
        self, config: TrailConfig, signer: Ed25519PrivateKey, wait_seconds: float = 10.0
    ) -> None:
        self.config = config
        self.wait_seconds = wait_seconds
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._failed_until = 0.0
        self._thread: threading.Thread | None = None
        self.chain = ChainWriter(config, signer)

    # --- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        """Open the trail (recovering it if needed) and start the writer thread."""
        self.chain.open()
        self._thread = threading.Thread(target=self._run, name="andromede-audit", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Drain, stop the writer, and sign the chain head (clean shutdown)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        try:
            await asyncio.to_thread(self.chain.checkpoint, "shutdown")
        except OSError:
            log.exception("audit: no checkpoint at shutdown")
        self.chain.close()

    def apply_retention(self, cutoff: float, shipped_seq: int | None = None) -> int:
        """See :meth:`ChainWriter.apply_retention`."""
        return self.chain.apply_retention(cutoff, shipped_seq)

    # --- the sink ---------------------------------------------------------------------------
    def healthy(self) -> bool:
        """False for a while after a failed write: requests are then refused up front."""
        return time.monotonic() >= self._failed_until and not self._stopping

    async def record(self, record: AuditRecord) -> None:
        """Return once ``record`` is durable in the trail; AuditUnavailable otherwise."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._enqueue(_Pending(fmt.dumps(record.as_dict()), loop, done))
        await wait_durable(done, self.wait_seconds, self._give_up)

    def _give_up(self) -> None:
        self._failed_until = time.monotonic() + self.config.retry_seconds

    def record_blocking(self, record: AuditRecord) -> None:
        """The same from a thread that has no event loop (tools, shutdown paths)."""
        done: Future[None] = Future()
        self._enqueue(_Pending(fmt.dumps(record.as_dict()), None, done))
        done.result()

    def _enqueue(self, item: _Pending) -> None:
        with self._cond:
            if self._stopping:
                raise errors.AuditUnavailable()
            self._queue.append(item)
            if len(self._queue) == 1:
                self._cond.notify()

    # --- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.config.checkpoint_interval
        while True:
            with self._cond:
                if not self._queue and not self._stopping:
                    self._cond.wait(timeout=max(interval / 2, 0.05))
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_GROUP))]
                stop = self._stopping and not self._queue
            if batch:
                self._write_group(batch)
            else:
                self._idle_checkpoint()
            if stop and not batch:
                return

    def _write_group(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self.chain.append([item.body for item in batch])
        except Exception as exc:
            self._give_up()
            log.error("audit trail write failed, refusing requests: %r", exc)
            error = exc
        # One wake-up per event loop per group, not one per request.
        by_loop: dict[asyncio.AbstractEventLoop | None, list[_Pending]] = {}
        for item in batch:
            by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            if loop is None:
                _settle(items, error)
            else:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(_settle, items, error)

    def _idle_checkpoint(self) -> None:
        try:
            self.chain.tick()
        except OSError as exc:
            log.error("audit checkpoint failed: %s", exc)
