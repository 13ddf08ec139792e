"""A key's life cycle seen from the data, against the real server with two worker processes:
how soon a disabled key stops serving everywhere, what a rotation's re-wrap changes on disk
(the manifests' wrapped DEKs, never the blob files), the audit events of key operations, and
tenants whose keys live in an HSM (SoftHSM2 over PKCS#11) or on a KMIP server.
"""

from __future__ import annotations

import http.client
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.audit import trail_records
from support.encryption import (
    SealedBlob,
    marked,
    marker,
    operator,
    root_tenant,
    sealed_blobs,
    sse_kms,
)
from support.s3errors import error_of
from support.s3objects import MiB, read
from support.server import Server, running_server
from support.waiting import wait_until
from support.workers import Workers, admin_call, s3_call

KMS_CACHE_S = 2.0  # kms_cache_seconds, the default
BOUND_S = KMS_CACHE_S + 1.0  # what the promise allows, with a margin for the test's own pace
PART = 5 * MiB
REWRAP_WAIT_S = 20.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two workers (as ``serve`` starts on this two-core machine), key jobs every 0.5 s."""
    with running_server(
        tmp_path_factory.mktemp("key-lifecycle") / "data",
        workers=2,
        ANDROMEDE_KMS_JOB_INTERVAL_SECONDS="0.5",
    ) as srv:
        wait_until(
            lambda: srv.log().count("Application startup complete") >= 2, 10, 0.1, "both workers"
        )
        yield srv


@pytest.fixture(scope="module")
def tenant(server: Server) -> str:
    return root_tenant(server)


@pytest.fixture
def bucket(server: Server) -> str:
    name = "life-" + secrets.token_hex(6)
    server.client().create_bucket(Bucket=name)
    return name


def create_key(server: Server, tenant: str) -> str:
    return str(operator(server).request("POST", "/v1/kms/keys", {"tenant": tenant})["key_id"])


def describe(server: Server, key_id: str) -> dict[str, Any]:
    described: dict[str, Any] = operator(server).request("GET", f"/v1/kms/keys/{key_id}")
    return described


# --- disable: how soon it applies everywhere --------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    via: str  # "changer" (the worker that made the change), "other" worker, or "fresh"
    started: float  # seconds after the state change's response
    status: int
    code: str | None
    body: bytes


def hammer(
    server: Server,
    pinned: Mapping[str, http.client.HTTPConnection],
    path: str,
    since: float,
    duration: float,
) -> list[Attempt]:
    """GETs one after another for ``duration`` seconds, timed from ``since``: in turn through
    each pinned connection, then on a fresh connection."""
    attempts: list[Attempt] = []
    routes = [*pinned, "fresh"]
    while (now := time.monotonic()) < since + duration:
        via = routes[len(attempts) % len(routes)]
        if via == "fresh":
            fresh = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                answer = s3_call(fresh, server, "GET", path)
            finally:
                fresh.close()
        else:
            answer = s3_call(pinned[via], server, "GET", path)
        attempts.append(Attempt(via, now - since, answer.status, answer.code, answer.body))
    return attempts


def _late(attempts: list[Attempt], after: float) -> list[tuple[str, float, int]]:
    return [(a.via, round(a.started, 3), a.status) for a in attempts if a.started > after]


def test_a_disabled_key_stops_serving_within_the_cache_bound(
    server: Server, tenant: str, bucket: str
) -> None:
    """The worker that disables the key refuses at once; the other, which had just served the
    object (so holds the key's state and the DEK in its caches), within kms_cache_seconds."""
    key_id = create_key(server, tenant)
    s3 = server.client()
    data = marked(marker(), 150_000)
    s3.put_object(Bucket=bucket, Key="k", Body=data, **sse_kms(key_id))
    workers = Workers(server)
    changer = workers.pids[0]
    pinned = {
        "changer": workers.connect(changer),
        "other": workers.connect(workers.other_than(changer)),
    }
    path = f"/{bucket}/k"
    try:
        warm = hammer(server, pinned, path, time.monotonic(), 0.5)
        assert {(a.via, a.status) for a in warm} >= {("changer", 200), ("other", 200)}

        answer = admin_call(pinned["changer"], server, "POST", f"/v1/kms/keys/{key_id}/disable")
        disabled_at = time.monotonic()
        assert answer.json()["state"] == "Disabled"
        attempts = hammer(server, pinned, path, disabled_at, BOUND_S + 1.5)
        assert all(a.body == data for a in attempts if a.status == 200)
        refused = {(a.status, a.code) for a in attempts if a.status != 200}
        assert refused <= {(400, "KMS.DisabledException")}
        assert [a for a in attempts if a.via == "changer" and a.status == 200] == []
        served = [a.started for a in attempts if a.status == 200]
        assert max(served, default=0.0) <= BOUND_S, _late(attempts, BOUND_S)
        assert len([a for a in attempts if a.started > BOUND_S]) >= 6
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="k2", Body=b"new", **sse_kms(key_id))
        assert error_of(exc) == ("KMS.DisabledException", 400)

        warm = hammer(server, pinned, path, time.monotonic(), 0.5)  # both cache "Disabled"
        answer = admin_call(pinned["changer"], server, "POST", f"/v1/kms/keys/{key_id}/enable")
        enabled_at = time.monotonic()
        assert answer.json()["state"] == "Enabled"
        attempts = hammer(server, pinned, path, enabled_at, BOUND_S + 1.5)
        assert all(a.body == data for a in attempts if a.status == 200)
        assert [a for a in attempts if a.via == "changer" and a.status != 200] == []
        refused_at = [a.started for a in attempts if a.status != 200]
        assert max(refused_at, default=0.0) <= BOUND_S, _late(attempts, BOUND_S)
    finally:
        for conn in pinned.values():
            conn.close()
    s3.put_object(Bucket=bucket, Key="k2", Body=b"new", **sse_kms(key_id))
    assert read(s3.get_object(Bucket=bucket, Key="k2")) == b"new"


