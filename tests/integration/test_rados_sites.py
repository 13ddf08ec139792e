"""Sites that are Ceph pools, through a real server: two RADOS clusters stand for two data
centres (dc1: three OSDs, pool size 2, and a manager, so that it reports its capacity; dc2:
one OSD on BlueStore, so that it can be stopped and started with its data), registered with
``andromede admin site add --backend rados``.

Objects of a two-replica FR region land on both, whole and striped; one OSD stopped changes
nothing for clients; a whole cluster stopped is "down" (reads go around it and queue a
repair, writes that cannot meet the policy get 503, nothing lands outside the policy); bad
configurations are named at ``site add`` and in ``site list``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.ceph import CephCluster
from support.required import ceph_cluster
from support.server import Server, running_server

pytestmark = pytest.mark.ceph

REGION = "fr-2dc"
MiB = 1 << 20


def _cluster(tmp: pytest.TempPathFactory, name: str, **kwargs: Any) -> Iterator[CephCluster]:
    with ceph_cluster(tmp.mktemp(name), **kwargs) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def dc1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    yield from _cluster(tmp_path_factory, "dc1", osds=3, pools={"andromede": 2}, mgr=True)


@pytest.fixture(scope="module")
def dc2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    yield from _cluster(tmp_path_factory, "dc2", store="bluestore")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("rados-sites") / "data"
    with running_server(data, ANDROMEDE_REPAIR_INTERVAL_SECONDS="3600") as srv:
        yield srv


def admin(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return server.cli("admin", *args, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def flat(options: dict[str, str]) -> list[str]:
    return [part for pair in options.items() for part in pair]


def rados_site(cluster: CephCluster, pool: str = "andromede") -> list[str]:
    return ["--backend", "rados", "--ceph-conf", str(cluster.conf), "--pool", pool,
            "--ceph-user", cluster.user]  # fmt: skip


@pytest.fixture(scope="module")
def placed(server: Server, dc1: CephCluster, dc2: CephCluster) -> dict[str, Any]:
    added = {}
    for name, cluster, domain in [("ceph-par", dc1, "paris"), ("ceph-lyo", dc2, "lyon")]:
        where = ["--jurisdiction", "FR", "--failure-domain", domain]
        added[name] = ok(admin(server, "site", "add", name, *where, *rados_site(cluster), "--json"))
    policy = ["--jurisdictions", "FR", "--redundancy", "replicas:2", "--min-failure-domains", "2"]
    ok(admin(server, "region", "add", REGION, *policy, "--json"))
    return added


def sites(server: Server) -> dict[str, Any]:
    return {s["name"]: s for s in ok(admin(server, "site", "list", "--json"))}


def body(size: int) -> bytes:
    seed = hashlib.sha256(str(size).encode()).digest()
    return (seed * (size // 32 + 1))[:size]


def bucket_with(server: Server, **objects: bytes) -> str:
    s3 = server.client()
    name = "rados-" + secrets.token_hex(5)
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    for key, data in objects.items():
        s3.put_object(Bucket=name, Key=key, Body=data)
    return name


def shard_sites(server: Server, bucket: str) -> dict[str, set[str]]:
    report = ok(admin(server, "residency", "report", "--bucket", bucket))
    return {
        o["key"]: {sh["site"] for seg in o["segments"] for sh in seg["shards"]}
        for o in report["objects"]
    }


def wait_for(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_rados_sites_are_added_and_listed(server: Server, placed: dict[str, Any]) -> None:
    par = placed["ceph-par"]
    assert par["backend"] == "rados"
    assert par["path"].startswith("rados:andromede?conf=")
    listed = sites(server)
    for name in ("ceph-par", "ceph-lyo"):
        assert listed[name]["available"] is True, listed[name]
        assert listed[name]["problem"] is None
        assert listed[name]["backend"] == "rados"
    # Capacity comes from the cluster's statistics, which only a cluster with a manager
    # (dc1) keeps: per replica of the pool (size 2 over three 2 GiB OSDs).
    wait_for(lambda: (sites(server)["ceph-par"]["free_bytes"] or 0) > 0, "dc1's capacity")
    free = sites(server)["ceph-par"]["free_bytes"]
    assert 2 << 30 <= free <= 3 << 30, free
    assert listed["ceph-lyo"]["free_bytes"] is None


def test_bad_configurations_are_named_at_site_add(
    server: Server, placed: dict[str, Any], dc1: CephCluster, tmp_path: Path
) -> None:
    where = ["--jurisdiction", "FR", "--failure-domain", "x"]
    missing = admin(server, "site", "add", "ceph-x", *where, *rados_site(dc1, "no-such-pool"))
    assert missing.returncode == 1
    assert "pool 'no-such-pool' does not exist" in missing.stderr
    nowhere = dc1.conf_without_cluster(tmp_path / "nowhere.conf")
    conf_of = {"--backend": "rados", "--pool": "andromede", "--ceph-user": dc1.user}
    gone = admin(server, "site", "add", "ceph-y", *where,
                 *flat({**conf_of, "--ceph-conf": str(nowhere)}))  # fmt: skip
    assert gone.returncode == 1
    assert "cannot reach the Ceph cluster" in gone.stderr
    key = tmp_path / "wrong.keyring"
    key.write_text(f"[client.{dc1.user}]\n\tkey = AQBVFxZpAAAAABAAnYm0tL6xV0uBuV7CmAHXjw==\n")
    wrong = tmp_path / "wrong.conf"
    wrong.write_text(dc1.conf.read_text().replace(str(dc1.root / "client.keyring"), str(key)))
    refused = admin(server, "site", "add", "ceph-z", *where,
                    *flat({**conf_of, "--ceph-conf": str(wrong)}))  # fmt: skip
    assert refused.returncode == 1
    assert "refused" in refused.stderr
    assert not {"ceph-x", "ceph-y", "ceph-z"} & set(sites(server))


def test_objects_land_on_both_data_centres(server: Server, placed: dict[str, Any]) -> None:
    big, small = body(9 * MiB + 123), body(4096)
    bucket = bucket_with(server, big=big, small=small)
    s3 = server.client()
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == big
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == small
    ranged = s3.get_object(Bucket=bucket, Key="big", Range="bytes=4194000-8389000")
    assert ranged["Body"].read() == big[4194000:8389001]
    assert shard_sites(server, bucket) == {
        "big": {"ceph-par", "ceph-lyo"},
        "small": {"ceph-par", "ceph-lyo"},
    }


def test_one_osd_stopped_changes_nothing(
    server: Server, placed: dict[str, Any], dc1: CephCluster
) -> None:
    bucket = bucket_with(server, before=body(3 * MiB))
    dc1.stop_osd(0)
    try:
        s3 = server.client()
        s3.put_object(Bucket=bucket, Key="during", Body=body(5 * MiB))
        assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == body(3 * MiB)
        assert s3.get_object(Bucket=bucket, Key="during")["Body"].read() == body(5 * MiB)
    finally:
        dc1.start_osd(0)
    assert shard_sites(server, bucket)["during"] == {"ceph-par", "ceph-lyo"}


def test_a_whole_data_centre_stopped(
    server: Server, placed: dict[str, Any], dc2: CephCluster
) -> None:
    data = body(6 * MiB + 7)
    bucket = bucket_with(server, kept=data)
    s3 = server.client()
    dc2.stop()
    try:
        wait_for(lambda: sites(server)["ceph-lyo"]["available"] is False, "dc2 seen down")
        problem = sites(server)["ceph-lyo"]["problem"]
        assert "ceph-lyo" in problem, problem
        assert str(dc2.conf) in problem, problem
        assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == data  # degraded
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket, Key="new", Body=b"cannot meet the policy")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "new" not in shard_sites(server, bucket)
        status = ok(admin(server, "repair", "status", "--json"))
        assert status["degraded_blobs"] >= 1
    finally:
        dc2.start()
    wait_for(lambda: sites(server)["ceph-lyo"]["available"] is True, "dc2 back")
    after = ok(admin(server, "repair", "run", "--json"))
    assert after["degraded_blobs"] == 0
    s3.put_object(Bucket=bucket, Key="new", Body=b"now it can")
    assert shard_sites(server, bucket) == {
        "kept": {"ceph-par", "ceph-lyo"},
        "new": {"ceph-par", "ceph-lyo"},
    }
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == data
