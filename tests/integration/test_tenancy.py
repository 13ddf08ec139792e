"""Tenant isolation: a tenant's keys never reach another tenant's buckets, objects or keys.

Two tenants are made through the admin CLI; tenant B then tries every operation on tenant A's
bucket, objects and upload, and each must be refused without changing anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from support.server import Server
from support.waiting import wait_until

ADMIN = "/_andromede/admin/v1"
DENIED = ("AccessDenied", "403")  # HEAD answers have no body: botocore reports the status


@dataclass
class Tenant:
    """A tenant with one key, a bucket, an object and an open multipart upload."""

    name: str
    access: str
    secret: str
    s3: Any
    bucket: str
    upload_id: str
    part_etag: str


def _make_tenant(server: Server) -> Tenant:
    name, access, secret = server.new_tenant()
    s3 = server.client(access, secret)
    bucket = f"{name}-data"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "owner", "Value": name}]})
    s3.put_object(
        Bucket=bucket, Key="obj", Body=b"secret of " + name.encode(), Tagging="owner=" + name
    )
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"p1")
    return Tenant(name, access, secret, s3, bucket, upload_id, part["ETag"])


@pytest.fixture(scope="module")
def tenant_a(server: Server) -> Tenant:
    """The victim."""
    return _make_tenant(server)


@pytest.fixture(scope="module")
def tenant_b(server: Server) -> Tenant:
    """The other tenant."""
    return _make_tenant(server)


def _attempts(a: Tenant, b: Tenant) -> dict[str, Callable[[Any], object]]:
    """Every operation a key could try on tenant A's resources, by name."""
    ab, ak = a.bucket, "obj"
    upload = {"Bucket": ab, "Key": "mp", "UploadId": a.upload_id}
    return {
        "HeadBucket": lambda c: c.head_bucket(Bucket=ab),
        "ListObjects": lambda c: c.list_objects(Bucket=ab),
        "ListObjectsV2": lambda c: c.list_objects_v2(Bucket=ab),
        "ListObjectVersions": lambda c: c.list_object_versions(Bucket=ab),
        "ListMultipartUploads": lambda c: c.list_multipart_uploads(Bucket=ab),
        "GetBucketLocation": lambda c: c.get_bucket_location(Bucket=ab),
        "GetBucketVersioning": lambda c: c.get_bucket_versioning(Bucket=ab),
        "GetBucketAcl": lambda c: c.get_bucket_acl(Bucket=ab),
        "GetBucketTagging": lambda c: c.get_bucket_tagging(Bucket=ab),
        "PutBucketTagging": lambda c: c.put_bucket_tagging(
            Bucket=ab, Tagging={"TagSet": [{"Key": "owner", "Value": "mallory"}]}
        ),
        "DeleteBucketTagging": lambda c: c.delete_bucket_tagging(Bucket=ab),
        "DeleteBucket": lambda c: c.delete_bucket(Bucket=ab),
        "GetObject": lambda c: c.get_object(Bucket=ab, Key=ak),
        "GetObjectRange": lambda c: c.get_object(Bucket=ab, Key=ak, Range="bytes=0-1"),
        "HeadObject": lambda c: c.head_object(Bucket=ab, Key=ak),
        "GetObjectAcl": lambda c: c.get_object_acl(Bucket=ab, Key=ak),
        "PutObject": lambda c: c.put_object(Bucket=ab, Key=ak, Body=b"overwritten"),
        "PutObjectNewKey": lambda c: c.put_object(Bucket=ab, Key="planted", Body=b"x"),
        "DeleteObject": lambda c: c.delete_object(Bucket=ab, Key=ak),
        "DeleteObjects": lambda c: c.delete_objects(
            Bucket=ab, Delete={"Objects": [{"Key": ak}, {"Key": "mp"}]}
        ),
        "CopyObjectFromA": lambda c: c.copy_object(
            Bucket=b.bucket, Key="stolen", CopySource={"Bucket": ab, "Key": ak}
        ),
        "CopyObjectIntoA": lambda c: c.copy_object(
            Bucket=ab, Key=ak, CopySource={"Bucket": b.bucket, "Key": "obj"}
        ),
        "CopyObjectWithinA": lambda c: c.copy_object(
            Bucket=ab, Key="copy", CopySource={"Bucket": ab, "Key": ak}
        ),
        "GetObjectTagging": lambda c: c.get_object_tagging(Bucket=ab, Key=ak),
        "PutObjectTagging": lambda c: c.put_object_tagging(
            Bucket=ab, Key=ak, Tagging={"TagSet": [{"Key": "owner", "Value": "mallory"}]}
        ),
        "DeleteObjectTagging": lambda c: c.delete_object_tagging(Bucket=ab, Key=ak),
        "GetObjectAttributes": lambda c: c.get_object_attributes(
            Bucket=ab, Key=ak, ObjectAttributes=["ETag", "ObjectSize"]
        ),
        "CreateMultipartUpload": lambda c: c.create_multipart_upload(Bucket=ab, Key="mp2"),
        "UploadPart": lambda c: c.upload_part(**upload, PartNumber=2, Body=b"evil"),
        "UploadPartCopyFromB": lambda c: c.upload_part_copy(
            **upload, PartNumber=3, CopySource={"Bucket": b.bucket, "Key": "obj"}
        ),
        "UploadPartCopyFromA": lambda c: c.upload_part_copy(
            Bucket=b.bucket,
            Key="mp",
            UploadId=b.upload_id,
            PartNumber=5,
            CopySource={"Bucket": ab, "Key": ak},
        ),
        "ListParts": lambda c: c.list_parts(**upload),
        "CompleteMultipartUpload": lambda c: c.complete_multipart_upload(
            **upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": a.part_etag}]}
        ),
        "AbortMultipartUpload": lambda c: c.abort_multipart_upload(**upload),
    }


