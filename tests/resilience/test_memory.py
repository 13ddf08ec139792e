"""Invariant 7: memory per request is bounded, whatever the object size.

A 5 GiB object goes up and comes back down as streams (nothing in the test holds more than a
few MiB either) while a thread samples the server's resident memory.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from support.server import Server

psutil = pytest.importorskip("psutil")

MiB = 1 << 20
GiB = 1 << 30
SIZE = 5 * GiB  # the largest single PUT S3 accepts
BLOCK = MiB
MAX_RSS = 200 * 10**6
NEEDED_DISK = 12 * GiB
SHARDED_GROWTH = 96 * 10**6


class Sampler:
    """Samples the summed RSS of a server's process tree every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0
        self.samples = 0

    def _rss(self) -> int:
        total = 0
        for proc in [self._root, *self._root.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def blocks(size: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """``size`` deterministic pseudorandom bytes in 1 MiB blocks, fed to ``digest`` on the way.

    Each block is one of 64 random blocks stamped with its index, so no two blocks are equal
    and generating 5 GiB costs little more than copying it.
    """
    rng = random.Random(20240607)
    bases = [rng.randbytes(BLOCK) for _ in range(64)]
    for index in range(size // BLOCK):
        block = index.to_bytes(8, "big") + bases[index % 64][8:]
        digest.update(block)
        yield block


@pytest.mark.slow
def test_five_gib_object_streams_in_bounded_memory(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    free = shutil.disk_usage(tmp_path).free
    if free < NEEDED_DISK:
        pytest.skip(f"needs {NEEDED_DISK / GiB:.0f} GiB free disk, {free / GiB:.1f} GiB free")
    server = make_server(workers=1)
    server.start()
    try:
        run_round_trip(server)
    finally:
        # 5 GiB is too much to leave behind in pytest's kept tmp dirs.
        server.stop(kill=True)
        shutil.rmtree(server.data_dir, ignore_errors=True)


def run_round_trip(server: Server) -> None:
    """PUT then GET 5 GiB through presigned URLs, sampling the server's RSS throughout."""
    s3 = server.client()
    s3.create_bucket(Bucket="big")
    params = {"Bucket": "big", "Key": "five-gib"}
    put_url = s3.generate_presigned_url("put_object", Params=params, ExpiresIn=3600)
    get_url = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=3600)
    sent = hashlib.sha256()
    received = hashlib.sha256()
    size = 0
    started = time.monotonic()
    assert server.proc is not None
    with Sampler(server.proc.pid) as rss, httpx.Client(timeout=httpx.Timeout(300)) as http:
        put = http.put(put_url, content=blocks(SIZE, sent), headers={"Content-Length": str(SIZE)})
        assert put.status_code == 200, put.text
        uploaded = time.monotonic()
        with http.stream("GET", get_url) as got:
            assert got.status_code == 200
            assert got.headers["Content-Length"] == str(SIZE)
            for chunk in got.iter_raw(BLOCK):
                received.update(chunk)
                size += len(chunk)
    done = time.monotonic()
    assert size == SIZE
    assert received.hexdigest() == sent.hexdigest()
    assert rss.samples > 10
    assert rss.peak < MAX_RSS, f"server RSS peaked at {rss.peak / 1e6:.0f} MB"
    print(  # shown with -s: what CI time this test costs
        f"5 GiB up {uploaded - started:.1f}s, down {done - uploaded:.1f}s, "
        f"peak RSS {rss.peak / 1e6:.0f} MB over {rss.samples} samples"
    )


@pytest.mark.slow
def test_erasure_coded_object_streams_in_bounded_memory(tmp_path: Path) -> None:
    """The same through a layout: stripes of K MiB are encoded, and decoded, one at a time."""
    from support.placement import cluster

    size = GiB
    if shutil.disk_usage(tmp_path).free < 3 * size:
        pytest.skip("needs 3 GiB free disk")
    with cluster(tmp_path) as fr:
        s3 = fr.server.client()
        s3.create_bucket(Bucket="coded", CreateBucketConfiguration={"LocationConstraint": "fr-ec"})
        params = {"Bucket": "coded", "Key": "one-gib"}
        put_url = s3.generate_presigned_url("put_object", Params=params, ExpiresIn=3600)
        get_url = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=3600)
        sent, received = hashlib.sha256(), hashlib.sha256()
        assert fr.server.proc is not None
        with Sampler(fr.server.proc.pid) as idle:
            time.sleep(1)  # a second of idle samples: the baseline growth is measured against
        with Sampler(fr.server.proc.pid) as rss, httpx.Client(timeout=httpx.Timeout(300)) as http:
            put = http.put(
                put_url, content=blocks(size, sent), headers={"Content-Length": str(size)}
            )
            assert put.status_code == 200, put.text
            with http.stream("GET", get_url) as got:
                assert got.status_code == 200
                for chunk in got.iter_raw(BLOCK):
                    received.update(chunk)
        assert received.hexdigest() == sent.hexdigest()
        assert rss.samples > 5
        # Six sites, the erasure-code library and its per-thread drivers make an idle server
        # larger than the one-site one; what a 1 GiB request may add is what is bounded.
        grew = rss.peak - idle.peak
        assert grew < SHARDED_GROWTH, f"server RSS grew by {grew / 1e6:.0f} MB"
        shards = [p for name in ("fr-a", "fr-b", "fr-c", "fr-d") for p in fr.files(name)]
        assert len(shards) == 4  # ec:2+2, one shard per site
        assert all(p.stat().st_size < size // 2 + 64 * MiB for p in shards)
