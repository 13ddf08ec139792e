"""Shipping a live trail to a syslog collector: RFC 5424 over TCP, octet counting.

The trail is written in-process by the real writer; the collector is a real TCP server that
parses frames and headers strictly and keeps what it received, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.audit.syslog import SyslogShipper
from andromede.audit.trail import HashChainTrail, TrailConfig
from andromede.core.audit import AuditRecord
from support.waiting import wait_until_async

HOST = "gw1.example.fr"
PRINTUSASCII = rb"[\x21-\x7e]"
HEADER = re.compile(
    rb"<(0|[1-9][0-9]{0,2})>1 "
    rb"(-|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) "
    rb"(" + PRINTUSASCII + rb"{1,255}) (" + PRINTUSASCII + rb"{1,48}) "
    rb"(" + PRINTUSASCII + rb"{1,128}) (" + PRINTUSASCII + rb"{1,32}) "
)
SD_NAME = re.compile(rb"[\x21-\x7e]{1,32}")


class SyslogError(ValueError):
    """A frame or message that RFC 5424 / RFC 6587 does not allow."""


@dataclass
class Message:
    """One RFC 5424 message as the collector parsed it."""

    pri: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]]
    msg: bytes

    @property
    def entry(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.msg)
        return value

    @property
    def seq(self) -> int:
        return int(self.entry["seq"])


# An independent RFC 5424 STRUCTURED-DATA parser, one branch per grammar rule, kept in one
# piece so it reads against the RFC's ABNF.
def parse_sd(data: bytes) -> tuple[dict[str, dict[str, str]], bytes]:  # noqa: C901
    """STRUCTURED-DATA at the start of ``data``: the elements and what follows."""
    if data.startswith(b"-"):
        return {}, data[1:]
    elements: dict[str, dict[str, str]] = {}
    while data.startswith(b"["):
        name = SD_NAME.match(data, 1)
        if name is None or any(c in name.group() for c in b'= ]"'):
            raise SyslogError(f"bad SD-ID in {data[:40]!r}")
        sd_id = name.group().split(b" ")[0].split(b"=")[0].split(b"]")[0]
        pos = 1 + len(sd_id)
        params: dict[str, str] = {}
        while data[pos : pos + 1] == b" ":
            eq = data.index(b'="', pos + 1)
            param = data[pos + 1 : eq]
            if not SD_NAME.fullmatch(param) or any(c in param for c in b'= ]"'):
                raise SyslogError(f"bad PARAM-NAME {param!r}")
            pos, value = eq + 2, bytearray()
            while data[pos : pos + 1] != b'"':
                if data[pos : pos + 1] == b"\\" and data[pos + 1 : pos + 2] in (b'"', b"\\", b"]"):
                    pos += 1
                elif data[pos : pos + 1] in (b"]", b""):
                    raise SyslogError("unescaped ] or unterminated PARAM-VALUE")
                value += data[pos : pos + 1]
                pos += 1
            params[param.decode()] = value.decode("utf-8")
            pos += 1
        if data[pos : pos + 1] != b"]":
            raise SyslogError(f"SD element not closed in {data[:80]!r}")
        elements[sd_id.decode()] = params
        data = data[pos + 1 :]
    if not elements:
        raise SyslogError("STRUCTURED-DATA is neither - nor an SD element")
    return elements, data


def parse_message(data: bytes) -> Message:
    """A SYSLOG-MSG, strictly."""
    header = HEADER.match(data)
    if header is None:
        raise SyslogError(f"bad header: {data[:120]!r}")
    pri = int(header.group(1))
    if pri > 191:
        raise SyslogError(f"PRI {pri} out of range")
    sd, rest = parse_sd(data[header.end() :])
    if rest and not rest.startswith(b" "):
        raise SyslogError("no SP between STRUCTURED-DATA and MSG")
    timestamp, hostname, app_name, procid, msgid = (
        header.group(i).decode("ascii") for i in range(2, 7)
    )
    return Message(pri, timestamp, hostname, app_name, procid, msgid, sd, rest[1:])


@dataclass
class Collector:
    """An RFC 5424 collector on 127.0.0.1 (RFC 6587 octet counting only)."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while True:
                length = await reader.readuntil(b" ")
                if not re.fullmatch(rb"[1-9][0-9]*", length[:-1]):
                    raise SyslogError(f"bad MSG-LEN {length!r}")
                self.messages.append(parse_message(await reader.readexactly(int(length[:-1]))))
                self._arrived.set()
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                self.errors.append(f"connection closed inside a frame: {exc.partial[:40]!r}")
        except (SyslogError, ValueError, asyncio.LimitOverrunError) as exc:
            self.errors.append(str(exc))
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def wait_until(self, done: Callable[[], bool], seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while not done():
                self._arrived.clear()
                await self._arrived.wait()

    def seqs(self) -> list[int]:
        return [m.seq for m in self.messages]


def trail_lines(directory: Path) -> list[bytes]:
    """Every whole line of the trail on disk, oldest first, without newlines."""
    return [
        line.raw[:-1]
        for _, path in seg.list_segments(directory)
        for line in seg.iter_lines(path)
        if line.raw.endswith(b"\n")
    ]


def assert_chain(messages: list[Message], key: Ed25519PrivateKey, first_prev: str) -> None:
    """What the collector holds re-chains, and its checkpoints verify."""
    prev = first_prev
    for message in messages:
        entry = message.entry
        assert entry["prev"] == prev, f"chain broken at seq {entry['seq']}"
        if entry["type"] == fmt.CHECKPOINT:
            assert fmt.checkpoint_signature_ok(entry, key.public_key())
        prev = fmt.line_hash(message.msg)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@contextlib.asynccontextmanager
async def open_trail(directory: Path, key: Ed25519PrivateKey) -> AsyncIterator[HashChainTrail]:
    trail = HashChainTrail(
        TrailConfig(directory, segment_bytes=65536, checkpoint_interval=0.2), key
    )
    trail.open()
    try:
        yield trail
    finally:
        await trail.close()


async def write(trail: HashChainTrail, count: int, start: int = 0, status: int = 200) -> None:
    records = [
        AuditRecord(
            "request",
            dt.datetime.now(dt.UTC),
            "s3",
            "GetObject" if status >= 400 else "PutObject",
            request_id=f"req-{start + i}",
            bucket="photos",
            key="k" * 100,
            status=status,
            error="AccessDenied" if status >= 400 else None,
        )
        for i in range(count)
    ]
    await asyncio.gather(*(trail.record(r) for r in records))


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    started = Collector()
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


def shipper(audit_dir: Path, port: int, **options: Any) -> SyslogShipper:
    options.setdefault("initial_backoff", 0.02)
    options.setdefault("max_backoff", 0.1)
    return SyslogShipper(
        audit_dir, f"127.0.0.1:{port}", audit_dir / "syslog-cursor", HOST, **options
    )


def cursor_seq(audit_dir: Path) -> int:
    return int(json.loads((audit_dir / "syslog-cursor").read_bytes())["seq"])


async def cursor_reaches(audit_dir: Path, seq: int) -> None:
    """The cursor is saved just after the bytes drained: wait for it (5 s at most)."""
    await wait_until_async(
        lambda: (audit_dir / "syslog-cursor").exists() and cursor_seq(audit_dir) >= seq,
        5,
        0.01,
        f"the cursor reaching {seq}",
    )


def write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


async def test_every_entry_arrives_once_in_order_and_rechains(
    audit_dir: Path, key: Ed25519PrivateKey, collector: Collector
) -> None:
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 300)
        await write(trail, 20, start=300, status=403)
    assert len(seg.list_segments(audit_dir)) > 2  # the shipper crosses segment boundaries
    sender = shipper(audit_dir, collector.port)
    try:
        sent = await sender.ship_once()
        lines = trail_lines(audit_dir)
        await collector.wait_until(lambda: len(collector.messages) >= len(lines))
    finally:
        await sender.close()
    assert not collector.errors
    assert sent == len(lines)
    assert [m.msg for m in collector.messages] == lines  # the exact bytes, in order
    assert collector.seqs() == list(range(1, len(lines) + 1))
    assert_chain(collector.messages, key, fmt.GENESIS)
    assert cursor_seq(audit_dir) == len(lines)
    for message in collector.messages:
        entry = message.entry
        assert (message.hostname, message.app_name) == (HOST, "andromede")
        assert message.timestamp == entry["time"]
        assert message.sd["andromede@32473"]["seq"] == str(entry["seq"])
        if entry["type"] == "request":
            assert message.msgid == entry["operation"]
            assert message.sd["andromede@32473"]["request_id"] == entry["request_id"]
            assert message.pri == (13 * 8 + 5 if entry["status"] >= 400 else 13 * 8 + 6)
        else:
            assert (message.msgid, message.pri) == (entry["type"], 13 * 8 + 6)
    kinds = {m.entry["type"] for m in collector.messages}
    assert kinds == {"segment", "request", "checkpoint"}


