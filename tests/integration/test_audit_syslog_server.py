"""The real server ships its audit trail to a syslog collector (RFC 5424 over TCP).

(Not ``test_audit_syslog.py``: the contract suite has a module of that name, and test modules
of this tree are imported by their base name.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.server import running_server

HEADER = re.compile(
    rb"<(\d{1,3})>1 (\S+) (\S{1,255}) (\S{1,48}) (\S{1,128}) (\S{1,32}) "
    rb'(-|\[andromede@32473 (?:[^"\]]+="(?:[^"\\\]]|\\.)*")(?: [^"\]]+="(?:[^"\\\]]|\\.)*")*\]) '
)


@dataclass(frozen=True)
class Received:
    """One message: header fields, and the trail line it carries."""

    pri: int
    timestamp: str
    app_name: str
    msgid: str
    line: bytes

    @property
    def entry(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.line)
        return value


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            length = b""
            while not length.endswith(b" "):
                byte = self.rfile.read(1)
                if not byte:
                    return
                length += byte
            body = self.rfile.read(int(length))
            header = HEADER.match(body)
            if header is None:
                self.server.errors.append(body[:200])
                return
            self.server.add(
                Received(
                    int(header.group(1)),
                    header.group(2).decode(),
                    header.group(4).decode(),
                    header.group(6).decode(),
                    body[header.end() :],
                )
            )


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.errors: list[bytes] = []
        self.changed = threading.Condition()

    def add(self, message: Received) -> None:
        with self.changed:
            self.received.append(message)
            self.changed.notify_all()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"collector has {len(self.received)} messages only")
                self.changed.wait(left)


@contextlib.contextmanager
def collector() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def request_ids(messages: list[Received]) -> dict[str, Received]:
    return {m.entry["request_id"]: m for m in messages if m.entry.get("type") == "request"}


def unique_in_order(messages: list[Received]) -> list[Received]:
    """At least once: a restart may resend its last batch."""
    seen: dict[int, Received] = {}
    for message in messages:
        seen.setdefault(message.entry["seq"], message)
    return [seen[seq] for seq in sorted(seen)]


def assert_chain_from_genesis(messages: list[Received]) -> None:
    prev = "0" * 64
    for seq, message in enumerate(unique_in_order(messages), start=1):
        entry = message.entry
        assert (entry["seq"], entry["prev"]) == (seq, prev)
        prev = hashlib.sha256(message.line).hexdigest()


@pytest.fixture
def syslog() -> Iterator[_Server]:
    with collector() as server:
        yield server


def test_s3_requests_reach_the_collector(tmp_path: Path, syslog: _Server) -> None:
    env = {
        "ANDROMEDE_AUDIT_SYSLOG_ADDRESS": f"127.0.0.1:{syslog.port}",
        "ANDROMEDE_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0.5",
    }
    bucket = "syslog-" + secrets.token_hex(4)
    with running_server(tmp_path / "data", workers=2, **env) as server:
        s3 = server.client()
        expected = {
            s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["RequestId"]: (
                "CreateBucket",
                200,
            ),
            s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")["ResponseMetadata"][
                "RequestId"
            ]: ("PutObject", 200),
            s3.get_object(Bucket=bucket, Key="a.txt")["ResponseMetadata"]["RequestId"]: (
                "GetObject",
                200,
            ),
        }
        with pytest.raises(ClientError) as missing:
            s3.get_object(Bucket=bucket, Key="nothing-here")
        expected[missing.value.response["ResponseMetadata"]["RequestId"]] = ("GetObject", 404)
        syslog.wait_for(lambda got: expected.keys() <= request_ids(got).keys())
        arrived = request_ids(syslog.received)
        for request_id, (operation, status) in expected.items():
            message = arrived[request_id]
            assert message.msgid == operation
            assert message.entry["status"] == status
            assert message.pri == (13 * 8 + 5 if status >= 400 else 13 * 8 + 6)
            assert message.timestamp == message.entry["time"]
            assert message.app_name == "andromede"
            assert message.entry["bucket"] == bucket
        syslog.wait_for(lambda got: any(m.entry["type"] == "checkpoint" for m in got))
    assert not syslog.errors
    assert_chain_from_genesis(syslog.received)


def test_a_restarted_server_resumes_shipping_without_gaps(tmp_path: Path, syslog: _Server) -> None:
    address = f"127.0.0.1:{syslog.port}"
    bucket = "syslog-" + secrets.token_hex(4)
    with running_server(tmp_path / "data", ANDROMEDE_AUDIT_SYSLOG_ADDRESS=address) as server:
        first = server.client().create_bucket(Bucket=bucket)["ResponseMetadata"]["RequestId"]
        syslog.wait_for(lambda got: first in request_ids(got))
        server.stop()
        # Shipped while stopping (the collector may still be reading it), not left for the
        # next start; the startup sweep's own shutdown checkpoint comes before the request.
        first_seq = next(
            m.entry["seq"] for m in syslog.received if m.entry.get("request_id") == first
        )
        syslog.wait_for(
            lambda got: any(
                m.entry["type"] == "checkpoint"
                and m.entry["reason"] == "shutdown"
                and m.entry["seq"] > first_seq
                for m in got
            ),
            timeout=5,
        )
        server.start()
        last = server.client().put_object(Bucket=bucket, Key="k", Body=b"x")
        last_id = last["ResponseMetadata"]["RequestId"]
        syslog.wait_for(lambda got: last_id in request_ids(got))
    assert not syslog.errors
    shipped = unique_in_order(syslog.received)
    # The first run's shutdown checkpoint sits between the two requests, in chain order.
    reasons = [m.entry.get("reason") for m in shipped if m.entry["type"] == "checkpoint"]
    assert "shutdown" in reasons
    assert_chain_from_genesis(syslog.received)
