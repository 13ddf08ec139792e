"""The audit trail as a client and an auditor see it: every acknowledged request recorded
exactly once, in a chain that verifies; nothing acknowledged when the trail cannot be written."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from support.audit import trail_entries, trail_records, verify_data_dir
from support.server import Server, running_server
from support.waiting import wait_until

SECRET_MARKERS = ("Signature=", "X-Amz-Signature", "AWS4-HMAC-SHA256")


def _request_id(call: Any) -> tuple[str, int]:
    """Run a boto3 call; its request id and HTTP status, whether it succeeded or not."""
    try:
        meta = call()["ResponseMetadata"]
    except botocore.exceptions.ClientError as exc:
        meta = exc.response["ResponseMetadata"]
    return meta["RequestId"], meta["HTTPStatusCode"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with the default audit settings for the tests that read back only the
    records of their own requests, in buckets of their own. Tests that change the settings,
    break the trail or need an empty one start their own."""
    with running_server(tmp_path_factory.mktemp("audit-trail") / "data", workers=2) as srv:
        yield srv


def _unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.mark.parametrize("writer_process", ["true", "false"], ids=["writer-process", "threads"])
def test_concurrent_clients_each_acknowledged_request_recorded_once(
    tmp_path: Path, writer_process: str
) -> None:
    """Both ways of writing under ``serve``: the writer process, or a writer thread in each of
    the two workers (one chain either way, ordered by the trail's lock)."""
    acked: dict[str, tuple[str, int, str | None]] = {}
    lock = threading.Lock()
    env = {"ANDROMEDE_AUDIT_WRITER_PROCESS": writer_process}
    with running_server(tmp_path / "data", workers=2, **env) as srv:
        s3 = srv.client()
        s3.create_bucket(Bucket="conc")

        def client(n: int) -> None:
            own = srv.client()
            for i in range(25):
                key = f"c{n}/k{i}"
                calls = [
                    ("PutObject", partial(own.put_object, Bucket="conc", Key=key, Body=b"x" * i)),
                    ("GetObject", partial(own.get_object, Bucket="conc", Key=key)),
                    ("HeadObject", partial(own.head_object, Bucket="conc", Key=key + "-none")),
                    ("DeleteObject", partial(own.delete_object, Bucket="conc", Key=key)),
                ]
                for operation, call in calls:
                    rid, status = _request_id(call)
                    with lock:
                        acked[rid] = (operation, status, key)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    records = trail_records(tmp_path / "data" / "audit")
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["type"] == "request":  # events (a default key made) share the request's id
            by_id.setdefault(record["request_id"], []).append(record)
    assert len(acked) == 16 * 25 * 4
    for rid, (operation, status, key) in acked.items():
        found = by_id.get(rid, [])
        assert len(found) == 1, f"{operation} {rid}: {len(found)} records"
        assert (found[0]["operation"], found[0]["status"]) == (operation, status)
        assert found[0]["key"] == (key + "-none" if operation == "HeadObject" else key)
    code, report = verify_data_dir(tmp_path / "data")
    assert code == 0, report
    seqs = [e["seq"] for e in trail_entries(tmp_path / "data" / "audit")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_records_say_who_what_and_how_it_ended_and_hold_no_secret(shared: Server) -> None:
    srv = shared
    tenant, access, secret = srv.new_tenant()
    own = srv.client(access, secret)
    bucket = "who-" + tenant
    own.create_bucket(Bucket=bucket)
    put_id, _ = _request_id(lambda: own.put_object(Bucket=bucket, Key="doc", Body=b"payload-123"))
    denied_id, denied_status = _request_id(lambda: srv.client().list_objects_v2(Bucket=bucket))
    url = own.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "doc"})
    head, sig = url.split("X-Amz-Signature=")
    forged = head + "X-Amz-Signature=" + ("1" if sig[0] == "0" else "0") + sig[1:]
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(forged)
    bad_id = bad.value.headers["x-amz-request-id"]
    bad.value.close()
    # Every request is recorded before it is answered: the trail can be read at once.
    audit_dir = srv.data_dir / "audit"
    raw = b"".join(p.read_bytes() for p in audit_dir.glob("*.log"))
    assert denied_status == 403
    records = {r["request_id"]: r for r in trail_records(audit_dir)}
    put = records[put_id]
    assert put["operation"] == "PutObject"
    assert put["status"] == 200
    assert put["tenant"] == tenant
    assert put["principal"] == {
        "kind": "key",
        "access_key_id": access,
        "tenant": tenant,
    }
    assert put["bytes_in"] == len(b"payload-123")
    assert put["sites"] == ["local"]
    assert put["bucket"] == bucket
    assert put["key"] == "doc"
    assert put["error"] is None
    assert put["source"] == "127.0.0.1"
    assert put["time"].endswith("Z")
    denied = records[denied_id]
    assert denied["error"] == "AccessDenied"
    assert denied["tenant"] == tenant
    assert denied["principal"]["kind"] == "operator"
    forged_rec = records[bad_id]
    assert forged_rec["principal"] == {
        "kind": "unauthenticated",
        "access_key_id": access,
        "tenant": None,
    }
    assert forged_rec["error"] == "SignatureDoesNotMatch"
    assert forged_rec["status"] == 403
    admin = [r for r in records.values() if r["face"] == "admin"]
    assert {"admin:CreateTenant", "admin:CreateKey"} <= {r["operation"] for r in admin}
    assert secret.encode() not in raw
    assert b"payload-123" not in raw
    assert not any(marker.encode() in raw for marker in SECRET_MARKERS)