async def test_a_live_trail_is_followed_while_it_grows(
    audit_dir: Path, key: Ed25519PrivateKey, collector: Collector
) -> None:
    sender = shipper(audit_dir, collector.port)
    async with open_trail(audit_dir, key) as trail:
        task = asyncio.create_task(sender.run_forever(poll_interval=0.01))
        for round_ in range(10):
            await write(trail, 40, start=round_ * 40)
            await asyncio.sleep(0.02)  # the trail grows while it is followed: the point
    lines = trail_lines(audit_dir)
    try:
        await collector.wait_until(lambda: len(collector.messages) >= len(lines))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not collector.errors
    assert [m.msg for m in collector.messages] == lines
    assert_chain(collector.messages, key, fmt.GENESIS)


async def test_a_collector_down_at_first_gets_everything_once_it_is_up(
    audit_dir: Path, key: Ed25519PrivateKey
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = shipper(audit_dir, port)
    task = asyncio.create_task(sender.run_forever(poll_interval=0.01))
    late = Collector(port)
    try:
        async with open_trail(audit_dir, key) as trail:
            await write(trail, 150)
        await asyncio.sleep(0.3)  # several refused connections, with backoff
        assert not (audit_dir / "syslog-cursor").exists()
        await late.start()
        lines = trail_lines(audit_dir)
        await late.wait_until(lambda: len(late.messages) >= len(lines))
        await cursor_reaches(audit_dir, len(lines))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await late.stop()
    assert not late.errors
    assert [m.msg for m in late.messages] == lines
    assert cursor_seq(audit_dir) == len(lines)


async def test_a_dropped_connection_is_reopened_without_loss(
    audit_dir: Path, key: Ed25519PrivateKey, collector: Collector
) -> None:
    sender = shipper(audit_dir, collector.port)
    task = asyncio.create_task(sender.run_forever(poll_interval=0.01))
    try:
        async with open_trail(audit_dir, key) as trail:
            await write(trail, 50)
            await collector.wait_until(lambda: len(collector.messages) >= 50)
            await collector.stop()  # the collector restarts
            await write(trail, 50, start=50)
            await asyncio.sleep(0.2)  # writes while the collector is down: the point
            await collector.start()
            await write(trail, 50, start=100)
        lines = trail_lines(audit_dir)
        await collector.wait_until(lambda: len(collector.messages) >= len(lines))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not collector.errors
    assert collector.connections >= 2
    assert [m.msg for m in collector.messages] == lines


async def test_a_restarted_shipper_resumes_from_its_cursor(
    audit_dir: Path, key: Ed25519PrivateKey, collector: Collector
) -> None:
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 120)
        first = shipper(audit_dir, collector.port, batch_lines=50)
        assert await first.ship_once() == len(trail_lines(audit_dir))
        await first.close()
        shipped = cursor_seq(audit_dir)
        await write(trail, 80, start=120)
    second = shipper(audit_dir, collector.port, batch_lines=50)
    try:
        sent = await second.ship_once()
    finally:
        await second.close()
    lines = trail_lines(audit_dir)
    assert sent == len(lines) - shipped
    await collector.wait_until(lambda: len(collector.messages) >= len(lines))
    assert not collector.errors
    assert [m.msg for m in collector.messages] == lines  # no gap, no duplicate
    assert_chain(collector.messages, key, fmt.GENESIS)


