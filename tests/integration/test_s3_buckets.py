"""Bucket operations through boto3, asserted as AWS S3 answers them."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.s3errors import error_of
from support.server import Server
from support.sigv4 import Reply, Signer, send_signed, sha256_hex


def unique(prefix: str = "bk") -> str:
    """A bucket name nobody has taken."""
    return f"{prefix}-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def other(server: Server) -> Any:
    """A client for a second tenant."""
    _, access, secret = server.new_tenant()
    return server.client(access, secret)


# --- ListBuckets ---------------------------------------------------------------------------


def test_list_buckets_shows_own_buckets_only(s3: Any, other: Any, bucket: str) -> None:
    foreign = unique("foreign")
    other.create_bucket(Bucket=foreign)
    listed = s3.list_buckets()
    names = [b["Name"] for b in listed["Buckets"]]
    assert bucket in names
    assert foreign not in names
    assert names == sorted(names)
    entry = next(b for b in listed["Buckets"] if b["Name"] == bucket)
    assert entry["BucketRegion"] == "us-east-1"
    assert isinstance(entry["CreationDate"], dt.datetime)
    assert abs(entry["CreationDate"] - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert listed["Owner"]["ID"]
    assert foreign in [b["Name"] for b in other.list_buckets()["Buckets"]]
    assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]


@pytest.fixture
def lister(server: Server) -> Any:
    """A fresh tenant's client (no bucket yet), validating no parameter on the client side."""
    _, access, secret = server.new_tenant()
    return server.client(access, secret, parameter_validation=False)


def test_list_buckets_paginated(lister: Any) -> None:
    # ceph/s3-tests test_list_buckets_paginated, plus a prefix.
    listed = lister.list_buckets(MaxBuckets=1)
    assert (listed["Buckets"], "ContinuationToken" in listed) == ([], False)
    names = [unique("page") for _ in range(3)]
    for name in names:
        lister.create_bucket(Bucket=name)
    names.sort()
    seen: list[str] = []
    listed = lister.list_buckets(MaxBuckets=2)
    seen += [b["Name"] for b in listed["Buckets"]]
    token = listed["ContinuationToken"]
    assert names[1] not in token  # opaque
    listed = lister.list_buckets(MaxBuckets=2, ContinuationToken=token)
    seen += [b["Name"] for b in listed["Buckets"]]
    assert "ContinuationToken" not in listed
    assert seen == names
    assert "ContinuationToken" not in lister.list_buckets(MaxBuckets=3)
    assert [b["Name"] for b in lister.list_buckets()["Buckets"]] == names
    listed = lister.list_buckets(MaxBuckets=1, Prefix=names[2][:9])
    assert listed["Prefix"] == names[2][:9]


def test_list_buckets_with_prefix_pages_within_it(lister: Any) -> None:
    inside = sorted(unique("in") for _ in range(3))
    for name in [*inside, unique("out")]:
        lister.create_bucket(Bucket=name)
    listed = lister.list_buckets(Prefix="in-", MaxBuckets=2)
    assert [b["Name"] for b in listed["Buckets"]] == inside[:2]
    assert listed["Prefix"] == "in-"
    token = listed["ContinuationToken"]
    listed = lister.list_buckets(Prefix="in-", MaxBuckets=2, ContinuationToken=token)
    assert [b["Name"] for b in listed["Buckets"]] == inside[2:]
    assert "ContinuationToken" not in listed


@pytest.mark.parametrize("value", ["0", "10001", "-1", "ten", "1.5"])
def test_list_buckets_bad_max_buckets(server: Server, signer: Signer, value: str) -> None:
    reply = send_signed(server, signer.sign("GET", "/", query=[("max-buckets", value)]))
    assert (reply.status, reply.code) == (400, "InvalidArgument")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "",
        "%%%",
        base64.urlsafe_b64encode(b"b1:Not A Bucket!").decode(),
        base64.urlsafe_b64encode(b"b1:\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"v1:a-key-token").decode(),  # a ListObjectsV2 token
        "A" * 2000,
    ],
)
def test_list_buckets_forged_token_is_invalid_argument(lister: Any, token: str) -> None:
    with pytest.raises(ClientError) as exc:
        lister.list_buckets(MaxBuckets=1, ContinuationToken=token)
    assert error_of(exc) == ("InvalidArgument", 400)


# --- CreateBucket --------------------------------------------------------------------------