def _assert_untouched(a: Tenant) -> None:
    with a.s3.get_object(Bucket=a.bucket, Key="obj")["Body"] as body:
        assert body.read() == b"secret of " + a.name.encode()
    tags = a.s3.get_object_tagging(Bucket=a.bucket, Key="obj")["TagSet"]
    assert tags == [{"Key": "owner", "Value": a.name}]
    bucket_tags = a.s3.get_bucket_tagging(Bucket=a.bucket)["TagSet"]
    assert bucket_tags == [{"Key": "owner", "Value": a.name}]
    keys = [o["Key"] for o in a.s3.list_objects_v2(Bucket=a.bucket).get("Contents", [])]
    assert keys == ["obj"]
    uploads = a.s3.list_multipart_uploads(Bucket=a.bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp", a.upload_id)]
    parts = a.s3.list_parts(Bucket=a.bucket, Key="mp", UploadId=a.upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, a.part_etag)]


def _denied_everywhere(client: Any, a: Tenant, b: Tenant) -> None:
    outcomes = {}
    for name, attempt in _attempts(a, b).items():
        try:
            attempt(client)
        except ClientError as exc:
            outcomes[name] = (
                exc.response["Error"]["Code"],
                exc.response["ResponseMetadata"]["HTTPStatusCode"],
            )
        else:
            outcomes[name] = ("succeeded", 200)
    wrong = {
        name: outcome
        for name, outcome in outcomes.items()
        if outcome[0] not in DENIED or outcome[1] != 403
    }
    assert wrong == {}


def test_other_tenant_is_denied_every_operation(tenant_a: Tenant, tenant_b: Tenant) -> None:
    _denied_everywhere(tenant_b.s3, tenant_a, tenant_b)
    _assert_untouched(tenant_a)
    own = [o["Key"] for o in tenant_b.s3.list_objects_v2(Bucket=tenant_b.bucket)["Contents"]]
    assert own == ["obj"]  # nothing copied out of A


