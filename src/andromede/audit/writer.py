"""The audit writer process: the one writer of a data dir's trail under ``andromede serve``.

Worker processes send it their records over a Unix socket and wait for its acknowledgement.
One single-threaded loop reads whatever every connection has sent, appends it all as one group
(one ``pwrite``, one ``fdatasync``), and acknowledges each connection with one message. While
a sync runs, the next group gathers in the sockets' buffers. Compared with a writer thread in
each worker, one sync serves both workers, and the workers' event loops never share their
GIL with the writing.

Wire format (both directions big-endian):

- worker → writer: ``u32 length`` + the record's JSON object (ASCII), one per record;
- writer → worker: ``u8 status`` (0 durable, 1 failed) + ``u32 count``: the connection's next
  ``count`` records, in the order they were sent.

The writer exits, after signing the chain head, when its standard input reaches EOF: the
parent that started it is gone or asked it to stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from andromede.audit import format as fmt
from andromede.audit.chain import ChainWriter

log = logging.getLogger("andromede.audit.writer")
LENGTH: Final = struct.Struct(">I")
ACK: Final = struct.Struct(">BI")
# A record's line must stay readable by every reader of the trail (fmt.MAX_LINE); the faces
# bound every field well below this.
MAX_RECORD: Final = fmt.MAX_LINE - 256
RECV_BYTES: Final = 256 * 1024
RETENTION_EVERY_S: Final = 3600.0


class _Conn:
    """A worker's connection and the bytes of a frame not whole yet."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def frames(self) -> list[str]:
        """Take the whole frames out of the buffer."""
        bodies = []
        view = self.buffer
        pos = 0
        while len(view) - pos >= LENGTH.size:
            (size,) = LENGTH.unpack_from(view, pos)
            if size > MAX_RECORD:
                raise OSError(f"audit record of {size} bytes refused")
            if len(view) - pos - LENGTH.size < size:
                break
            start = pos + LENGTH.size
            body = bytes(view[start : start + size])
            if not body.isascii() or b"\n" in body or not body.startswith(b"{"):
                raise OSError("malformed audit record refused")
            bodies.append(body.decode("ascii"))
            pos = start + size
        del view[:pos]
        return bodies


class WriterLoop:
    """Serves workers on ``listener`` until ``control`` (a readable fd) reaches EOF."""

    def __init__(
        self,
        chain: ChainWriter,
        listener: socket.socket,
        control: int,
        retention: Callable[[], None] | None = None,
    ) -> None:
        self.chain = chain
        self.listener = listener
        self.control = control
        self.retention = retention
        self.selector = selectors.DefaultSelector()
        self.conns: dict[socket.socket, _Conn] = {}
        self.stopping = False
        self._scratch = bytearray(RECV_BYTES)
        self._scratch_view = memoryview(self._scratch)

    def run(self) -> None:
        """Serve until told to stop, then sign the chain head."""
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self.control, selectors.EVENT_READ)
        tick = max(self.chain.config.checkpoint_interval / 2, 0.05)
        next_retention = time.monotonic()
        while not self.stopping:
            ready = self.selector.select(tick)
            group: list[tuple[_Conn, int]] = []
            bodies: list[str] = []
            for key, _ in ready:
                self._ready(key.fileobj, group, bodies)
            if bodies:
                self._write(group, bodies)
            else:
                self._quietly(self.chain.tick)
            if self.retention is not None and time.monotonic() >= next_retention:
                self._quietly(self.retention)
                next_retention = time.monotonic() + RETENTION_EVERY_S
        self._quietly(lambda: self.chain.checkpoint("shutdown"))
        for conn in list(self.conns.values()):  # clients still waiting see the end at once
            self._drop(conn)
        self.selector.close()

    def _ready(self, obj: object, group: list[tuple[_Conn, int]], bodies: list[str]) -> None:
        if obj is self.listener:
            sock, _ = self.listener.accept()
            self.conns[sock] = _Conn(sock)
            self.selector.register(sock, selectors.EVENT_READ)
        elif obj == self.control:
            if not os.read(self.control, 4096):
                self.stopping = True
        else:
            conn = self.conns[obj]  # type: ignore[index]
            try:
                # Into one reused buffer: recv(1 MiB) would map and unmap a fresh megabyte
                # on every call.
                size = conn.sock.recv_into(self._scratch)
                if not size:
                    raise ConnectionResetError("closed")
                conn.buffer += self._scratch_view[:size]
                frames = conn.frames()
            except OSError:
                self._drop(conn)
                return
            if frames:
                group.append((conn, len(frames)))
                bodies.extend(frames)

    def _write(self, group: list[tuple[_Conn, int]], bodies: list[str]) -> None:
        status = 0
        try:
            self.chain.append(bodies)
        except OSError as exc:
            log.error("audit trail write failed, refusing requests: %s", exc)
            status = 1
        for conn, count in group:
            try:
                conn.sock.sendall(ACK.pack(status, count))
            except OSError:
                self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        self.conns.pop(conn.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.sock)
        conn.sock.close()

    @staticmethod
    def _quietly(job: Callable[[], object]) -> None:
        try:
            job()
        except OSError as exc:
            log.error("audit: %s", exc)


def listen(path: Path) -> socket.socket:
    """A Unix socket at ``path`` (mode 0600: only this user's processes may write records)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(64)
    return sock