async def test_only_the_unacknowledged_batch_is_sent_twice(
    audit_dir: Path, key: Ed25519PrivateKey, collector: Collector
) -> None:
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 60)
    first = shipper(audit_dir, collector.port, batch_lines=1000)
    await first.ship_once()
    shipped = cursor_seq(audit_dir)
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 30, start=60)
    # The next batch is written and drained, then the cursor cannot be saved (a crash there).
    blocker = audit_dir / "syslog-cursor.tmp"
    blocker.mkdir()
    with pytest.raises(IsADirectoryError):
        await first.ship_once()
    await first.close()
    blocker.rmdir()
    assert cursor_seq(audit_dir) == shipped
    second = shipper(audit_dir, collector.port)
    try:
        resent = await second.ship_once()
    finally:
        await second.close()
    lines = trail_lines(audit_dir)
    assert resent == len(lines) - shipped
    await collector.wait_until(lambda: len(collector.messages) >= len(lines) + resent)
    seqs = collector.seqs()
    assert seqs == [*range(1, len(lines) + 1), *range(shipped + 1, len(lines) + 1)]
    assert cursor_seq(audit_dir) == len(lines)


async def test_a_partial_last_line_waits_for_its_newline(
    audit_dir: Path, key: Ed25519PrivateKey, collector: Collector
) -> None:
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 10)
    (audit_dir / "head").unlink()  # a copy of the segments: only newlines say what is whole
    lines = trail_lines(audit_dir)
    number, path = seg.list_segments(audit_dir)[-1]
    end = seg.last_entry(path)
    assert end is not None
    extra = fmt.entry_line(
        len(lines) + 1, fmt.line_hash(lines[-1]), fmt.dumps({"type": "event", "operation": "X"})
    )
    offset = end[0].offset + len(end[0].raw)
    sender = shipper(audit_dir, collector.port)
    try:
        write_at(path, offset, extra[:40])
        assert await sender.ship_once() == len(lines)
        assert await sender.ship_once() == 0
        write_at(path, offset + 40, extra[40:-1])  # all but the newline
        assert await sender.ship_once() == 0
        write_at(path, offset + len(extra) - 1, b"\n")
        assert await sender.ship_once() == 1
    finally:
        await sender.close()
    await collector.wait_until(lambda: len(collector.messages) >= len(lines) + 1)
    assert [m.msg for m in collector.messages] == [*lines, extra[:-1]]
    assert number == seg.list_segments(audit_dir)[-1][0]