def _privileged(what: str) -> None:
    """These faults need root (chattr, mount); CI runs as root, so there they must not skip."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"{what} needs root")
        pytest.skip(f"{what} needs root")


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True)


def _puts(s3: Any, prefix: str, count: int, stop_after_refusals: int = 0) -> list[tuple[str, int]]:
    """PUT small objects; with ``stop_after_refusals``, stop that many 503s after the first."""
    outcomes: list[tuple[str, int]] = []
    for i in range(count):
        outcomes.append(
            _request_id(partial(s3.put_object, Bucket="closed", Key=f"{prefix}{i}", Body=b"x"))
        )
        if stop_after_refusals and [st for _, st in outcomes].count(503) > stop_after_refusals:
            break
    return outcomes


def _no_retry_client(srv: Server) -> Any:
    """503 is retryable: botocore would hide the first refusal behind a retry."""
    return srv.client(retries={"total_max_attempts": 1})


def _until_accepted(s3: Any) -> list[tuple[str, int]]:
    """PUT until one is accepted again (the trail retries after its retry interval); every
    outcome, the refusals on the way included."""
    outcomes: list[tuple[str, int]] = []

    def accepted() -> bool:
        outcomes.extend(_puts(s3, f"retry{len(outcomes)}-", 1))
        return outcomes[-1][1] == 200

    wait_until(accepted, 10, 0.1, "the trail accepting writes again")
    return outcomes


def _assert_acknowledged_recorded(audit_dir: Path, outcomes: list[tuple[str, int]]) -> None:
    recorded = {r["request_id"] for r in trail_records(audit_dir)}
    for rid, status in outcomes:
        assert status in (200, 503)
        if status == 200:
            assert rid in recorded


def test_immutable_trail_fails_closed_then_recovers(tmp_path: Path) -> None:
    _privileged("chattr +i")
    audit_dir = tmp_path / "data" / "audit"
    with running_server(tmp_path / "data", workers=2, ANDROMEDE_AUDIT_RETRY_SECONDS="0.5") as srv:
        s3 = _no_retry_client(srv)
        s3.create_bucket(Bucket="closed")
        locked = [audit_dir, *audit_dir.glob("*.log")]
        _chattr("+i", *locked)
        try:
            refused = _puts(s3, "refused-", 10)
            _listing_id, listing_status = _request_id(lambda: s3.list_objects_v2(Bucket="closed"))
        finally:
            _chattr("-i", *locked)
        assert [status for _, status in refused] == [503] * 10
        assert listing_status == 503
        refused += _until_accepted(s3)
        after = _puts(s3, "after-", 5)
        assert [status for _, status in after] == [200] * 5
    _assert_acknowledged_recorded(audit_dir, refused + after)
    code, report = verify_data_dir(tmp_path / "data")
    assert code == 0, report


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards."""
    _privileged("mount -t tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_fails_closed_then_recovers(tmp_path: Path, small_filesystem: Path) -> None:
    audit_dir = small_filesystem / "audit"
    env = {
        "ANDROMEDE_AUDIT_DIR": str(audit_dir),
        "ANDROMEDE_AUDIT_SEGMENT_BYTES": str(64 * 1024),
        "ANDROMEDE_AUDIT_RETRY_SECONDS": "0.5",
    }
    with running_server(tmp_path / "data", workers=1, **env) as srv:
        s3 = _no_retry_client(srv)
        s3.create_bucket(Bucket="closed")
        filler = small_filesystem / "filler"
        free = shutil.disk_usage(small_filesystem).free
        filler.write_bytes(bytes(max(free - 100 * 1024, 0)))
        outcomes = _puts(s3, "fill-", 1000, stop_after_refusals=5)
        statuses = [status for _, status in outcomes]
        assert 503 in statuses, "the trail never ran out of space"
        first_refusal = statuses.index(503)
        assert first_refusal > 0
        filler.unlink()
        outcomes += _until_accepted(s3)
        after = _puts(s3, "after-", 5)
        assert [status for _, status in after] == [200] * 5
    _assert_acknowledged_recorded(audit_dir, outcomes + after)
    shutil.copytree(audit_dir, tmp_path / "data" / "audit")
    code, report = verify_data_dir(tmp_path / "data")
    assert code == 0, report


def _writer_pid(server_pid: int) -> int:
    """The audit writer process among the server's children (of any of its threads: the
    watchdog thread starts the writer again when it dies)."""
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"andromede.audit_process" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise AssertionError("no audit writer process")


def test_killed_writer_process_fails_closed_and_comes_back(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", workers=2, ANDROMEDE_AUDIT_RETRY_SECONDS="0.2") as srv:
        s3 = _no_retry_client(srv)
        s3.create_bucket(Bucket="closed")
        assert srv.proc is not None
        first = _writer_pid(srv.proc.pid)
        os.kill(first, 9)
        outcomes: list[tuple[str, int]] = []

        def refused_then_back() -> bool:
            outcomes.extend(_puts(s3, f"w{len(outcomes)}-", 1))
            return outcomes[-1][1] == 200 and 503 in [st for _, st in outcomes]

        with contextlib.suppress(AssertionError):  # the assertions below say what went wrong
            wait_until(refused_then_back, 20, 0.05)
        statuses = [st for _, st in outcomes]
        assert 503 in statuses, "requests went on while the writer was down"
        assert statuses[-1] == 200, "the writer did not come back"
        assert _writer_pid(srv.proc.pid) != first
    _assert_acknowledged_recorded(tmp_path / "data" / "audit", outcomes)
    code, report = verify_data_dir(tmp_path / "data")
    assert code == 0, report


def test_hostile_fields_stay_bounded_and_the_trail_readable(shared: Server) -> None:
    """A 60 KB path of control characters (each escaped to 6 bytes in JSON), a long user
    agent and a forged X-Forwarded-For, sent anonymously, leave bounded records: the trail
    still verifies, later records are still found by queries, the source is the peer's."""
    srv = shared
    hostile_ids = []
    for _ in range(3):
        request = urllib.request.Request(
            srv.endpoint + "/" + "%01" * 20_000,
            headers={"User-Agent": "u" * 9000, "X-Forwarded-For": "203.0.113.66"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        hostile_ids.append(refused.value.headers["x-amz-request-id"])
        refused.value.close()
    after_id, _ = _request_id(srv.client().list_buckets)
    found = json.loads(
        srv.cli("admin", "audit", "query", "--operation", "ListBuckets", "--json").stdout
    )
    assert after_id in [r["request_id"] for r in found["records"]]
    audit_dir = srv.data_dir / "audit"
    longest = max(
        len(line)
        for p in audit_dir.glob("*.log")
        for line in p.read_bytes().rstrip(b"\0").split(b"\n")
    )
    assert longest < 64 * 1024
    records = {r["request_id"]: r for r in trail_records(audit_dir)}
    for rid in hostile_ids:
        assert records[rid]["source"] == "127.0.0.1"
        assert len(records[rid]["bucket"]) <= 256
        assert len(records[rid]["user_agent"]) == 512
    code, report = verify_data_dir(srv.data_dir)
    assert code == 0, report


def test_in_place_verify_of_a_busy_server_reads_up_to_its_published_head(shared: Server) -> None:
    srv, bucket = shared, _unique("busy")
    stop = threading.Event()
    srv.client().create_bucket(Bucket=bucket)

    def load() -> None:
        s3 = srv.client()
        while not stop.is_set():
            s3.put_object(Bucket=bucket, Key="k", Body=b"x")

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        outcomes = [verify_data_dir(srv.data_dir) for _ in range(5)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert [code for code, _ in outcomes] == [0] * 5, outcomes


def test_a_get_whose_data_is_gone_is_recorded_with_the_error_the_client_got(
    shared: Server,
) -> None:
    srv, bucket = shared, _unique("gone")
    blobs = srv.data_dir / "sites" / "local" / "blobs"
    s3 = _no_retry_client(srv)
    s3.create_bucket(Bucket=bucket)
    before = set(blobs.rglob("*"))
    s3.put_object(Bucket=bucket, Key="k", Body=b"y" * 5000)
    written = [p for p in set(blobs.rglob("*")) - before if p.is_file()]
    assert written, "the object's blob was not found"
    for blob in written:  # this object's data only: the server is shared
        blob.unlink()
    with pytest.raises(botocore.exceptions.ClientError) as failed:
        s3.get_object(Bucket=bucket, Key="k")
    meta = failed.value.response["ResponseMetadata"]
    code = failed.value.response["Error"]["Code"]
    assert (meta["HTTPStatusCode"], code) == (500, "InternalError")
    record = {r["request_id"]: r for r in trail_records(srv.data_dir / "audit")}[meta["RequestId"]]
    assert (record["operation"], record["status"], record["error"]) == ("GetObject", 500, code)
