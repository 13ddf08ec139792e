"""The writer process's loop and the workers' client, in one process: records from several
connections end up once each in one chain; failures reach the waiting requests as
AuditUnavailable, never as an acknowledgement."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import segments as seg
from andromede.audit.chain import ChainWriter, TrailConfig
from andromede.audit.inline import InlineAppender
from andromede.audit.remote import RemoteTrail
from andromede.audit.verify import verify_trail
from andromede.audit.writer import WriterLoop, listen
from andromede.core import audit, errors
from andromede.core.audit import AuditRecord, RequestTrace


@dataclass
class Writer:
    """A writer loop on a thread; ``stop`` closes its control pipe as ``serve`` does."""

    directory: Path
    socket: Path
    key: Ed25519PrivateKey
    thread: threading.Thread
    control: int
    appended: list[str]  # the bodies this writer loop appended (not those appended inline)

    def stop(self) -> None:
        if self.control >= 0:
            os.close(self.control)
            self.control = -1
        self.thread.join(timeout=10)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    key = Ed25519PrivateKey.generate()
    directory = tmp_path / "audit"
    chain = ChainWriter(TrailConfig(directory, segment_bytes=64 * 1024), key)
    chain.open()
    appended: list[str] = []
    append = chain.append

    def counted(bodies: list[str]) -> None:
        append(bodies)
        appended.extend(bodies)

    chain.append = counted  # type: ignore[method-assign]
    listener = listen(directory / "w.sock")
    read_end, write_end = os.pipe()

    def run() -> None:
        try:
            WriterLoop(chain, listener, read_end).run()
        finally:
            listener.close()
            chain.close()
            os.close(read_end)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    handle = Writer(directory, directory / "w.sock", key, thread, write_end, appended)
    yield handle
    handle.stop()


def _record(n: int) -> AuditRecord:
    return AuditRecord(
        "request", dt.datetime.now(dt.UTC), "s3", "PutObject", request_id=f"r{n}", status=200
    )


def _request_ids(directory: Path) -> list[str]:
    ids = []
    for _, path in seg.list_segments(directory):
        for line in seg.iter_lines(path):
            if b'"type":"request"' in line.raw:
                ids.append(line.raw.split(b'"request_id":"')[1].split(b'"')[0].decode())
    return ids


def test_records_from_several_workers_land_once_in_one_chain(writer: Writer) -> None:
    async def send() -> None:
        clients = [RemoteTrail(writer.socket), RemoteTrail(writer.socket)]
        for client in clients:
            await client.start()
        await asyncio.gather(*(clients[n % 2].record(_record(n)) for n in range(600)))
        for client in clients:
            await client.close()

    asyncio.run(send())
    writer.stop()
    ids = _request_ids(writer.directory)
    assert sorted(ids) == sorted(f"r{n}" for n in range(600))
    assert len(seg.list_segments(writer.directory)) > 1  # rotation happened on the way
    report = verify_trail(writer.directory, writer.key.public_key())
    assert report.intact, report.problems
    assert report.facts.last_checkpoint_reason == "shutdown"


def _chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True)


@pytest.mark.parametrize("inline", [False, True], ids=["writer", "inline"])
def test_failed_write_reaches_the_waiting_request(writer: Writer, inline: bool) -> None:
    """Whoever writes (the writer loop, or the worker itself for a lone request), a failed
    write refuses the request, then the next request past the retry interval is recorded."""
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    live = seg.list_segments(writer.directory)[-1][1]

    async def send() -> tuple[bool, bool]:
        appender = _inline(writer) if inline else None
        client = RemoteTrail(writer.socket, retry_seconds=0.2, inline=appender)
        await client.start()
        await client.record(_record(1))
        await asyncio.to_thread(_chattr, "+i", live)
        try:
            with pytest.raises(errors.AuditUnavailable):
                await client.record(_record(2))
            refused = not client.healthy()
        finally:
            await asyncio.to_thread(_chattr, "-i", live)
        # Past the client's 0.2 s retry interval, which is what is tested: before it, the
        # client refuses without trying the writer.
        await asyncio.sleep(0.3)
        await client.record(_record(3))
        healthy = client.healthy()
        await client.close()
        return refused, healthy

    refused, healthy = asyncio.run(send())
    assert refused
    assert healthy
    writer.stop()
    assert _request_ids(writer.directory) == ["r1", "r3"]
    assert len(writer.appended) == (0 if inline else 2)
    report = verify_trail(writer.directory, writer.key.public_key())
    assert report.intact, report.problems


def test_writer_gone_fails_waiting_and_new_requests(writer: Writer) -> None:
    async def send() -> None:
        client = RemoteTrail(writer.socket, retry_seconds=0.2)
        await client.start()
        await client.record(_record(1))
        writer.stop()
        with pytest.raises(errors.AuditUnavailable):
            await client.record(_record(2))
        assert not client.healthy()
        with pytest.raises(errors.AuditUnavailable):
            await client.record(_record(3))
        await client.close()

    asyncio.run(send())
    assert _request_ids(writer.directory) == ["r1"]


def _trace(n: int) -> RequestTrace:
    return RequestTrace("s3", f"t{n}", "127.0.0.1", "test", dt.datetime.now(dt.UTC))


def _inline(writer: Writer, **kwargs: float) -> InlineAppender:
    appender = InlineAppender(
        TrailConfig(writer.directory, segment_bytes=64 * 1024), writer.key, **kwargs
    )
    appender.open()
    return appender


def test_a_lone_request_appends_inline_into_the_same_chain(writer: Writer) -> None:
    """A record with no other request open goes into the chain from the worker itself; while
    other requests are open, records go to the writer loop; both land once each in one chain
    that verifies, across rotations."""

    async def send() -> None:
        client = RemoteTrail(writer.socket, inline=_inline(writer))
        await client.start()
        for n in range(150):
            await client.record(_record(n))  # alone: inline
        tokens = [audit.begin(_trace(n)) for n in range(3)]
        try:
            await asyncio.gather(*(client.record(_record(n)) for n in range(150, 300)))
        finally:
            for token in reversed(tokens):
                audit.end(token)
        await client.close()

    asyncio.run(send())
    writer.stop()
    ids = _request_ids(writer.directory)
    assert sorted(ids) == sorted(f"r{n}" for n in range(300))
    through_writer = {body.split('"request_id":"')[1].split('"')[0] for body in writer.appended}
    assert through_writer == {f"r{n}" for n in range(150, 300)}
    assert len(seg.list_segments(writer.directory)) > 1  # rotations by both writers
    report = verify_trail(writer.directory, writer.key.public_key())
    assert report.intact, report.problems


def test_a_slow_inline_sync_sends_the_next_records_to_the_writer(writer: Writer) -> None:
    async def send() -> None:
        # Every sync counts as slow: the first record is appended inline, then the appender
        # steps aside for the next minute.
        client = RemoteTrail(writer.socket, inline=_inline(writer, slow_seconds=0.0))
        await client.start()
        for n in range(3):
            await client.record(_record(n))
        await client.close()

    asyncio.run(send())
    writer.stop()
    assert _request_ids(writer.directory) == ["r0", "r1", "r2"]
    assert [b.split('"request_id":"')[1][:2] for b in writer.appended] == ["r1", "r2"]
