"""Residency through every write path, with real clients: an FR-only bucket never puts a byte
on the BE or US sites, under writes, multipart uploads, copies, scrub, repair and drain."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from andromede.cli.client import AdminClient, AdminError
from support.placement import SITES, Cluster, cluster, shard_sites
from support.server import Server, free_port, running_server

JURISDICTION = {name: j for name, j, _ in SITES}
DOMAIN = {name: d for name, _, d in SITES}
MiB = 1 << 20


@pytest.fixture(scope="module")
def fr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("placement")) as made:
        made.server.client().create_bucket(
            Bucket="fr-data", CreateBucketConfiguration={"LocationConstraint": "fr-only"}
        )
        made.server.client().create_bucket(
            Bucket="fr-ec-data", CreateBucketConfiguration={"LocationConstraint": "fr-ec"}
        )
        yield made


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_everything(s3: Any, bucket: str) -> dict[str, str]:
    """Every write path into ``bucket``; returns key -> sha256 of the content."""
    kept: dict[str, str] = {}
    for key, size in (("empty", 0), ("small", 3000), ("big", 9 * MiB + 17)):
        body = os.urandom(size)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        kept[key] = digest(body)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    parts, whole = [], b""
    for number in (1, 2, 3):
        body = os.urandom(5 * MiB if number < 3 else 1234)
        etag = s3.upload_part(
            Bucket=bucket, Key="multi", UploadId=upload, PartNumber=number, Body=body
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        whole += body
    s3.complete_multipart_upload(
        Bucket=bucket, Key="multi", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    kept["multi"] = digest(whole)
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "big"})
    kept["copy"] = kept["big"]
    return kept


def read_back(s3: Any, bucket: str, kept: dict[str, str]) -> None:
    for key, expected in kept.items():
        assert digest(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == expected, key


def test_recreating_a_bucket_of_a_registered_region_is_owned_by_you(fr: Cluster) -> None:
    # Only a us-east-1 bucket re-created in us-east-1 answers 200.
    s3 = fr.server.client()
    for config in ({}, {"CreateBucketConfiguration": {"LocationConstraint": "fr-only"}}):
        with pytest.raises(ClientError) as info:
            s3.create_bucket(Bucket="fr-data", **config)
        error = info.value.response
        assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
            "BucketAlreadyOwnedByYou",
            409,
        )


def test_location_and_residency_report(fr: Cluster) -> None:
    s3 = fr.server.client()
    assert s3.get_bucket_location(Bucket="fr-data")["LocationConstraint"] == "fr-only"
    with pytest.raises(ClientError) as info:
        s3.create_bucket(Bucket="nowhere", CreateBucketConfiguration={"LocationConstraint": "mars"})
    assert info.value.response["Error"]["Code"] == "InvalidLocationConstraint"
    s3.put_object(Bucket="fr-data", Key="report-me", Body=b"x" * 5000)
    report = fr.report("fr-data")
    assert report["region"] == {
        "name": "fr-only",
        "jurisdictions": ["FR"],
        "redundancy": "replicas:3",
        "min_failure_domains": 3,
    }
    [sites] = shard_sites(report, "report-me")
    assert len(set(sites)) == 3
    assert {JURISDICTION[s] for s in sites} == {"FR"}
    assert len({DOMAIN[s] for s in sites}) == 3
    assert set(report["totals"]) == {"FR"}
    assert report["within_policy"] is True
    assert report["signature"]


def test_fr_bucket_never_writes_outside_fr(fr: Cluster) -> None:
    s3 = fr.server.client()
    before = {name: fr.files(name) for name in ("be-a", "us-a")}
    kept = write_everything(s3, "fr-data")
    kept_ec = write_everything(s3, "fr-ec-data")
    # a copy from a default-region bucket into the FR bucket lands in FR too
    s3.create_bucket(Bucket="anywhere")
    s3.put_object(Bucket="anywhere", Key="src", Body=b"from elsewhere" * 1000)
    s3.copy_object(
        Bucket="fr-data", Key="imported", CopySource={"Bucket": "anywhere", "Key": "src"}
    )
    kept["imported"] = digest(b"from elsewhere" * 1000)
    fr.repair()  # a scrub pass over everything
    read_back(s3, "fr-data", kept)
    read_back(s3, "fr-ec-data", kept_ec)
    for bucket in ("fr-data", "fr-ec-data"):
        report = fr.report(bucket)
        assert set(report["totals"]) == {"FR"}
        for entry in report["objects"]:
            for segment in entry["segments"]:
                assert {s["jurisdiction"] for s in segment["shards"]} == {"FR"}
    ec = shard_sites(fr.report("fr-ec-data"), "big")[0]
    assert len(set(ec)) == 4
    assert len({DOMAIN[s] for s in ec}) == 4
    # the BE and US sites hold exactly what the default-region bucket put there, if anything
    for name in ("be-a", "us-a"):
        for path in set(fr.files(name)) - set(before[name]):
            assert _owned_by(fr, "anywhere", path.name), path


def _owned_by(fr: Cluster, bucket: str, blob_id: str) -> bool:
    report = fr.report(bucket)
    return any(seg["blob"] == blob_id for o in report["objects"] for seg in o["segments"])


def _drain(fr: Cluster) -> None:
    s3 = fr.server.client()
    s3.create_bucket(Bucket="fr-data", CreateBucketConfiguration={"LocationConstraint": "fr-only"})
    s3.create_bucket(Bucket="anywhere")  # default region: one copy on any site
    s3.put_object(Bucket="anywhere", Key="one-copy", Body=b"z" * 100_000)
    kept = {}
    for i in range(6):
        body = os.urandom(700_000 + i)
        s3.put_object(Bucket="fr-data", Key=f"drain-{i}", Body=body)
        kept[f"drain-{i}"] = digest(body)
    before_be_us = {name: fr.files(name) for name in ("be-a", "us-a")}
    fr.request("POST", "/v1/sites/fr-a/drain")
    status = fr.repair()
    progress = status["drains"]["fr-a"]
    assert progress["state"] == "done", progress
    assert progress["remaining"] == 0
    sites = {s["name"]: s for s in fr.request("GET", "/v1/sites")}
    assert sites["fr-a"]["state"] == "draining"
    assert sites["fr-a"]["shards"] == 0
    assert [p for p in fr.files("fr-a") if "blobs" in p.parts] == []
    read_back(s3, "fr-data", kept)
    for key in kept:
        [placed] = shard_sites(fr.report("fr-data"), key)
        assert "fr-a" not in placed
        assert {JURISDICTION[s] for s in placed} == {"FR"}
    assert {name: fr.files(name) for name in ("be-a", "us-a")} == before_be_us
    # a second FR site cannot go too: three FR domains are needed and only fr-c/fr-d remain
    fr.request("POST", "/v1/sites/fr-b/drain")
    progress = fr.repair()["drains"]["fr-b"]
    assert progress["state"] == "blocked"
    assert "fr-data" in progress["blocked"]
    with pytest.raises(AdminError, match="SiteNotDrained"):
        fr.request("DELETE", "/v1/sites/fr-b")
    fr.request("DELETE", "/v1/sites/fr-a")
    assert "fr-a" not in {s["name"] for s in fr.request("GET", "/v1/sites")}
    read_back(s3, "fr-data", kept)
    # a one-copy blob moves whole: drain the site that holds it
    [[holder]] = shard_sites(fr.report("anywhere"), "one-copy")
    fr.request("POST", f"/v1/sites/{holder}/drain")
    fr.repair()
    [[now]] = shard_sites(fr.report("anywhere"), "one-copy")
    assert now != holder
    assert s3.get_object(Bucket="anywhere", Key="one-copy")["Body"].read() == b"z" * 100_000


def test_a_tenant_gets_its_own_buckets_report_and_no_other(fr: Cluster) -> None:
    _, access, secret = fr.server.new_tenant()
    mine = fr.server.client(access, secret)
    mine.create_bucket(
        Bucket="tenant-fr", CreateBucketConfiguration={"LocationConstraint": "fr-only"}
    )
    mine.put_object(Bucket="tenant-fr", Key="doc", Body=b"d" * 2000)
    tenant_admin = AdminClient(fr.server.endpoint, access, secret)
    report = tenant_admin.request("GET", "/v1/residency/tenant-fr")
    assert [o["key"] for o in report["objects"]] == ["doc"]
    with pytest.raises(AdminError, match="AccessDenied"):
        tenant_admin.request("GET", "/v1/residency/fr-data")  # the default tenant's
    with pytest.raises(AdminError, match="NoSuchBucket"):
        tenant_admin.request("GET", "/v1/residency/no-such-bucket")
    with pytest.raises(AdminError, match="AccessDenied"):
        tenant_admin.request("POST", "/v1/repair/run")


def test_the_data_dirs_own_site_follows_a_moved_data_dir(tmp_path: Path) -> None:
    with running_server(tmp_path / "before") as server:
        server.client().create_bucket(Bucket="plain")
        server.client().put_object(Bucket="plain", Key="k", Body=b"still here" * 1000)
        access, secret = server.access_key, server.secret_key
    (tmp_path / "before").rename(tmp_path / "after")
    moved = Server(tmp_path / "after", free_port(), access, secret)
    moved.start()
    try:
        body = moved.client().get_object(Bucket="plain", Key="k")["Body"].read()
        assert body == b"still here" * 1000
        assert not (tmp_path / "before").exists()  # nothing recreated at the old place
    finally:
        moved.stop()
