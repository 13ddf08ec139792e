"""A worker's own append of a lone request's record: no hop to the writer process.

Under ``andromede serve`` records go to the writer process (``writer.py``), which groups the
records of every request in flight into one sync. A request that is alone in its worker has
nothing to share a sync with, and the round trip costs it two process wake-ups and the writer's
loop on top of the sync: about a third of a 4 KiB GET with one client on a 2-vCPU machine
(``bench/README.md``). For that request the worker appends the record itself, through its own
:class:`ChainWriter`, on the event loop: one ``pwrite`` and one ``fdatasync`` under the trail's
lock, the same lock and shared head as the writer process, so the chain stays one total order.
Blocking the loop for the sync delays nobody: no other request is open in this worker.

A sync slower than ``slow_seconds`` (a disk in trouble, or a segment rotation's preallocation)
turns this off for ``off_seconds``: requests then wait for the writer process, whose wait is
bounded (``audit_record_wait_seconds``, then 503). A sync that never returns holds this worker's
requests instead of answering 503: ``audit_inline_sync = false`` where a disk may hang that way.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit.chain import ChainWriter, TrailConfig
from andromede.core.audit import open_traces

log = logging.getLogger("andromede.audit")
SLOW_SECONDS: Final = 1.0
OFF_SECONDS: Final = 60.0


class InlineAppender:
    """Appends one record at a time on the caller's thread, when the process has at most one
    request open (``core.audit.open_traces``) and no slow sync was seen lately."""

    def __init__(
        self,
        config: TrailConfig,
        signer: Ed25519PrivateKey,
        slow_seconds: float = SLOW_SECONDS,
        off_seconds: float = OFF_SECONDS,
    ) -> None:
        self.chain = ChainWriter(config, signer)
        self.slow_seconds = slow_seconds
        self.off_seconds = off_seconds
        self._off_until = 0.0
        self._open = False

    def open(self) -> None:
        """Open the trail (its own files and lock descriptor, so ``flock`` orders this writer
        against the writer process and any other)."""
        self.chain.open()
        self._open = True

    def close(self) -> None:
        """Release the files (the writer process signs the head at shutdown)."""
        self._open = False
        self.chain.close()

    def usable(self) -> bool:
        """True when appending here delays no other request of this process."""
        return self._open and open_traces() <= 1 and time.monotonic() >= self._off_until

    def append(self, body: str) -> bool:
        """Chain and sync ``body`` (a record's JSON object); False, having done nothing, once
        closed. OSError, having published nothing, when the write or the sync fails. Called
        on the event loop's thread only (``RemoteTrail.record``)."""
        if not self._open:
            return False
        started = time.monotonic()
        try:
            self.chain.append([body])
        finally:
            took = time.monotonic() - started
            if took > self.slow_seconds:
                self._off_until = time.monotonic() + self.off_seconds
                log.warning(
                    "audit: a record's sync took %.2f s; records go to the writer process for "
                    "the next %.0f s",
                    took,
                    self.off_seconds,
                )
        return True
