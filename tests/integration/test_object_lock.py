"""Object lock through the real server: the aws CLI v2's create-bucket with object lock (it
sends ``True``), retention, legal hold and their headers with boto3, and a COMPLIANCE version
held against every side: its owner's deletes (bypass or not), bucket deletion, and the
operator shredding the key that seals it (refused, naming the bucket and the date)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.cli_tools import AWS, make_aws_tool, ok
from support.server import Server


@pytest.fixture(scope="module")
def server(cli_tools_server: Server) -> Server:
    return cli_tools_server


def code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.skipif(
    not Path(AWS).exists() and os.environ.get("CI") != "true", reason="aws CLI v2 not installed"
)
def test_aws_cli_makes_a_locked_bucket(server: Server, tmp_path: Path) -> None:
    tool = make_aws_tool(server, tmp_path / "aws-home")

    def aws(*args: str) -> str:
        return ok(tool.run(AWS, "--endpoint-url", server.endpoint, *args, cwd=tmp_path))

    aws("s3api", "create-bucket", "--bucket", "lock-cli", "--object-lock-enabled-for-bucket")
    config = json.loads(aws("s3api", "get-object-lock-configuration", "--bucket", "lock-cli"))
    assert config["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    status = json.loads(aws("s3api", "get-bucket-versioning", "--bucket", "lock-cli"))
    assert status["Status"] == "Enabled"
    rule = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}
    config = {"ObjectLockEnabled": "Enabled", "Rule": rule}
    aws("s3api", "put-object-lock-configuration", "--bucket", "lock-cli",
        "--object-lock-configuration", json.dumps(config))  # fmt: skip
    (tmp_path / "f").write_bytes(b"kept")
    put = json.loads(aws("s3api", "put-object", "--bucket", "lock-cli", "--key", "f",
                         "--body", "f"))  # fmt: skip
    retention = json.loads(aws("s3api", "get-object-retention", "--bucket", "lock-cli",
                               "--key", "f"))  # fmt: skip
    assert retention["Retention"]["Mode"] == "GOVERNANCE"
    delete = ["s3api", "delete-object", "--bucket", "lock-cli", "--key", "f",
              "--version-id", put["VersionId"]]  # fmt: skip
    refused = tool.run(AWS, "--endpoint-url", server.endpoint, *delete)
    assert refused.returncode != 0
    assert "AccessDenied" in refused.stderr
    aws(*delete, "--bypass-governance-retention")


def test_compliance_from_every_side(server: Server) -> None:
    tenant, access, secret = server.new_tenant()
    s3 = server.client(access, secret)
    s3.create_bucket(Bucket="lock-vault", ObjectLockEnabledForBucket=True)
    admin = ["--tenant", tenant]
    created = json.loads(
        server.cli("admin", "kms", "create", *admin, "--description", "records", "--json").stdout
    )
    key_id = created["key_id"]
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(microsecond=0)
    version = s3.put_object(
        Bucket="lock-vault", Key="ledger.pdf", Body=b"%PDF ledger",
        ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
        ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id,
    )["VersionId"]  # fmt: skip
    head = s3.head_object(Bucket="lock-vault", Key="ledger.pdf")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == until

    # The tenant: no delete of the version, bypass or not; no shorter retention.
    for bypass in (False, True):
        with pytest.raises(ClientError) as denied:
            s3.delete_object(Bucket="lock-vault", Key="ledger.pdf", VersionId=version,
                             BypassGovernanceRetention=bypass)  # fmt: skip
        assert code(denied) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as shorter:
        s3.put_object_retention(
            Bucket="lock-vault", Key="ledger.pdf", VersionId=version,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - dt.timedelta(days=1)},
        )  # fmt: skip
    assert code(shorter) == ("AccessDenied", 403)
    result = s3.delete_objects(
        Bucket="lock-vault",
        Delete={"Objects": [{"Key": "ledger.pdf", "VersionId": version}]},
        BypassGovernanceRetention=True,
    )
    assert result["Errors"][0]["Code"] == "AccessDenied"
    # A delete marker hides it, the bucket cannot be emptied, so not deleted either.
    s3.delete_object(Bucket="lock-vault", Key="ledger.pdf")
    with pytest.raises(ClientError) as not_empty:
        s3.delete_bucket(Bucket="lock-vault")
    assert code(not_empty) == ("BucketNotEmpty", 409)

    # The operator: the key that seals it cannot be scheduled for deletion, let alone destroyed.
    refused = server.cli("admin", "kms", "schedule-deletion", key_id, "--days", "7", check=False)
    assert refused.returncode != 0
    assert "lock-vault" in refused.stdout + refused.stderr
    assert until.date().isoformat() in refused.stdout + refused.stderr
    got = s3.get_object(Bucket="lock-vault", Key="ledger.pdf", VersionId=version)
    assert got["Body"].read() == b"%PDF ledger"


def test_lock_requests_are_validated(server: Server) -> None:
    _, access, secret = server.new_tenant()
    s3: Any = server.client(access, secret)
    s3.create_bucket(Bucket="lock-plain")
    with pytest.raises(ClientError) as unversioned:
        s3.put_object_lock_configuration(
            Bucket="lock-plain", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
        )
    assert code(unversioned) == ("InvalidBucketState", 409)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(ClientError) as no_lock:
        s3.put_object(Bucket="lock-plain", Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=future)  # fmt: skip
    assert code(no_lock) == ("InvalidRequest", 400)
    s3.create_bucket(Bucket="lock-strict", ObjectLockEnabledForBucket=True)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with pytest.raises(ClientError) as in_the_past:
        s3.put_object(Bucket="lock-strict", Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=past)  # fmt: skip
    assert code(in_the_past) == ("InvalidArgument", 400)
    bad = {"ObjectLockEnabled": "Enabled",
           "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}}  # fmt: skip
    with pytest.raises(ClientError) as both:
        s3.put_object_lock_configuration(Bucket="lock-strict", ObjectLockConfiguration=bad)
    assert code(both) == ("MalformedXML", 400)
    assert (
        "Rule"
        not in s3.get_object_lock_configuration(Bucket="lock-strict")["ObjectLockConfiguration"]
    )  # nothing half-applied
    with pytest.raises(ClientError) as suspend:
        s3.put_bucket_versioning(
            Bucket="lock-strict", VersioningConfiguration={"Status": "Suspended"}
        )
    assert code(suspend) == ("InvalidBucketState", 409)
