"""The audit writer process: how ``serve`` starts and watches it, and what runs inside it.

Kept apart from the server's composition root so that the writer process imports only the
settings and ``andromede.audit`` (about 40 MB resident, against about 100 MB for a worker).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Final

from andromede.audit.chain import ChainWriter, TrailConfig
from andromede.audit.keys import load_or_create_signing_key
from andromede.audit.mirror import RadosMirror
from andromede.audit.syslog import ShipperThread, SyslogShipper
from andromede.audit.writer import WriterLoop, listen
from andromede.core.locations import RadosLocation
from andromede.settings import Settings, load_settings

MAX_SOCKET_PATH: Final = 100  # sun_path holds 108 bytes
WRITER_START_S: Final = 30.0
WRITER_STOP_S: Final = 30.0
SHUTDOWN_SHIP_S: Final = 3.0


def trail_config(settings: Settings) -> TrailConfig:
    """How the settings cut, sign and mirror the trail."""
    mirror = None
    if settings.audit_rados:
        location = RadosLocation.parse(settings.audit_rados)
        if location is None:
            raise ValueError("audit_rados must be a rados: location (rados:POOL?conf=FILE)")
        mirror = RadosMirror(location)
    return TrailConfig(
        settings.audit_path,
        segment_bytes=settings.audit_segment_bytes,
        segment_max_age=settings.audit_segment_max_age_seconds,
        checkpoint_interval=settings.audit_checkpoint_interval_seconds,
        retry_seconds=settings.audit_retry_seconds,
        mirror=mirror,
    )


def run_audit_writer(settings: Settings) -> None:
    """The writer process's body (see audit/writer.py): serve until stdin reaches EOF. The
    trail's other jobs run here too: retention, and shipping to a collector (in a thread with
    its own event loop), which ends by shipping the shutdown checkpoint."""
    chain = ChainWriter(trail_config(settings), load_or_create_signing_key(settings.audit_key_path))
    chain.open()
    assert settings.audit_writer_socket is not None
    listener = listen(settings.audit_writer_socket)
    shipper = shipper_for(settings)
    shipping = ShipperThread(shipper) if shipper is not None else None

    def retention() -> None:
        cutoff = time.time() - dt.timedelta(days=settings.audit_retention_days).total_seconds()
        chain.apply_retention(cutoff, shipper.cursor.load() if shipper is not None else None)

    try:
        if shipping is not None:
            shipping.start()
        WriterLoop(chain, listener, sys.stdin.fileno(), retention).run()
    finally:
        listener.close()
        settings.audit_writer_socket.unlink(missing_ok=True)
        chain.close()
        if shipping is not None:
            shipping.stop(final_wait_s=SHUTDOWN_SHIP_S)


def shipper_for(settings: Settings) -> SyslogShipper | None:
    if not settings.audit_syslog_address:
        return None
    return SyslogShipper(
        settings.audit_path,
        settings.audit_syslog_address,
        settings.audit_path / "syslog-cursor",
        socket.gethostname(),
    )


def writer_socket(settings: Settings) -> Path:
    """In the trail's directory (0700), unless the path is too long for a Unix socket."""
    path = settings.audit_path.resolve() / "writer.sock"
    if len(str(path)) < MAX_SOCKET_PATH:
        settings.audit_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path
    return Path(tempfile.mkdtemp(prefix="andromede-audit-")) / "writer.sock"


class AuditWriterProcess:
    """The audit writer (``audit/writer.py``) as a child process, restarted if it dies.

    It stops, signing the chain head, when its stdin is closed: by :meth:`stop`, or by the
    kernel when this process dies however it dies.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._deadline = 0.0
        self._stopping = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="audit-writer", daemon=True)

    def launch(self) -> None:
        """Start the writer without waiting for it: the workers' audit clients retry their
        connection while it starts (``RemoteTrail.start``), and it is ready long before they
        are (~0.2 s of CPU against ~0.7 s for a worker), so a restart does not wait for it
        on its way. Restarted whenever it exits, until :meth:`stop`."""
        self._launch()
        self._watchdog.start()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        while not self.socket_path.exists():
            if self._proc.poll() is not None or time.monotonic() > self._deadline:
                raise RuntimeError("the audit writer process did not start")
            time.sleep(0.02)

    def _launch(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._deadline = time.monotonic() + WRITER_START_S
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from andromede.audit_process import main; main()"],
            stdin=subprocess.PIPE,
        )

    def _spawn(self) -> None:
        self._launch()
        self._wait_ready()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            code = proc.wait()
            if self._stopping.is_set():
                return
            logging.getLogger("andromede.audit").error(
                "audit writer exited (status %s); requests fail until it is back", code
            )
            time.sleep(0.5)
            with contextlib.suppress(RuntimeError):
                self._spawn()

    def stop(self) -> None:
        """Close the writer's stdin and wait for it to sign the head and exit."""
        self._stopping.set()
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        proc.stdin.close()
        try:
            proc.wait(timeout=WRITER_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    """Entry point of the audit writer process."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.umask(0o077)
    # A signal to the whole process group (Ctrl-C, a service manager's SIGTERM) must not stop
    # the writer before the workers have answered their last requests: it stops when ``serve``
    # closes its stdin, or when ``serve`` is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run_audit_writer(load_settings())
