"""Lifecycle through the real server, with the test-only day of one second: a rule expires
objects under its prefix, reports it in ``x-amz-expiration``, aborts old uploads, and bad
configurations are refused with nothing kept."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from support.cli_tools import AWS, make_aws_tool, ok
from support.server import Server, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("lifecycle") / "data"
    with running_server(
        data, ANDROMEDE_LIFECYCLE_DAY_SECONDS="1", ANDROMEDE_LIFECYCLE_INTERVAL_SECONDS="0.5"
    ) as srv:
        yield srv


def wait_for(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_rules_expire_objects_and_abort_uploads(server: Server) -> None:
    s3 = server.client()
    s3.create_bucket(Bucket="lc-tmp")
    rules = [
        {"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled",
         "Expiration": {"Days": 2}},
        {"ID": "mpu", "Filter": {"Prefix": ""}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ]  # fmt: skip
    s3.put_bucket_lifecycle_configuration(Bucket="lc-tmp", LifecycleConfiguration={"Rules": rules})
    assert [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket="lc-tmp")["Rules"]] == [
        "tmp",
        "mpu",
    ]
    put = s3.put_object(Bucket="lc-tmp", Key="tmp/scratch", Body=b"x")
    assert 'rule-id="tmp"' in put["Expiration"]
    assert 'rule-id="tmp"' in s3.head_object(Bucket="lc-tmp", Key="tmp/scratch")["Expiration"]
    s3.put_object(Bucket="lc-tmp", Key="keep/report", Body=b"x")
    assert "Expiration" not in s3.head_object(Bucket="lc-tmp", Key="keep/report")
    s3.create_multipart_upload(Bucket="lc-tmp", Key="big")

    def listed() -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket="lc-tmp").get("Contents", [])]

    wait_for(lambda: listed() == ["keep/report"], "tmp/scratch expired")
    wait_for(lambda: "Uploads" not in s3.list_multipart_uploads(Bucket="lc-tmp"), "upload aborted")
    s3.delete_bucket_lifecycle(Bucket="lc-tmp")
    with pytest.raises(ClientError) as gone:
        s3.get_bucket_lifecycle_configuration(Bucket="lc-tmp")
    assert gone.value.response["Error"]["Code"] == "NoSuchLifecycleConfiguration"


def test_bad_configurations_are_refused_whole(server: Server) -> None:
    s3 = server.client()
    s3.create_bucket(Bucket="lc-bad")
    good = [{"ID": "a", "Filter": {"Prefix": "a/"}, "Status": "Enabled",
             "Expiration": {"Days": 1}}]  # fmt: skip
    s3.put_bucket_lifecycle_configuration(Bucket="lc-bad", LifecycleConfiguration={"Rules": good})
    bad_rules = [
        ([{**good[0], "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}],
         "InvalidStorageClass"),
        ([good[0], good[0]], "InvalidArgument"),
        ([{**good[0], "Expiration": {"Days": 0}}], "InvalidArgument"),
        ([{**good[0], "Status": "Maybe"}], "MalformedXML"),
    ]  # fmt: skip
    for rules, code in bad_rules:
        with pytest.raises(ClientError) as refused:
            s3.put_bucket_lifecycle_configuration(
                Bucket="lc-bad", LifecycleConfiguration={"Rules": rules}
            )
        assert refused.value.response["Error"]["Code"] == code
    kept = s3.get_bucket_lifecycle_configuration(Bucket="lc-bad")["Rules"]
    assert [r["ID"] for r in kept] == ["a"]


def test_progress_shows_in_the_admin_api(server: Server) -> None:
    s3 = server.client()
    s3.create_bucket(Bucket="lc-progress")
    rules = [{"ID": "all", "Filter": {"Prefix": ""}, "Status": "Enabled",
              "Expiration": {"Days": 1}}]  # fmt: skip
    s3.put_bucket_lifecycle_configuration(
        Bucket="lc-progress", LifecycleConfiguration={"Rules": rules}
    )
    s3.put_object(Bucket="lc-progress", Key="a", Body=b"x")

    def progress() -> dict[str, object] | None:
        jobs = json.loads(ok(server.cli("admin", "jobs", "list", "--json", check=False)))
        found = [j for j in jobs if j["job"] == "lifecycle"]
        return found[0]["progress"] if found else None

    wait_for(lambda: "Contents" not in s3.list_objects_v2(Bucket="lc-progress"), "a expired")
    wait_for(lambda: (progress() or {}).get("finished") is True, "a finished pass")
    done = progress()
    assert done is not None
    assert set(done) >= {"pass_started", "buckets", "expired", "noncurrent_deleted"}


@pytest.mark.skipif(
    not Path(AWS).exists() and os.environ.get("CI") != "true", reason="aws CLI v2 not installed"
)
def test_aws_cli_sets_and_reads_rules(server: Server, tmp_path: Path) -> None:
    tool = make_aws_tool(server, tmp_path / "aws-home")

    def aws(*args: str) -> str:
        return ok(tool.run(AWS, "--endpoint-url", server.endpoint, *args, cwd=tmp_path))

    aws("s3api", "create-bucket", "--bucket", "lc-cli")
    config = {"Rules": [{"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
                         "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]}  # fmt: skip
    aws("s3api", "put-bucket-lifecycle-configuration", "--bucket", "lc-cli",
        "--lifecycle-configuration", json.dumps(config))  # fmt: skip
    got = json.loads(aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", "lc-cli"))
    assert got["Rules"][0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    aws("s3api", "delete-bucket-lifecycle", "--bucket", "lc-cli")