async def test_lines_past_the_published_head_wait_until_published(
    audit_dir: Path, key: Ed25519PrivateKey, collector: Collector
) -> None:
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 10)
    lines = trail_lines(audit_dir)
    _, path = seg.list_segments(audit_dir)[-1]
    end = seg.last_entry(path)
    assert end is not None
    # A whole, chained line beyond the head: a group written but not (yet) synced.
    extra = fmt.entry_line(
        len(lines) + 1, fmt.line_hash(lines[-1]), fmt.dumps({"type": "event", "operation": "X"})
    )
    write_at(path, end[0].offset + len(end[0].raw), extra)
    sender = shipper(audit_dir, collector.port)
    try:
        assert await sender.ship_once() == len(lines)
        assert await sender.ship_once() == 0
        async with open_trail(audit_dir, key):  # recovery adopts the whole line
            assert await sender.ship_once() >= 1
    finally:
        await sender.close()
    assert [m.msg for m in collector.messages][: len(lines) + 1] == [*lines, extra[:-1]]


async def test_entries_removed_by_retention_are_skipped_with_a_warning(
    audit_dir: Path,
    key: Ed25519PrivateKey,
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 40)
        sender = shipper(audit_dir, collector.port)
        await sender.ship_once()  # the cursor now points into segment 1
        shipped = cursor_seq(audit_dir)
        await write(trail, 400, start=40)
    segments = seg.list_segments(audit_dir)
    assert len(segments) >= 4
    for _, path in segments[:3]:
        path.unlink()
    oldest = seg.first_entry(segments[3][1])
    assert oldest is not None
    try:
        with caplog.at_level(logging.WARNING, logger="andromede.audit.syslog"):
            await sender.ship_once()
    finally:
        await sender.close()
    lines = trail_lines(audit_dir)
    await collector.wait_until(lambda: len(collector.messages) >= shipped + len(lines))
    assert collector.seqs() == [*range(1, shipped + 1), *range(oldest["seq"], lines_end(lines))]
    assert f"audit entries {shipped + 1} to {oldest['seq'] - 1} were never shipped" in caplog.text
    assert_chain(collector.messages[shipped:], key, oldest["prev"])


def lines_end(lines: list[bytes]) -> int:
    return int(json.loads(lines[-1])["seq"]) + 1


async def test_an_unreadable_cursor_means_shipping_everything_again(
    audit_dir: Path, key: Ed25519PrivateKey, collector: Collector
) -> None:
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 5)
    (audit_dir / "syslog-cursor").write_text("not json")
    sender = shipper(audit_dir, collector.port)
    try:
        sent = await sender.ship_once()
    finally:
        await sender.close()
    assert sent == len(trail_lines(audit_dir))
    stored = json.loads((audit_dir / "syslog-cursor").read_text())
    assert (stored["v"], stored["seq"]) == (1, sent)
    assert stored["hash"] == fmt.line_hash(trail_lines(audit_dir)[-1])


def _edit_live_segment_and_lose_the_head(audit_dir: Path) -> None:
    live = sorted(audit_dir.glob("*.log"))[-1]
    data = live.read_bytes()
    write_at(live, data.index(b"req-5"), b"req-X")
    (audit_dir / "head").unlink()


async def test_entries_a_recovery_replaced_are_shipped_with_the_event_that_explains_them(
    audit_dir: Path, key: Ed25519PrivateKey, collector: Collector
) -> None:
    """An edit of the live segment, then a restart on a lost head: recovery sets the entries
    after the edit aside and reuses their seqs. The collector must still get what replaced
    them, the recovery's event first."""
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 20)
        first = shipper(audit_dir, collector.port)
        await first.ship_once()
        await first.close()
    _edit_live_segment_and_lose_the_head(audit_dir)
    async with open_trail(audit_dir, key) as trail:
        await write(trail, 3, start=100)
    second = shipper(audit_dir, collector.port)
    try:
        await second.ship_once()
    finally:
        await second.close()
    lines = trail_lines(audit_dir)
    await collector.wait_until(lambda: {m.msg for m in collector.messages} >= set(lines))
    received = [m.msg for m in collector.messages]
    assert any(b"audit:DiscardedTail" in msg for msg in received)
    assert all(any(f"req-{n}".encode() in msg for msg in received) for n in (100, 101, 102))
