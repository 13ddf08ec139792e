"""Invariant 6 across ``kill -9``: no request is acknowledged without its record, and the trail
a crash leaves behind still verifies (its tail simply lacks a checkpoint until the restart).

Client threads keep sending small PUTs and GETs to two workers while the test kills the whole
process group at a random moment, restarts it, and checks the trail, several times over. Small
segments make the crashes land around segment rotations too.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from support.audit import trail_entries, verify_data_dir
from support.server import Server

pytestmark = pytest.mark.slow

ROUNDS = 4
GONE = (BotoConnectionError, HTTPClientError)
ENV = {"ANDROMEDE_AUDIT_SEGMENT_BYTES": str(64 * 1024), "ANDROMEDE_AUDIT_RETRY_SECONDS": "0.2"}


def _load(server: Server, acked: set[str], stop: threading.Event, n: int) -> None:
    s3 = server.client(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
    i = 0
    while not stop.is_set():
        i += 1
        call: Callable[[], Any] = (
            partial(s3.put_object, Bucket="crash", Key=f"t{n}/{i % 20}", Body=b"v" * i)
            if i % 2
            else partial(s3.list_objects_v2, Bucket="crash", MaxKeys=5)
        )
        try:
            rid = call()["ResponseMetadata"]["RequestId"]
        except ClientError as exc:
            rid = exc.response["ResponseMetadata"]["RequestId"]
        except GONE:
            continue
        acked.add(rid)


def test_kill_9_never_loses_an_acknowledged_record(make_server: Callable[..., Server]) -> None:
    server = make_server(workers=2, **ENV)
    server.start()
    server.client().create_bucket(Bucket="crash")
    acked: set[str] = set()
    rng = random.Random(6)
    for _ in range(ROUNDS):
        stop = threading.Event()
        threads = [threading.Thread(target=_load, args=(server, acked, stop, n)) for n in range(8)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 2.0))  # the kill lands at a random moment: the test
        server.stop(kill=True)
        stop.set()
        for t in threads:
            t.join()
        code, report = verify_data_dir(server.data_dir)
        assert code == 0, report
        server.start()
    server.stop()
    code, report = verify_data_dir(server.data_dir)
    assert code == 0, report
    entries = trail_entries(server.data_dir / "audit")
    ids = [e["request_id"] for e in entries if e["type"] == "request"]
    assert not acked - set(ids), f"{len(acked - set(ids))} acknowledged requests unrecorded"
    assert len(ids) == len(set(ids)), "a request was recorded twice"
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[-1]["type"] == "checkpoint"
    assert entries[-1]["reason"] == "shutdown"
