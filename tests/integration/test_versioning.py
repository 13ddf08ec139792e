"""Versioning through the real server, as its users drive it: boto3 (every operation that
takes a version id), the aws CLI v2, rclone ``--s3-versions``, and a backup's recovery after
a "ransomware" run that overwrote and deleted everything. The residency report lists every
version, and crypto-shredding reaches old versions too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.cli_tools import AWS, Tool, make_aws_tool, make_tool, ok
from support.server import Server


@pytest.fixture(scope="module")
def server(cli_tools_server: Server) -> Server:
    return cli_tools_server


@pytest.fixture(scope="module")
def s3(server: Server) -> Any:
    _, access, secret = server.new_tenant()
    return server.client(access, secret)


def versioned_bucket(s3: Any, name: str, status: str = "Enabled") -> str:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
    return name


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, dict[str, str]]:
    meta = exc.value.response["ResponseMetadata"]
    return exc.value.response["Error"]["Code"], meta["HTTPStatusCode"], meta["HTTPHeaders"]


def test_versions_with_boto3(s3: Any) -> None:
    bucket = "vers-boto3"
    s3.create_bucket(Bucket=bucket)
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"null")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert v1 < v2

    got = s3.get_object(Bucket=bucket, Key="k")
    assert (got["Body"].read(), got["VersionId"]) == (b"two", v2)
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert s3.head_object(Bucket=bucket, Key="k", VersionId="null")["VersionId"] == "null"
    attrs = s3.get_object_attributes(
        Bucket=bucket, Key="k", VersionId=v1, ObjectAttributes=["ObjectSize"]
    )
    assert (attrs["ObjectSize"], attrs["VersionId"]) == (3, v1)

    s3.put_object_tagging(
        Bucket=bucket, Key="k", VersionId=v1, Tagging={"TagSet": [{"Key": "v", "Value": "1"}]}
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)["TagSet"] == [
        {"Key": "v", "Value": "1"}
    ]
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []

    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    with pytest.raises(ClientError) as hidden:
        s3.get_object(Bucket=bucket, Key="k")
    code, status, headers = error(hidden)
    assert (code, status, headers["x-amz-delete-marker"]) == ("NoSuchKey", 404, "true")
    assert headers["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as named:
        s3.get_object(Bucket=bucket, Key="k", VersionId=marker)
    assert error(named)[:2] == ("MethodNotAllowed", 405)
    with pytest.raises(ClientError) as unknown:
        s3.get_object(Bucket=bucket, Key="k", VersionId="0" * 32)
    assert error(unknown)[:2] == ("NoSuchVersion", 404)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)

    listed = s3.list_object_versions(Bucket=bucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [
        (v2, False),
        (v1, False),
        ("null", False),
    ]
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker, True)]

    # Removing the marker brings "two" back; removing versions for good, one by one.
    gone = s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert (gone["DeleteMarker"], gone["VersionId"]) == (True, marker)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    result = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "k", "VersionId": v} for v in (v2, v1, "null")]},
    )
    assert sorted(d["VersionId"] for d in result["Deleted"]) == sorted([v2, v1, "null"])
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)


def test_multipart_copies_and_pages(s3: Any) -> None:
    bucket = versioned_bucket(s3, "vers-more")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"p" * 10)
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    first = done["VersionId"]
    s3.put_object(Bucket=bucket, Key="mp", Body=b"overwritten")
    copied = s3.copy_object(
        Bucket=bucket,
        Key="mp-restored",
        CopySource={"Bucket": bucket, "Key": "mp", "VersionId": first},
    )
    assert copied["CopySourceVersionId"] == first
    assert s3.get_object(Bucket=bucket, Key="mp-restored")["Body"].read() == b"p" * 10

    for n in range(5):
        s3.put_object(Bucket=bucket, Key=f"dir/k{n % 2}", Body=b"%d" % n)
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix="dir/", PaginationConfig={"PageSize": 2}
    )
    seen = [(v["Key"], v["IsLatest"]) for page in pages for v in page.get("Versions", [])]
    assert seen == [("dir/k0", True), ("dir/k0", False), ("dir/k0", False),
                    ("dir/k1", True), ("dir/k1", False)]  # fmt: skip
    top = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/"]


def test_bad_versioning_requests(s3: Any, server: Server) -> None:
    bucket = versioned_bucket(s3, "vers-bad")
    with pytest.raises(ClientError) as bad_status:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "On"})
    assert error(bad_status)[:2] == ("MalformedXML", 400)
    with pytest.raises(ClientError) as mfa:
        s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"}
        )
    assert error(mfa)[:2] == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as marker_alone:
        s3.list_object_versions(Bucket=bucket, VersionIdMarker="abc")
    assert error(marker_alone)[:2] == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as bad_id:
        s3.get_object(Bucket=bucket, Key="k", VersionId="bad id")
    assert error(bad_id)[:2] == ("InvalidArgument", 400)
    # Another tenant sees none of it.
    _, access, secret = server.new_tenant()
    other = server.client(access, secret)
    with pytest.raises(ClientError) as foreign:
        other.list_object_versions(Bucket=bucket)
    assert error(foreign)[1] == 403
    with pytest.raises(ClientError) as foreign_put:
        other.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert error(foreign_put)[1] == 403
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_a_backup_survives_ransomware(s3: Any) -> None:
    """Write a backup, let an attacker with the same key overwrite every object and delete
    half of them, then restore each object from its last good version."""
    bucket = versioned_bucket(s3, "vers-backup")
    originals = {f"db/{n:03d}.dump": os.urandom(1000 + n) for n in range(12)}
    for key, data in originals.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    for n, key in enumerate(originals):
        s3.put_object(Bucket=bucket, Key=key, Body=b"ENCRYPTED BY RANSOMWARE")
        if n % 2:
            s3.delete_object(Bucket=bucket, Key=key)
    assert len(s3.list_objects_v2(Bucket=bucket).get("Contents", [])) == 6

    listed = s3.list_object_versions(Bucket=bucket)
    good = {}
    for v in listed["Versions"]:  # newest first within a key: the last one seen is oldest
        good[v["Key"]] = v["VersionId"]
    for key, version_id in good.items():
        s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key, "VersionId": version_id},
        )
    for key, data in originals.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_suspended_versioning_and_the_residency_report(s3: Any, server: Server) -> None:
    bucket = versioned_bucket(s3, "vers-suspended")
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"kept")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"null 1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null 2")
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in versions] == ["null", kept]
    report = json.loads(
        ok(server.cli("admin", "residency", "report", "--bucket", bucket, check=False))
    )
    assert len(report["objects"]) == 2  # every version's bytes are placed and reported
    assert {o["key"] for o in report["objects"]} == {"k"}


@pytest.mark.skipif(
    not Path(AWS).exists() and os.environ.get("CI") != "true", reason="aws CLI v2 not installed"
)
def test_aws_cli(server: Server, tmp_path: Path) -> None:
    tool = make_aws_tool(server, tmp_path / "aws-home")

    def aws(*args: str) -> str:
        return ok(tool.run(AWS, "--endpoint-url", server.endpoint, *args, cwd=tmp_path))

    aws("s3api", "create-bucket", "--bucket", "vers-cli")
    aws("s3api", "put-bucket-versioning", "--bucket", "vers-cli",
        "--versioning-configuration", "Status=Enabled")  # fmt: skip
    status = json.loads(aws("s3api", "get-bucket-versioning", "--bucket", "vers-cli"))
    assert status["Status"] == "Enabled"
    (tmp_path / "a").write_bytes(b"first")
    (tmp_path / "b").write_bytes(b"second")
    first = json.loads(aws("s3api", "put-object", "--bucket", "vers-cli", "--key", "f",
                           "--body", "a"))["VersionId"]  # fmt: skip
    aws("s3api", "put-object", "--bucket", "vers-cli", "--key", "f", "--body", "b")
    aws("s3", "rm", "s3://vers-cli/f")
    listed = json.loads(aws("s3api", "list-object-versions", "--bucket", "vers-cli"))
    assert len(listed["Versions"]) == 2
    assert len(listed["DeleteMarkers"]) == 1
    aws("s3api", "get-object", "--bucket", "vers-cli", "--key", "f", "--version-id", first, "out")
    assert (tmp_path / "out").read_bytes() == b"first"


@pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone not installed")
def test_rclone_sees_old_versions(server: Server, tmp_path: Path) -> None:
    tool: Tool = make_tool(server, tmp_path / "rclone-home")
    config = tool.home / "rclone.conf"
    config.write_text(
        "[andromede]\ntype = s3\nprovider = Other\nenv_auth = false\n"
        f"access_key_id = {tool.access_key}\nsecret_access_key = {tool.secret_key}\n"
        f"endpoint = {server.endpoint}\nregion = us-east-1\nforce_path_style = true\n"
    )
    tool.env["RCLONE_CONFIG"] = str(config)
    s3 = server.client(tool.access_key, tool.secret_key)
    versioned_bucket(s3, "vers-rclone")
    s3.put_object(Bucket="vers-rclone", Key="doc.txt", Body=b"old")
    s3.put_object(Bucket="vers-rclone", Key="doc.txt", Body=b"new!")

    def rclone(*args: str) -> subprocess.CompletedProcess[str]:
        return tool.run("rclone", "--low-level-retries", "1", "--retries", "1", *args)

    plain = ok(rclone("ls", "andromede:vers-rclone"))
    assert plain.split() == ["4", "doc.txt"]
    lines = sorted(ok(rclone("ls", "--s3-versions", "andromede:vers-rclone")).splitlines())
    assert len(lines) == 2
    sizes = sorted(line.split()[0] for line in lines)
    assert sizes == ["3", "4"]
    old = next(line.split()[1] for line in lines if line.split()[0] == "3")
    assert old.startswith("doc-v")
    assert old.endswith(".txt")
    out = ok(rclone("cat", "--s3-versions", f"andromede:vers-rclone/{old}"))
    assert out == "old"


def test_audit_records_carry_version_ids(s3: Any, server: Server) -> None:
    bucket = versioned_bucket(s3, "vers-audit")
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    s3.get_object(Bucket=bucket, Key="k", VersionId=put)
    found = json.loads(
        ok(
            server.cli(
                "admin",
                "audit",
                "query",
                "--bucket",
                bucket,
                "--limit",
                "1000",
                "--json",
                check=False,
            )
        )
    )["records"]
    seen = {(r["operation"], r["version_id"]) for r in found if r["face"] == "s3"}
    assert ("PutObject", put) in seen
    assert ("DeleteObject", marker) in seen
    assert ("GetObject", put) in seen
