"""PostgreSQL restarted under load (issue 14): while the metadata database is away, requests
get 503 (never 500, never a hang past a bound); everything acknowledged before, during or after
is intact once it is back, with no restart of the gateway."""

from __future__ import annotations

import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from support.postgres import PostgresCluster, create_database, start_cluster
from support.server import Server, running_server

pytestmark = pytest.mark.postgres

DOWN_S = 4.0
# A request waits at most a connect timeout (5 s) and a pool checkout for the database: with
# room for a loaded machine.
LONGEST_S = 20.0


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    started = start_cluster(durable=True)  # a crash must not lose what was committed
    try:
        yield started
    finally:
        started.remove()


@dataclass
class Load:
    """One client writing then reading small objects in a loop, no SDK retries."""

    server: Server
    bucket: str
    acknowledged: dict[str, bytes] = field(default_factory=dict)
    outcomes: list[tuple[str, float]] = field(default_factory=list)  # (status or error, s)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        s3 = self.server.client()  # no SDK retries: every answer is seen
        n = 0
        while not self.stop.is_set():
            key, body = f"k{n}", secrets.token_bytes(1024)
            n += 1
            if self._call(partial(s3.put_object, Bucket=self.bucket, Key=key, Body=body)):
                self.acknowledged[key] = body
                self._call(partial(s3.get_object, Bucket=self.bucket, Key=key))

    def _call(self, call: Callable[[], object]) -> bool:
        start = time.monotonic()
        try:
            call()
            outcome = "200"
        except ClientError as exc:
            meta = exc.response["ResponseMetadata"]
            outcome = f"{meta['HTTPStatusCode']} {exc.response['Error']['Code']}"
        self.outcomes.append((outcome, time.monotonic() - start))
        return outcome == "200"


def ready(server: Server) -> tuple[int, str]:
    """``GET /_andromede/ready``: the status and the reasons."""
    try:
        with urllib.request.urlopen(f"{server.endpoint}/_andromede/ready", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_database_restart_gives_503s_then_everything_is_intact(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = create_database(cluster.url, "restart_" + secrets.token_hex(4))
    with running_server(tmp_path / "gw", ANDROMEDE_DATABASE_URL=url) as server:
        server.client().create_bucket(Bucket="load")
        load = Load(server, "load")
        thread = threading.Thread(target=load.run)
        thread.start()
        try:
            time.sleep(1.0)
            before = len(load.acknowledged)
            assert ready(server) == (200, "ready\n")
            cluster.stop()
            time.sleep(DOWN_S)
            during = list(load.outcomes)
            status, why = ready(server)
            cluster.start()
            time.sleep(3.0)
        finally:
            load.stop.set()
            thread.join(timeout=LONGEST_S + 10)
        assert before > 0
        kinds = {outcome for outcome, _ in load.outcomes}
        assert kinds <= {"200", "503 ServiceUnavailable"}, kinds
        assert any(o == "503 ServiceUnavailable" for o, _ in during[-5:]), during[-5:]
        assert max(took for _, took in load.outcomes) < LONGEST_S
        assert load.outcomes[-1][0] == "200"  # back without a gateway restart
        # A balancer's readiness check took the gateway out while the database was away.
        assert status == 503, why
        assert "metadata database" in why
        assert ready(server) == (200, "ready\n")
        s3 = server.client()
        for key, body in load.acknowledged.items():
            assert s3.get_object(Bucket="load", Key=key)["Body"].read() == body
        assert "Traceback" not in server.log(), server.log()[-3000:]
