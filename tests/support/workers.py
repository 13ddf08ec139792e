"""Which worker process of a running ``serve`` answers a request: connections pinned to one
worker, and how long a change made through one worker takes to reach the other."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from andromede.cli.client import ADMIN_PREFIX
from support.server import Server
from support.sigv4 import Signer, send_signed


# --- which worker process answers ----------------------------------------------------------------
class Workers:
    """The worker processes of a running ``serve`` (Linux: read from ``/proc``), and
    connections pinned to one of them.

    A connection belongs to the worker that accepted it, and keeps going to it while it is kept
    alive; so a test can send a request to the worker it chooses: the one running the key jobs
    (it holds ``sweeper.lock``) or the other.
    """

    def __init__(self, server: Server) -> None:
        if not Path("/proc/net/tcp").exists():
            pytest.skip("telling worker processes apart needs Linux's /proc")
        assert server.proc is not None
        self._server = server
        self._group = server.proc.pid
        self.pids = sorted(p for p in self._group_pids() if b"multiprocessing.spawn" in _cmd(p))
        assert len(self.pids) == server.workers, self.pids

    def _group_pids(self) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getpgid(int(entry)) == self._group:
                        found.append(int(entry))
                except ProcessLookupError:
                    continue
        return found

    def job_worker(self) -> int:
        """The worker that runs the background jobs (the one holding the sweeper lock)."""
        lock = str(self._server.data_dir / "sweeper.lock")
        holders = [p for p in self.pids if lock in _fd_targets(p)]
        assert len(holders) == 1, holders
        return holders[0]

    def other_than(self, pid: int) -> int:
        """A worker that is not ``pid``."""
        return next(p for p in self.pids if p != pid)

    def connect(self, pid: int, attempts: int = 200) -> http.client.HTTPConnection:
        """A kept-alive connection that worker ``pid`` accepted."""
        for _ in range(attempts):
            conn = http.client.HTTPConnection("127.0.0.1", self._server.port, timeout=30)
            conn.connect()
            assert conn.sock is not None
            owner = self._owner(conn.sock.getsockname()[1])
            if owner == pid:
                return conn
            conn.close()
        raise AssertionError(f"no connection reached worker {pid} in {attempts} attempts")

    def _owner(self, client_port: int) -> int | None:
        """The worker holding the server side of the connection from ``client_port``."""
        local = f"0100007F:{self._server.port:04X}"
        remote = f"0100007F:{client_port:04X}"
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            inode = None
            with open("/proc/net/tcp", encoding="ascii") as fh:
                for line in fh.readlines()[1:]:
                    fields = line.split()
                    if fields[1] == local and fields[2] == remote and fields[9] != "0":
                        inode = fields[9]
            if inode is not None:
                target = f"socket:[{inode}]"
                for pid in self.pids:
                    if target in _fd_targets(pid):
                        return pid
            time.sleep(0.005)  # the kernel lists the accepted socket a moment after connect
        return None


def _cmd(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _fd_targets(pid: int) -> set[str]:
    found: set[str] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return found
    for name in names:
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            continue
    return found


@dataclass(frozen=True)
class Answer:
    """A response read to its end."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        """The S3 error code of an XML error body."""
        if not self.body.startswith(b"<"):
            return None
        return ET.fromstring(self.body).findtext("Code")  # noqa: S314 - our own server's reply


def _exchange(
    conn: http.client.HTTPConnection, method: str, target: str, body: bytes, headers: dict[str, str]
) -> Answer:
    conn.request(method, target, body=body, headers=headers)
    response = conn.getresponse()
    return Answer(response.status, response.read())


def s3_call(
    conn: http.client.HTTPConnection,
    server: Server,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Answer:
    """A signed S3 request (the operator's) on ``conn``."""
    signed = Signer(server, server.access_key, server.secret_key).sign(
        method, path, headers=headers, payload=hashlib.sha256(body).hexdigest()
    )
    return _exchange(conn, method, signed.target, body, signed.headers)


def admin_call(
    conn: http.client.HTTPConnection,
    server: Server,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> Answer:
    """A signed admin API request (the operator's) on ``conn``; ``path`` after ``/v1``'s
    prefix, e.g. ``/v1/kms/keys``."""
    url = server.endpoint + ADMIN_PREFIX + path
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"content-type": "application/json"} if body is not None else {}
    request = AWSRequest(method=method, url=url, data=data, headers=headers)
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", "us-east-1").add_auth(
        request
    )
    return _exchange(conn, method, ADMIN_PREFIX + path, data, dict(request.headers.items()))


def refusals_after(
    server: Server, access: str, secret: str, paths: Iterable[str], since: float, bound: float
) -> dict[str, set[tuple[int, str | None]]]:
    """What GETs of ``paths`` answer once ``bound`` seconds have passed since ``since`` (a
    key's state change): several each, every one on a fresh connection, so both workers
    answer. Within the bound a worker may still use its cached copy of the key's state."""
    # The bound itself: a worker's cached copy may serve until then, and nothing outside it
    # says when it is dropped.
    time.sleep(max(0.0, since + bound - time.monotonic()))
    signer = Signer(server, access, secret)
    answers: dict[str, set[tuple[int, str | None]]] = {}
    for path in paths:
        for _ in range(6):
            reply = send_signed(server, signer.sign("GET", path))
            answers.setdefault(path, set()).add((reply.status, reply.code))
    return answers
