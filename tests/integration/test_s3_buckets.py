"""Bucket operations through boto3, asserted as AWS S3 answers them."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.s3errors import error_of
from support.server import Server


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


def test_create_bucket_twice_same_tenant(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=bucket)
    assert error_of(exc) == ("BucketAlreadyOwnedByYou", 409)


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
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert error_of(exc) == ("NotImplemented", 501)
    # Nothing changed.
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
