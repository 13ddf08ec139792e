"""Start the real server (``andromede serve``) as a subprocess for integration tests."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from andromede.cli.client import AdminClient

_PORT_ATTEMPTS = 3


class _PortTaken(RuntimeError):
    """The server exited because another process holds its port."""


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``andromede serve`` process and how to talk to it."""

    data_dir: Path
    port: int
    access_key: str
    secret_key: str
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _started: bool = field(default=False, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until the health endpoint answers.

        :func:`free_port` lets go of the port it found, so another process (a parallel test
        worker's server, or any client's outgoing connection) can take it before ours binds
        it: a first start that finds its port taken moves to another. A restart keeps its
        port, which clients and tests already hold.
        """
        for attempt in range(1 if self._started else _PORT_ATTEMPTS):
            try:
                self._start_once(timeout)
            except _PortTaken:
                if self._started or attempt == _PORT_ATTEMPTS - 1:
                    raise
                self.port = free_port()
            else:
                self._started = True
                return

    def _start_once(self, timeout: float) -> None:
        env = dict(os.environ)
        env.update(self.env)
        env["ANDROMEDE_ROOT_ACCESS_KEY"] = self.access_key
        env["ANDROMEDE_ROOT_SECRET_KEY"] = self.secret_key
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        logged_before = log.tell()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "andromede",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--address",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                assert self.log_path is not None
                this_run = self.log_path.read_bytes()[logged_before:]
                if b"address already in use" in this_run.lower():
                    self.proc = None
                    raise _PortTaken(this_run.decode(errors="replace"))
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/_andromede/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, kill: bool = False) -> None:
        """Stop the whole process group (SIGKILL when ``kill``)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def client(
        self, access_key: str | None = None, secret_key: str | None = None, **config: Any
    ) -> Any:
        """A boto3 S3 client (path style, SigV4, botocore's default checksums)."""
        options: dict[str, Any] = {
            "signature_version": "s3v4",
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 1},
        }
        options.update(config)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(**options),
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``andromede`` CLI against this server using the data dir's credentials."""
        done = subprocess.run(
            [sys.executable, "-m", "andromede", *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"andromede {' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}\nserver log tail:\n"
                + self.log()[-3000:]
            )
        return done

    def new_tenant(self, name: str | None = None) -> tuple[str, str, str]:
        """Create a tenant and a key through the admin API: (tenant, access, secret).

        The admin HTTP API rather than the CLI: each ``andromede`` command is a Python process
        that takes about a second of CPU to start, and the tests that need a tenant are not
        testing the CLI (``test_admin_cli`` does).
        """
        tenant = name or "t-" + secrets.token_hex(4)
        admin = AdminClient(self.endpoint, self.access_key, self.secret_key)
        admin.request("POST", "/v1/tenants", {"name": tenant})
        key = admin.request("POST", "/v1/keys", {"tenant": tenant})
        return tenant, key["access_key_id"], key["secret_key"]


@contextlib.contextmanager
def running_server(data_dir: Path, workers: int = 1, **env: str) -> Iterator[Server]:
    """A started server, stopped on exit."""
    server = Server(
        data_dir,
        free_port(),
        "AKTEST" + secrets.token_hex(7).upper(),
        secrets.token_urlsafe(30),
        workers=workers,
        env=env,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
