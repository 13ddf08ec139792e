"""Identifier rules."""

from __future__ import annotations

import pytest

from andromede.core import errors
from andromede.core.ids import (
    BucketName,
    ObjectKey,
    TenantName,
    is_valid_bucket_name,
    new_access_key_id,
    new_secret_key,
    new_version_id,
    successor_prefix,
)


@pytest.mark.parametrize("name", ["abc", "my-bucket", "a.b.c", "0-9", "a" * 63])
def test_valid_bucket_names(name: str) -> None:
    assert BucketName(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 64,
        "ABC",
        "-abc",
        "abc-",
        "a..b",
        "a.-b",
        "192.168.1.1",
        "xn--abc",
        "a_b",
        "abc-s3alias",
        "sthree-x",
        "",
    ],
)
def test_invalid_bucket_names(name: str) -> None:
    assert not is_valid_bucket_name(name)
    with pytest.raises(errors.InvalidBucketName):
        BucketName(name)


def test_object_keys() -> None:
    assert ObjectKey("../../etc/passwd") == "../../etc/passwd"
    assert ObjectKey("é" * 512)  # 1024 bytes
    with pytest.raises(errors.KeyTooLong):
        ObjectKey("é" * 512 + "x")
    with pytest.raises(errors.InvalidArgument):
        ObjectKey("")
    with pytest.raises(errors.InvalidArgument):
        ObjectKey("a\x00b")


def test_tenant_names() -> None:
    assert TenantName("acme-fr") == "acme-fr"
    for bad in ("", "Acme", "-x", "a" * 64, "a_b"):
        with pytest.raises(errors.InvalidTenantName):
            TenantName(bad)


def test_generated_credentials() -> None:
    ak, sk = new_access_key_id(), new_secret_key()
    assert len(ak) == 20
    assert ak.isalnum()
    assert ak.isupper()
    assert len(sk) == 40
    assert new_access_key_id() != ak


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("a/", "a0"),
        ("abc", "abd"),
        ("", None),
        ("\U0010ffff", None),
        ("a\U0010ffff", "b"),
        ("\ud7ff", "\ue000"),
    ],
)
def test_successor_prefix(prefix: str, expected: str | None) -> None:
    assert successor_prefix(prefix) == expected


def test_version_ids_are_unique_and_sort_in_creation_order() -> None:
    made = [new_version_id() for _ in range(20_000)]  # many within one millisecond
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in made[:10])
