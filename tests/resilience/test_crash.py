"""Invariant 3: an acknowledged write survives ``kill -9``; an interrupted one is invisible and
cleaned up.

A writer thread keeps uploading (small PUTs, ~6 MiB PUTs, 2-part multipart uploads, deletes)
over a small set of keys, so most writes replace an earlier generation. Every payload names
its key and generation in its first bytes and is otherwise derived from them, so a reader can
tell which generation it got and whether it got all of it. The test kills the whole server
process group at a random moment, restarts it and checks what a client sees, many times over.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from support.resilience import (
    blob_files,
    generation_of,
    live_blobs,
    md5_etag,
    multipart_etag,
    payload,
    queued_blobs,
    tmp_files,
)
from support.server import Server

pytestmark = pytest.mark.slow

MiB = 1 << 20
KEYS = [f"k/{i:02d}" for i in range(10)]
# An error that means "the server went away", never "the server said no".
GONE = (BotoConnectionError, HTTPClientError)
CLIENT_CONFIG: dict[str, Any] = {"connect_timeout": 5, "read_timeout": 30}


@dataclass(frozen=True)
class Outcome:
    """What a key holds after one write: a payload of ``parts`` sizes, or nothing (delete)."""

    generation: int
    parts: tuple[int, ...] | None  # None: deleted; one size: single PUT; several: multipart

    @property
    def size(self) -> int:
        return sum(self.parts or ())


@dataclass
class History:
    """What a client may see at a key: the last acknowledged outcome, or a later one whose
    request was cut off by a kill (it may or may not have landed)."""

    acked: Outcome | None = None
    uncertain: list[Outcome] = field(default_factory=list)

    def allowed(self) -> list[Outcome | None]:
        return [self.acked, *self.uncertain]


@dataclass
class Writer:
    """Runs writes until the server goes away; records what was acknowledged."""

    client: Any
    bucket: str
    rng: random.Random
    histories: dict[str, History]
    next_generation: Callable[[], int]
    gone_at: float | None = None
    gone: BaseException | None = None
    failure: BaseException | None = None
    writes: int = 0

    def run(self) -> None:
        while True:
            key = self.rng.choice(KEYS)
            outcome = self._plan()
            try:
                self._write(key, outcome)
            except GONE as exc:
                self.gone_at, self.gone = time.monotonic(), exc
                return
            except BaseException as exc:
                self.failure = exc
                return
            self.histories[key] = History(outcome)
            self.writes += 1

    def _plan(self) -> Outcome:
        generation = self.next_generation()
        kind = self.rng.choices(["small", "large", "multipart", "delete"], [5, 2, 2, 1])[0]
        if kind == "small":
            size = self.rng.choice([0, 1, 100, self.rng.randrange(64 << 10)])
            return Outcome(generation, (size,))
        if kind == "large":
            return Outcome(generation, (6 * MiB + self.rng.randrange(4096),))
        if kind == "multipart":
            return Outcome(generation, (5 * MiB, 1 + self.rng.randrange(256 << 10)))
        return Outcome(generation, None)

    def _final(self, key: str, outcome: Outcome) -> None:
        """From here on, the request that would change the key is on the wire."""
        self.histories[key].uncertain.append(outcome)

    def _write(self, key: str, outcome: Outcome) -> None:
        s3, bucket = self.client, self.bucket
        if outcome.parts is None:
            self._final(key, outcome)
            s3.delete_object(Bucket=bucket, Key=key)
            return
        data = payload(key, outcome.generation, outcome.size)
        if len(outcome.parts) == 1:
            self._final(key, outcome)
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            return
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        done, start = [], 0
        for number, size in enumerate(outcome.parts, start=1):
            part = s3.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data[start : start + size],
            )
            done.append({"PartNumber": number, "ETag": part["ETag"]})
            start += size
        self._final(key, outcome)
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )


def expected_etag(key: str, outcome: Outcome) -> str:
    data = payload(key, outcome.generation, outcome.size)
    assert outcome.parts is not None
    if len(outcome.parts) == 1:
        return md5_etag(data)
    pieces, start = [], 0
    for size in outcome.parts:
        pieces.append(data[start : start + size])
        start += size
    return multipart_etag(pieces)


def listed_keys(s3: Any, bucket: str) -> dict[str, dict[str, Any]]:
    """Every key ListObjectsV2 shows, walking pages of 4."""
    found: dict[str, dict[str, Any]] = {}
    token: str | None = None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=4, **extra)
        for item in page.get("Contents", []):
            found[item["Key"]] = item
        if not page.get("IsTruncated"):
            return found
        token = page["NextContinuationToken"]


def check_key(s3: Any, bucket: str, key: str, history: History) -> Outcome | None:
    """The key reads back as one allowed outcome, whole; returns which one."""
    allowed = history.allowed()
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        head = None
        code = exc.response["Error"]["Code"]
    if head is None:
        assert code in ("404", "NoSuchKey"), f"{key}: HEAD failed with {code}"
        assert any(o is None or o.parts is None for o in allowed), (
            f"{key}: acknowledged data lost (allowed {allowed})"
        )
        return next((o for o in allowed if o is not None and o.parts is None), None)
    got = s3.get_object(Bucket=bucket, Key=key)
    body = got["Body"].read()
    match = next(
        (
            o
            for o in allowed
            if o is not None and o.parts and body == payload(key, o.generation, o.size)
        ),
        None,
    )
    assert match is not None, (
        f"{key}: {len(body)} bytes that are no allowed outcome (they name generation "
        f"{generation_of(body)}; allowed {allowed}): lost, torn or mixed"
    )
    etag = expected_etag(key, match)
    assert head["ContentLength"] == len(body) == got["ContentLength"], key
    assert head["ETag"] == etag == got["ETag"], key
    return match


def verify(s3: Any, bucket: str, histories: dict[str, History]) -> None:
    """What a client sees after a restart; each key's history collapses to what it shows."""
    listing = listed_keys(s3, bucket)
    assert set(listing) <= set(KEYS), f"unexpected keys {set(listing) - set(KEYS)}"
    for key in KEYS:
        shown = check_key(s3, bucket, key, histories[key])
        if shown is None or shown.parts is None:
            assert key not in listing, f"{key}: listed but GET fails"
        else:
            assert key in listing, f"{key}: readable but not listed"
            assert listing[key]["Size"] == shown.size, key
            assert listing[key]["ETag"] == expected_etag(key, shown), key
        histories[key] = History(shown)