# --- rotation: the re-wrap job ------------------------------------------------------------------
def sealed_under(data_dir: Path, key_id: str) -> list[SealedBlob]:
    """Every blob (object segment or upload part) whose DEK a version of ``key_id`` wraps."""
    return [b for b in sealed_blobs(data_dir) if b.key_id == key_id]


def wait_for_rewrap(server: Server, key_id: str, version: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        rewrap = describe(server, key_id)["rewrap"]
        if rewrap is not None and rewrap["target_version"] == version and rewrap["done"]:
            return dict(rewrap)
        return None

    return wait_until(done, REWRAP_WAIT_S, 0.2, f"the re-wrap of {key_id} to v{version}")


def test_rewrap_done_leaves_no_dek_under_an_old_version(server: Server, tenant: str) -> None:
    """The job's worker has just read an object under the key (so caches the key at version 1)
    when the other worker rotates it. Once ``describe`` says the re-wrap to version 2 is done,
    no manifest may name version 1.

    The job saves its progress, which refreshes its worker's copy of the key, after each
    bucket; the objects are in the tenant's first bucket by name so that they come before any
    such refresh."""
    bucket = "00-rewrap-" + secrets.token_hex(4)
    server.client().create_bucket(Bucket=bucket)
    key_id = create_key(server, tenant)
    s3 = server.client()
    names = [f"o{i}" for i in range(4)]
    for name in names:
        s3.put_object(Bucket=bucket, Key=name, Body=name.encode() * 1000, **sse_kms(key_id))
    time.sleep(KMS_CACHE_S + 0.5)  # no worker holds the key from the writes any more
    workers = Workers(server)
    job = workers.job_worker()
    at_job, at_other = workers.connect(job), workers.connect(workers.other_than(job))
    try:
        assert s3_call(at_job, server, "GET", f"/{bucket}/o0").status == 200
        rotated = admin_call(at_other, server, "POST", f"/v1/kms/keys/{key_id}/rotate")
        assert rotated.json()["current_version"] == 2
    finally:
        at_job.close()
        at_other.close()
    progress = wait_for_rewrap(server, key_id, 2)
    versions = {b.key: b.version for b in sealed_under(server.data_dir, key_id)}
    assert versions == dict.fromkeys(names, 2), (
        f"re-wrap to v2 reported done ({progress}) with manifests at {versions}"
    )
    for name in names:
        assert read(s3.get_object(Bucket=bucket, Key=name)) == name.encode() * 1000


def test_rewrap_done_covers_writes_made_while_a_worker_knew_the_old_version(
    server: Server, tenant: str, bucket: str
) -> None:
    """A worker may wrap new DEKs under the old version for up to kms_cache_seconds after a
    rotation made elsewhere (documented). Here the job's worker rotates, and the other, which
    had just read under the key, keeps writing objects while its copy of the key is fresh:
    once the re-wrap says it is done and the cache bound has passed, every one of them must
    be under version 2 as well."""
    key_id = create_key(server, tenant)
    s3 = server.client()
    s3.put_object(Bucket=bucket, Key="seed", Body=b"seed", **sse_kms(key_id))
    time.sleep(KMS_CACHE_S + 0.5)  # the cache bound itself: no observable end to wait for
    workers = Workers(server)
    job = workers.job_worker()
    at_job, at_other = workers.connect(job), workers.connect(workers.other_than(job))
    sse = {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": key_id,
    }
    written: list[str] = []
    try:
        assert s3_call(at_other, server, "GET", f"/{bucket}/seed").status == 200
        cached_at = time.monotonic()
        rotated = admin_call(at_job, server, "POST", f"/v1/kms/keys/{key_id}/rotate")
        assert rotated.json()["current_version"] == 2
        # Writes through the other worker across the job's first pass, until its cached copy
        # of the key is about to expire.
        while time.monotonic() < cached_at + KMS_CACHE_S - 0.2:
            name = f"late-{len(written)}"
            assert s3_call(at_other, server, "PUT", f"/{bucket}/{name}", b"late", sse).status == 200
            written.append(name)
            time.sleep(0.1)  # a steady trickle of writes across the cache's lifetime
    finally:
        at_job.close()
        at_other.close()
    wait_for_rewrap(server, key_id, 2)
    time.sleep(KMS_CACHE_S + 1.0)  # the bound, and two more runs of the job
    described = describe(server, key_id)["rewrap"]
    versions = {b.key: b.version for b in sealed_under(server.data_dir, key_id)}
    stale = sorted(k for k, v in versions.items() if v != 2)
    assert not described["done"] or stale == [], (
        f"re-wrap to v2 reported done ({described}) with {stale} of {sorted(versions)} "
        "still under version 1"
    )
    for name in written:
        assert read(s3.get_object(Bucket=bucket, Key=name)) == b"late"


# --- audit events ------------------------------------------------------------------------------
def test_key_operations_are_audit_events(server: Server, tenant: str) -> None:
    admin = operator(server)
    key_id = create_key(server, tenant)
    path = f"/v1/kms/keys/{key_id}"
    admin.request("POST", path + "/rotate")
    admin.request("POST", path + "/disable")
    admin.request("POST", path + "/enable")
    admin.request("POST", path + "/schedule-deletion", {"days": 7})
    admin.request("POST", path + "/cancel-deletion")
    admin.request("POST", path + "/schedule-deletion", {"days": 7})
    admin.request("POST", path + "/destroy")

    # The re-wrap job's own event (kms:RewrapDone) may fall anywhere among these.
    events = [
        r
        for r in trail_records(server.data_dir / "audit")
        if r["type"] == "event"
        and (r.get("details") or {}).get("key_id") == key_id
        and r["operation"] != "kms:RewrapDone"
    ]
    assert all(e["face"] == "kms" for e in events)
    assert [e["operation"] for e in events] == [
        "kms:CreateKey",
        "kms:RotateKey",
        "kms:DisableKey",
        "kms:EnableKey",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
        "kms:ScheduleKeyDeletion",
        "kms:DestroyKey",
    ]
    for event in events:
        assert event["tenant"] == tenant
        assert event["principal"]["access_key_id"] == server.access_key
    states = [e["details"]["state"] for e in events]
    assert states == [
        "Enabled",
        "Enabled",
        "Disabled",
        "Enabled",
        "PendingDeletion",
        "Disabled",
        "PendingDeletion",
        "Destroyed",
    ]
    assert events[1]["details"]["version"] == "2"