def test_create_bucket_answers_location(s3: Any) -> None:
    name = unique()
    response = s3.create_bucket(Bucket=name)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["Location"] == "/" + name
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 64,  # too long
        "MyBucket-" + "x" * 6,  # uppercase
        "192.168.5.4",  # IP address form
        "my..bucket",  # consecutive dots
        "-leading-hyphen",
        "trailing-hyphen-",
        ".leading-dot",
        "xn--punycode-prefix",
        "under_score",
    ],
)
def test_create_bucket_invalid_name(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert error_of(exc) == ("InvalidBucketName", 400)


@pytest.mark.parametrize("name", ["abc", "a" * 63, "my.dotted.bucket-1", "0-9"])
def test_create_bucket_valid_edge_names(s3: Any, name: str) -> None:
    # Names are global: suffix the fixed ones so repeated runs against one server stay fresh.
    name = f"{name}-{secrets.token_hex(4)}" if len(name) < 63 else name[:55] + secrets.token_hex(4)
    assert s3.create_bucket(Bucket=name)["Location"] == "/" + name
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_bucket_explicit_us_east_1_is_refused(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(
            Bucket=unique(), CreateBucketConfiguration={"LocationConstraint": "us-east-1"}
        )
    assert error_of(exc) == ("InvalidLocationConstraint", 400)


def test_create_bucket_unknown_location_is_refused(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(
            Bucket=unique(), CreateBucketConfiguration={"LocationConstraint": "mars-north-9"}
        )
    assert error_of(exc) == ("InvalidLocationConstraint", 400)


def test_create_bucket_twice_same_tenant_in_us_east_1_keeps_it(s3: Any, bucket: str) -> None:
    # us-east-1 answers 200 and changes nothing; every other region answers 409
    # BucketAlreadyOwnedByYou (tests/unit/services/test_buckets.py).
    s3.put_object(Bucket=bucket, Key="keep", Body=b"data")
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    response = s3.create_bucket(Bucket=bucket)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "k", "Value": "v"}]


def test_create_bucket_taken_by_other_tenant(other: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        other.create_bucket(Bucket=bucket)
    assert error_of(exc) == ("BucketAlreadyExists", 409)


# --- HeadBucket ----------------------------------------------------------------------------


def test_head_bucket(s3: Any, bucket: str) -> None:
    response = s3.head_bucket(Bucket=bucket)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["BucketRegion"] == "us-east-1"


def test_head_bucket_missing(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=unique("missing"))
    assert error_of(exc) == ("404", 404)


def test_head_bucket_of_other_tenant_is_forbidden(other: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        other.head_bucket(Bucket=bucket)
    assert error_of(exc) == ("403", 403)


def test_other_tenant_cannot_list_or_write(other: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        other.list_objects_v2(Bucket=bucket)
    assert error_of(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        other.put_object(Bucket=bucket, Key="intruder", Body=b"x")
    assert error_of(exc) == ("AccessDenied", 403)


# --- DeleteBucket --------------------------------------------------------------------------


def test_delete_bucket(s3: Any) -> None:
    name = unique()
    s3.create_bucket(Bucket=name)
    response = s3.delete_bucket(Bucket=name)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert error_of(exc) == ("404", 404)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_delete_bucket_not_empty(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert error_of(exc) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=bucket, Key="keep")
    s3.delete_bucket(Bucket=bucket)


def test_delete_bucket_missing(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=unique("missing"))
    assert error_of(exc) == ("NoSuchBucket", 404)


def test_delete_bucket_of_other_tenant_is_forbidden(s3: Any, other: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        other.delete_bucket(Bucket=bucket)
    assert error_of(exc) == ("AccessDenied", 403)
    s3.head_bucket(Bucket=bucket)


def test_name_is_free_again_after_delete(s3: Any, other: Any) -> None:
    name = unique()
    s3.create_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)
    other.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert error_of(exc) == ("BucketAlreadyExists", 409)


# --- location and configuration reads -------------------------------------------------------


def test_get_bucket_location_default_region_is_empty(s3: Any, bucket: str) -> None:
    response = s3.get_bucket_location(Bucket=bucket)
    assert response["LocationConstraint"] is None


def test_get_bucket_location_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_location(Bucket=unique("missing"))
    assert error_of(exc) == ("NoSuchBucket", 404)


def test_get_bucket_versioning_unconfigured(s3: Any, bucket: str) -> None:
    response = s3.get_bucket_versioning(Bucket=bucket)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "Status" not in response
    assert "MFADelete" not in response


@pytest.mark.parametrize(
    ("operation", "code"),
    [
        ("get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration"),
        ("get_bucket_encryption", "ServerSideEncryptionConfigurationNotFoundError"),
        ("get_bucket_tagging", "NoSuchTagSet"),
        ("get_bucket_policy", "NoSuchBucketPolicy"),
        ("get_bucket_cors", "NoSuchCORSConfiguration"),
        ("get_object_lock_configuration", "ObjectLockConfigurationNotFoundError"),
        ("get_bucket_website", "NoSuchWebsiteConfiguration"),
    ],
)
def test_unconfigured_bucket_configuration(s3: Any, bucket: str, operation: str, code: str) -> None:
    with pytest.raises(ClientError) as exc:
        getattr(s3, operation)(Bucket=bucket)
    assert error_of(exc) == (code, 404)


# --- bucket tagging ------------------------------------------------------------------------


def test_bucket_tagging_round_trip(s3: Any, bucket: str) -> None:
    # ceph/s3-tests test_set_bucket_tagging, with more than an object's 10 tags.
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(exc) == ("NoSuchTagSet", 404)
    tags = [{"Key": f"key-{i:02}", "Value": f"value {i}"} for i in range(50)]
    response = s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    response = s3.delete_bucket_tagging(Bucket=bucket)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(exc) == ("NoSuchTagSet", 404)


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ([{"Key": f"k{i}", "Value": "v"} for i in range(51)], "BadRequest"),
        ([{"Key": "dup", "Value": "1"}, {"Key": "dup", "Value": "2"}], "InvalidTag"),
        ([{"Key": "aws:reserved", "Value": "v"}], "InvalidTag"),
        ([{"Key": "k" * 129, "Value": "v"}], "InvalidTag"),
        ([{"Key": "k", "Value": "v" * 257}], "InvalidTag"),
    ],
)
def test_bad_bucket_tags_are_refused(
    s3: Any, bucket: str, tags: list[dict[str, str]], code: str
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    assert error_of(exc) == (code, 400)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(exc) == ("NoSuchTagSet", 404)


def _put_tagging(
    server: Server, signer: Signer, bucket: str, body: bytes, headers: dict[str, str]
) -> Reply:
    signed = signer.sign(
        "PUT", f"/{bucket}", query=[("tagging", "")], headers=headers, payload=sha256_hex(body)
    )
    return send_signed(server, signed, body)


TAGGING = b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>"


def test_put_bucket_tagging_checks_content_md5_when_sent(
    server: Server, signer: Signer, bucket: str
) -> None:
    wrong = base64.b64encode(hashlib.md5(b"other", usedforsecurity=False).digest()).decode()
    reply = _put_tagging(server, signer, bucket, TAGGING, {"content-md5": wrong})
    assert (reply.status, reply.code) == (400, "BadDigest")
    reply = _put_tagging(server, signer, bucket, TAGGING, {"content-md5": "not base64!"})
    assert (reply.status, reply.code) == (400, "InvalidDigest")
    wrong_sha = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    reply = _put_tagging(server, signer, bucket, TAGGING, {"x-amz-checksum-sha256": wrong_sha})
    assert (reply.status, reply.code) == (400, "BadDigest")
    right = base64.b64encode(hashlib.md5(TAGGING, usedforsecurity=False).digest()).decode()
    assert _put_tagging(server, signer, bucket, TAGGING, {"content-md5": right}).status == 204
    # Without either (AWS requires one; we take it).
    assert _put_tagging(server, signer, bucket, TAGGING, {}).status == 204


def test_bucket_tagging_of_another_tenant_is_denied(s3: Any, other: Any, bucket: str) -> None:
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    attempts = [
        lambda: other.get_bucket_tagging(Bucket=bucket),
        lambda: other.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": []}),
        lambda: other.delete_bucket_tagging(Bucket=bucket),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as exc:
            attempt()
        assert error_of(exc) == ("AccessDenied", 403)
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "k", "Value": "v"}]


def test_deleted_bucket_takes_its_tags_along(s3: Any) -> None:
    name = unique()
    s3.create_bucket(Bucket=name)
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=name)
    assert error_of(exc) == ("NoSuchTagSet", 404)


def test_configuration_read_on_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=unique("missing"))
    assert error_of(exc) == ("NoSuchBucket", 404)


def test_get_bucket_acl_owner_has_full_control(s3: Any, bucket: str) -> None:
    response = s3.get_bucket_acl(Bucket=bucket)
    owner_id = response["Owner"]["ID"]
    assert owner_id == s3.list_buckets()["Owner"]["ID"]
    assert response["Grants"] == [
        {
            "Grantee": {
                "ID": owner_id,
                "DisplayName": response["Owner"]["DisplayName"],
                "Type": "CanonicalUser",
            },
            "Permission": "FULL_CONTROL",
        }
    ]


def test_unimplemented_operation_answers_not_implemented(s3: Any, bucket: str) -> None:
    website = {"IndexDocument": {"Suffix": "index.html"}}
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=website)
    assert error_of(exc) == ("NotImplemented", 501)
    # Nothing changed.
    with pytest.raises(ClientError) as missing:
        s3.get_bucket_website(Bucket=bucket)
    assert error_of(missing) == ("NoSuchWebsiteConfiguration", 404)