def check_disk(server: Server) -> None:
    """After the startup sweep: no temporary file, every blob file referenced, every
    referenced blob present."""
    assert tmp_files(server.data_dir) == []
    files = blob_files(server.data_dir)
    live = live_blobs(server.data_dir)
    leaked = files - live - queued_blobs(server.data_dir)
    assert not leaked, f"{len(leaked)} blob files nothing references"
    assert live <= files, f"referenced blobs missing: {live - files}"


def crash_loop(server: Server, cycles: int, seed: int) -> int:
    """Write, kill at a random moment, restart, verify; ``cycles`` times. Returns the number of
    acknowledged writes."""
    rng = random.Random(seed)
    bucket = "crash-" + secrets.token_hex(4)
    histories = {key: History() for key in KEYS}
    counter = iter(range(1, 1 << 30))
    server.start()
    server.client().create_bucket(Bucket=bucket)
    acknowledged = 0
    for cycle in range(cycles):
        writer = Writer(
            server.client(**CLIENT_CONFIG),
            bucket,
            random.Random(rng.random()),
            histories,
            lambda: next(counter),
        )
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        time.sleep(rng.uniform(0.05, 1.5))  # the kill lands at a random moment: the test
        killed_at = time.monotonic()
        server.stop(kill=True)
        thread.join(timeout=60)
        assert not thread.is_alive(), "writer stuck after the kill"
        context = f"seed {seed}, cycle {cycle}"
        assert writer.failure is None, f"{context}: {writer.failure!r}\n{server.log()[-3000:]}"
        assert writer.gone_at is None or writer.gone_at >= killed_at, (
            f"{context}: connection failed before the kill: {writer.gone!r}\n{server.log()[-3000:]}"
        )
        acknowledged += writer.writes
        server.start()
        check_disk(server)
        verify(server.client(**CLIENT_CONFIG), bucket, histories)
    server.stop(kill=True)
    server.start()
    check_disk(server)
    verify(server.client(**CLIENT_CONFIG), bucket, histories)
    return acknowledged


# Two workers also sweep garbage every 0.2 s after a one-second grace, so kills land in the
# middle of sweeps too; one worker keeps the default grace, so garbage piles up across restarts.
FAST_SWEEP = {"ANDROMEDE_GARBAGE_GRACE_SECONDS": "1", "ANDROMEDE_SWEEP_INTERVAL_SECONDS": "0.2"}


@pytest.mark.parametrize(
    ("workers", "cycles", "env"), [(1, 15, {}), (2, 6, FAST_SWEEP)], ids=["1-worker", "2-workers"]
)
def test_acknowledged_writes_survive_kill(
    make_server: Callable[..., Server], workers: int, cycles: int, env: dict[str, str]
) -> None:
    seed = secrets.randbits(32)
    server = make_server(workers, **env)
    acknowledged = crash_loop(server, cycles, seed)
    # The kills must land on a busy server for the test to mean anything.
    assert acknowledged >= cycles, f"seed {seed}: only {acknowledged} writes acknowledged"
    assert "Traceback" not in server.log(), server.log()[-5000:]
