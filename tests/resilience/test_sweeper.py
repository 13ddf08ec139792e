"""The sweeper removes what nothing references (replaced, deleted, aborted, interrupted data)
and never what something does.

Servers here run with a one-second garbage grace and sweep every second, so garbage should
be gone from disk within a few seconds.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from support.resilience import (
    blob_files,
    blob_path,
    live_blobs,
    payload,
    plant_blob,
    plant_part_file,
    tmp_files,
)
from support.server import Server
from support.waiting import wait_until

MiB = 1 << 20
FAST = {"ANDROMEDE_GARBAGE_GRACE_SECONDS": "1", "ANDROMEDE_SWEEP_INTERVAL_SECONDS": "1"}
BUCKET = "swept"


def wait_gone(server: Server, blobs: set[str], timeout: float = 10.0) -> None:
    """Wait until none of ``blobs`` is on disk."""
    wait_until(
        lambda: not any(blob_path(server.data_dir, b).exists() for b in blobs),
        timeout,
        0.1,
        f"the sweep of {len(blobs)} unreferenced blob(s)",
    )


def assert_live_intact(server: Server, s3: Any, objects: dict[str, bytes]) -> None:
    """Every live object's blobs are on disk and it reads back whole."""
    missing = live_blobs(server.data_dir) - blob_files(server.data_dir)
    assert not missing, f"live blobs removed: {missing}"
    for key, data in objects.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data, key


@pytest.fixture
def fast_server(make_server: Callable[..., Server]) -> Server:
    """A started server that collects garbage after one second, with an empty bucket."""
    server = make_server(**FAST)
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    return server


def put(s3: Any, key: str, generation: int, size: int = 4096) -> bytes:
    data = payload(key, generation, size)
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return data


@pytest.mark.parametrize("workers", [1, 2])
def test_leftovers_are_removed_at_start(make_server: Callable[..., Server], workers: int) -> None:
    # Default grace periods: only the startup sweep can remove fresh leftovers this quickly.
    # With two workers, the one holding the job lease sweeps while the other waits to serve.
    server = make_server(workers)
    server.start()
    s3 = server.client()
    s3.create_bucket(Bucket=BUCKET)
    live = {f"k{i}": put(s3, f"k{i}", 1, i * 1000) for i in range(5)}
    server.stop()
    part_file = plant_part_file(server.data_dir)
    orphan = plant_blob(server.data_dir)
    assert part_file in tmp_files(server.data_dir)
    server.start()
    assert tmp_files(server.data_dir) == []
    assert not blob_path(server.data_dir, orphan).exists()
    assert_live_intact(server, server.client(), live)
    assert blob_files(server.data_dir) == live_blobs(server.data_dir)


def test_sweeping_never_removes_data_being_written(make_server: Callable[..., Server]) -> None:
    """Writers race a sweeper that runs back to back with a one-second grace: every
    acknowledged object must read back whole."""
    server = make_server(
        workers=2, ANDROMEDE_GARBAGE_GRACE_SECONDS="1", ANDROMEDE_SWEEP_INTERVAL_SECONDS="0.05"
    )
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    acked: dict[str, bytes] = {}
    failures: list[BaseException] = []

    def writer(name: str) -> None:
        s3 = server.client()
        try:
            for generation in range(12):
                key = f"{name}/{generation % 3}"
                acked[key] = put(s3, key, generation, (1 + generation % 4) * 2 * MiB)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert_live_intact(server, server.client(), acked)
    assert os.listdir(server.data_dir / "sites" / "local" / "tmp") == []


def put_pausing_before_end(
    s3: Any, key: str, data: bytes, pause: float, ready: threading.Barrier
) -> int:
    """PUT ``data`` as one HTTP chunk, then wait ``pause`` s and for the others before ending
    the body: the blob's last byte is written long before it is committed."""
    url = urllib.parse.urlsplit(
        s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": key})
    )
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    try:
        conn.putrequest("PUT", f"{url.path}?{url.query}")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"%x\r\n%s\r\n" % (len(data), data))
        time.sleep(pause)  # the body ending late is what this test is about
        ready.wait(timeout=30)
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_sweeping_spares_blobs_whose_body_ended_late(make_server: Callable[..., Server]) -> None:
    """Regression: the orphan sweep judged a blob by the age of its last byte against the
    garbage grace, and deleted acknowledged objects whose body ended after that grace."""
    server = make_server(
        workers=2, ANDROMEDE_GARBAGE_GRACE_SECONDS="1", ANDROMEDE_SWEEP_INTERVAL_SECONDS="0.02"
    )
    server.start()
    s3 = server.client()
    s3.create_bucket(Bucket=BUCKET)
    writers = 16
    ready = threading.Barrier(writers)
    objects = {f"late/{i}": payload(f"late/{i}", 1, MiB) for i in range(writers)}
    statuses: dict[str, int | BaseException] = {}

    def write(key: str) -> None:
        try:
            statuses[key] = put_pausing_before_end(s3, key, objects[key], 2.0, ready)
        except BaseException as exc:
            statuses[key] = exc
            ready.abort()

    threads = [threading.Thread(target=write, args=(key,)) for key in objects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == dict.fromkeys(objects, 200)
    time.sleep(0.5)  # several sweeps
    assert_live_intact(server, s3, objects)
