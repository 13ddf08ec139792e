"""Sites that vanish, rot, refuse writes or fill up: reads keep working within the
redundancy, writes fail cleanly when the policy cannot be met, repair restores full
redundancy, and no acknowledged object is lost."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from support.placement import SITES, Cluster, cluster, read_only
from support.waiting import wait_until

MiB = 1 << 20
FR = {name for name, j, _ in SITES if j == "FR"}


def add_region(fr: Cluster, name: str, redundancy: str, domains: int) -> None:
    fr.request(
        "POST",
        "/v1/regions",
        {
            "name": name,
            "jurisdictions": ["FR"],
            "redundancy": redundancy,
            "min_failure_domains": domains,
        },
    )


def fill(fr: Cluster, bucket: str, region: str, count: int, size: int) -> dict[str, bytes]:
    s3 = fr.server.client()
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    kept = {}
    for i in range(count):
        body = os.urandom(size + i)
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
        kept[f"k{i}"] = body
    return kept


def check(fr: Cluster, bucket: str, kept: dict[str, bytes]) -> None:
    s3 = fr.server.client()
    for key, body in kept.items():
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest(), key
        assert (
            s3.get_object(Bucket=bucket, Key=key, Range="bytes=10-99")["Body"].read()
            == body[10:100]
        )


def placed(fr: Cluster, bucket: str) -> dict[str, list[str]]:
    report = fr.report(bucket)
    return {o["key"]: [s["site"] for s in o["segments"][0]["shards"]] for o in report["objects"]}


def status(fr: Cluster) -> dict[str, Any]:
    result: dict[str, Any] = fr.request("GET", "/v1/repair")
    return result


def test_a_deleted_site_directory_is_read_around_then_repaired(tmp_path: Path) -> None:
    with cluster(tmp_path) as fr:
        add_region(fr, "fr-ec21", "ec:2+1", 3)
        replicas = fill(fr, "rep", "fr-only", 8, 600_000)
        coded = fill(fr, "coded", "fr-ec21", 8, 2 * MiB + 5)
        shutil.rmtree(fr.site_dir("fr-a"))
        check(fr, "rep", replicas)  # degraded reads
        check(fr, "coded", coded)
        waiting = status(fr)
        assert waiting["degraded_blobs"] > 0
        assert waiting["bytes_at_risk"] > 0
        assert {s["name"]: s["available"] for s in fr.request("GET", "/v1/sites")}["fr-a"] is False
        fr.repair()
        assert status(fr)["degraded_blobs"] == 0
        for bucket in ("rep", "coded"):
            for key, sites in placed(fr, bucket).items():
                assert "fr-a" not in sites, (bucket, key)
                assert set(sites) <= FR
                assert len(set(sites)) == len(sites)
        # full redundancy again: losing one more site is still survivable
        shutil.rmtree(fr.site_dir("fr-b"))
        check(fr, "rep", replicas)
        check(fr, "coded", coded)
        assert status(fr)["repair"]["bytes_rebuilt"] > 0
        assert fr.files("be-a") == fr.files("us-a") == []  # repair stayed in FR
        # a restart does not make the lost sites again (an unmounted disk must stay unused)
        fr.server.stop()
        fr.server.start()
        assert not fr.site_dir("fr-a").exists()
        available = {s["name"]: s["available"] for s in fr.request("GET", "/v1/sites")}
        assert available["fr-a"] is False
        assert available["fr-b"] is False
        check(fr, "rep", replicas)
        check(fr, "coded", coded)


def _flip(path: Path, at: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_bit_rot_and_truncation_are_found_by_scrub_and_fixed_in_place(tmp_path: Path) -> None:
    with cluster(tmp_path) as fr:
        add_region(fr, "fr-ec21", "ec:2+1", 3)
        replicas = fill(fr, "rep", "fr-only", 4, 3 * MiB)
        coded = fill(fr, "coded", "fr-ec21", 4, 3 * MiB)
        before = {b: placed(fr, b) for b in ("rep", "coded")}
        report = {b: fr.report(b) for b in ("rep", "coded")}
        originals: dict[Path, bytes] = {}
        for bucket in ("rep", "coded"):
            for n, entry in enumerate(report[bucket]["objects"]):
                blob = entry["segments"][0]["blob"]
                site = entry["segments"][0]["shards"][n % 2]["site"]
                path = fr.shard_path(site, blob)
                originals[path] = path.read_bytes()
                if n % 2:
                    os.truncate(path, path.stat().st_size - 777)
                else:
                    _flip(path, 4096 + 32 + 1000)
        result = fr.repair()  # no read has seen the damage: the scrubber must find it
        assert result["scrub"]["found_bad"] == len(originals)
        assert result["scrub"]["repaired"] == len(originals)
        check(fr, "rep", replicas)
        check(fr, "coded", coded)
        assert status(fr)["degraded_blobs"] == 0  # those reads needed no detour
        assert {b: placed(fr, b) for b in ("rep", "coded")} == before  # rebuilt where they were
        for path, original in originals.items():
            assert path.read_bytes() == original, path
        assert fr.repair()["scrub"]["found_bad"] == result["scrub"]["found_bad"]  # clean now


def test_unwritable_sites_refuse_cleanly_and_reads_go_on(tmp_path: Path) -> None:
    with cluster(tmp_path) as fr:
        kept = fill(fr, "rep", "fr-only", 3, 400_000)
        patient = fr.server.client(retries={"max_attempts": 4, "mode": "standard"})
        with read_only(fr.site_dir("fr-a")):
            check(fr, "rep", kept)  # reads need no write
            for i in range(6):  # a retry lands elsewhere: a failed site is left out a while
                body = os.urandom(300_000)
                patient.put_object(Bucket="rep", Key=f"more{i}", Body=body)
                kept[f"more{i}"] = body
            for i in range(6):
                assert "fr-a" not in placed(fr, "rep")[f"more{i}"]
            with read_only(fr.site_dir("fr-b")):
                files_before = {name: fr.files(name) for name, _, _ in SITES}
                with pytest.raises(ClientError) as info:
                    patient.put_object(Bucket="rep", Key="refused", Body=os.urandom(2 * MiB))
                assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
                assert {name: fr.files(name) for name, _, _ in SITES} == files_before
                check(fr, "rep", kept)
        check(fr, "rep", kept)


def test_a_full_site_fails_the_write_whole_and_is_avoided(tmp_path: Path) -> None:
    with cluster(tmp_path, mounts={"fr-d": "5m"}) as fr:
        s3 = fr.server.client(retries={"total_max_attempts": 1})  # see each refusal
        s3.create_bucket(Bucket="rep", CreateBucketConfiguration={"LocationConstraint": "fr-only"})
        kept: dict[str, bytes] = {}
        statuses: list[int] = []
        for i in range(20):
            body = os.urandom(MiB + i)
            try:
                s3.put_object(Bucket="rep", Key=f"k{i}", Body=body)
            except ClientError as exc:
                statuses.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
                continue
            kept[f"k{i}"] = body
        assert statuses  # fr-d filled up once
        assert set(statuses) == {503}
        assert len(statuses) == 1  # and was then left out
        check(fr, "rep", kept)
        # nothing half-written: every shard file on every site belongs to an acknowledged object
        shards = {s for sites in placed(fr, "rep").values() for s in sites}
        blobs = {o["segments"][0]["blob"] for o in fr.report("rep")["objects"]}
        for name in shards | FR:
            for path in fr.files(name):
                assert path.parent.parent.name == "blobs", path  # no temporary file left
                assert path.name in blobs, path


def test_kill_during_a_sharded_write_leaves_nothing_after_restart(tmp_path: Path) -> None:
    with cluster(tmp_path) as fr:
        s3 = fr.server.client()
        s3.create_bucket(Bucket="rep", CreateBucketConfiguration={"LocationConstraint": "fr-only"})
        s3.put_object(Bucket="rep", Key="kept", Body=b"k" * 100_000)

        size = 64 * MiB
        url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": "rep", "Key": "cut"}, ExpiresIn=600
        )

        def slow_body() -> Iterator[bytes]:  # ~2.5 s: the kill lands mid-stream
            for _ in range(size // (256 * 1024)):
                yield os.urandom(256 * 1024)
                time.sleep(0.01)  # the pace of the body is the point: the kill must land in it

        def upload() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                httpx.put(
                    url, content=slow_body(), headers={"Content-Length": str(size)}, timeout=60
                )

        thread = threading.Thread(target=upload)
        thread.start()
        wait_until(
            lambda: any(p.parent.name == "tmp" for name in FR for p in fr.files(name)),
            30,
            0.01,
            "the upload's first bytes in a site's tmp",
        )
        fr.server.stop(kill=True)
        thread.join(60)
        fr.server.start()
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="rep")["Contents"]] == ["kept"]
        blobs = {o["segments"][0]["blob"] for o in fr.report("rep")["objects"]}
        for name in FR:
            for path in fr.files(name):
                assert path.name in blobs, path
        assert s3.get_object(Bucket="rep", Key="kept")["Body"].read() == b"k" * 100_000
