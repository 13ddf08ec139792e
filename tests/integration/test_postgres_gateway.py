"""The same server over PostgreSQL: scale-out is configuration, not a rewrite.

Two gateways (separate processes, separate data dirs standing in for hosts) share one
PostgreSQL database; a bucket made through one is visible through the other. Data blobs live
on each gateway's local site here, so this checks the metadata path; shared data sites come
with placement (issue 4).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from support.postgres import create_database
from support.server import running_server

pytestmark = pytest.mark.postgres


def test_server_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    url = create_database(postgres_url, "gw_" + secrets.token_hex(4))
    with running_server(tmp_path / "gw1", workers=2, ANDROMEDE_DATABASE_URL=url) as server:
        s3 = server.client()
        s3.create_bucket(Bucket="pg-bucket")
        body = secrets.token_bytes(3 << 20)
        s3.put_object(Bucket="pg-bucket", Key="a/b", Body=body)
        got = s3.get_object(Bucket="pg-bucket", Key="a/b")["Body"]
        try:
            assert hashlib.sha256(got.read()).digest() == hashlib.sha256(body).digest()
        finally:
            got.close()
        upload = s3.create_multipart_upload(Bucket="pg-bucket", Key="mp")
        part = s3.upload_part(
            Bucket="pg-bucket", Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 10
        )
        s3.complete_multipart_upload(
            Bucket="pg-bucket",
            Key="mp",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        listed = s3.list_objects_v2(Bucket="pg-bucket", Delimiter="/")
        assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["a/"]
        assert [o["Key"] for o in listed["Contents"]] == ["mp"]
        _, access, secret = server.new_tenant()
        other = server.client(access, secret)
        with pytest.raises(ClientError) as denied:
            other.head_bucket(Bucket="pg-bucket")
        assert denied.value.response["Error"]["Code"] in ("403", "AccessDenied")
        # A second gateway on the same database sees the same namespace.
        with running_server(tmp_path / "gw2", ANDROMEDE_DATABASE_URL=url) as second:
            s3b = second.client(server.access_key, server.secret_key)
            names = [b["Name"] for b in s3b.list_buckets()["Buckets"]]
            assert "pg-bucket" in names
            # Re-created by its owner (us-east-1: a no-op) or taken by another tenant.
            s3b.create_bucket(Bucket="pg-bucket")
            assert [o["Key"] for o in s3b.list_objects_v2(Bucket="pg-bucket")["Contents"]] == [
                "a/b",
                "mp",
            ]
            with pytest.raises(ClientError) as taken:
                second.client(access, secret).create_bucket(Bucket="pg-bucket")
            assert taken.value.response["Error"]["Code"] == "BucketAlreadyExists"