def test_operator_key_is_denied_on_tenant_buckets(
    server: Server, s3: Any, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    _denied_everywhere(s3, tenant_a, tenant_b)
    _assert_untouched(tenant_a)


def test_tenant_is_denied_on_default_tenant_buckets(s3: Any, bucket: str, tenant_b: Tenant) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"operator data")
    attempts: list[Callable[[], object]] = [
        lambda: tenant_b.s3.list_objects_v2(Bucket=bucket),
        lambda: tenant_b.s3.get_object(Bucket=bucket, Key="k"),
        lambda: tenant_b.s3.put_object(Bucket=bucket, Key="k", Body=b"x"),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as exc:
            attempt()
        assert exc.value.response["Error"]["Code"] == "AccessDenied"


def test_bucket_names_are_global(tenant_a: Tenant, tenant_b: Tenant) -> None:
    with pytest.raises(ClientError) as exc:
        tenant_b.s3.create_bucket(Bucket=tenant_a.bucket)
    assert exc.value.response["Error"]["Code"] == "BucketAlreadyExists"


def test_list_buckets_shows_only_own_buckets(
    s3: Any, bucket: str, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    def names(client: Any) -> set[str]:
        return {b["Name"] for b in client.list_buckets()["Buckets"]}

    assert names(tenant_a.s3) == {tenant_a.bucket}
    assert names(tenant_b.s3) == {tenant_b.bucket}
    operator = names(s3)
    assert bucket in operator
    assert not operator & {tenant_a.bucket, tenant_b.bucket}


# --- the admin API ----------------------------------------------------------------------------
def _admin(
    server: Server,
    access: str,
    secret: str,
    method: str,
    path: str,
    body: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    url = server.endpoint + ADMIN + path
    if params:
        url += "?" + str(httpx.QueryParams(params))
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"content-type": "application/json"} if body is not None else {}
    request = AWSRequest(method=method, url=url, data=data, headers=headers)
    S3SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(request)
    with httpx.Client(timeout=30) as client:
        return client.request(method, url, content=data, headers=dict(request.headers.items()))


def test_tenant_key_cannot_administer_the_platform(
    server: Server, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    def call(
        method: str,
        path: str,
        body: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        return _admin(server, tenant_a.access, tenant_a.secret, method, path, body, params)

    who = call("GET", "/whoami").json()
    assert who == {"access_key_id": tenant_a.access, "tenant": tenant_a.name, "is_operator": False}
    assert call("POST", "/tenants", {"name": "t-sneaky"}).status_code == 403
    assert call("GET", "/tenants").status_code == 403
    assert call("GET", "/keys", params={"tenant": tenant_b.name}).status_code == 403
    assert call("POST", "/keys", {"tenant": tenant_b.name}).status_code == 403
    assert call("DELETE", f"/keys/{tenant_b.access}").status_code == 403
    own = call("GET", "/keys")
    assert own.status_code == 200
    assert {k["tenant"] for k in own.json()} == {tenant_a.name}
    assert tenant_b.access not in {k["access_key_id"] for k in own.json()}
    # Nothing happened: B's key still works, and no tenant was made.
    tenant_b.s3.head_bucket(Bucket=tenant_b.bucket)
    tenants = _admin(server, server.access_key, server.secret_key, "GET", "/tenants").json()
    assert "t-sneaky" not in {t["name"] for t in tenants}


def _works(client: Any, bucket: str) -> bool:
    try:
        client.list_objects_v2(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "InvalidAccessKeyId":
            raise
        return False
    return True


def test_deleted_key_stops_working_within_the_cache_ttl(server: Server, tenant_a: Tenant) -> None:
    created = _admin(
        server,
        tenant_a.access,
        tenant_a.secret,
        "POST",
        "/keys",
        {"tenant": tenant_a.name, "description": "short-lived"},
    )
    assert created.status_code == 201
    key = created.json()
    client = server.client(key["access_key_id"], key["secret_key"])
    for _ in range(4):  # warm the key cache of both workers
        client.head_bucket(Bucket=tenant_a.bucket)

    deleted = _admin(
        server, tenant_a.access, tenant_a.secret, "DELETE", f"/keys/{key['access_key_id']}"
    )
    assert deleted.status_code == 204

    wait_until(
        lambda: not _works(client, tenant_a.bucket), 10, 0.25, "the deleted key being refused"
    )
    # Refused for good, whichever worker answers.
    for _ in range(6):
        with pytest.raises(ClientError) as exc:
            client.list_objects_v2(Bucket=tenant_a.bucket)
        assert exc.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    tenant_a.s3.head_bucket(Bucket=tenant_a.bucket)  # the tenant's other key is unaffected
