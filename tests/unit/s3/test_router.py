"""Routing: method + bucket/key presence + subresources + headers → the AWS operation."""

from __future__ import annotations

import pytest

from andromede.s3.router import Endpoint as E
from andromede.s3.router import resolve

CASES = [
    ("GET", None, None, {}, {}, E.ListBuckets),
    ("PUT", "b", None, {}, {}, E.CreateBucket),
    ("HEAD", "b", None, {}, {}, E.HeadBucket),
    ("DELETE", "b", None, {}, {}, E.DeleteBucket),
    ("GET", "b", None, {}, {}, E.ListObjects),
    ("GET", "b", None, {"list-type": "2"}, {}, E.ListObjectsV2),
    ("GET", "b", None, {"location": ""}, {}, E.GetBucketLocation),
    ("GET", "b", None, {"uploads": ""}, {}, E.ListMultipartUploads),
    ("GET", "b", None, {"versions": ""}, {}, E.ListObjectVersions),
    ("GET", "b", None, {"versioning": ""}, {}, E.GetBucketVersioning),
    ("PUT", "b", None, {"versioning": ""}, {}, E.PutBucketVersioning),
    ("DELETE", "b", None, {"cors": ""}, {}, E.DeleteBucketCors),
    ("POST", "b", None, {"delete": ""}, {}, E.DeleteObjects),
    ("POST", "b", None, {}, {}, E.PostObject),
    ("GET", "b", "k", {}, {}, E.GetObject),
    ("HEAD", "b", "k", {}, {}, E.HeadObject),
    ("PUT", "b", "k", {}, {}, E.PutObject),
    ("PUT", "b", "k", {}, {"x-amz-copy-source": "/a/b"}, E.CopyObject),
    ("DELETE", "b", "k", {}, {}, E.DeleteObject),
    ("GET", "b", "k", {"tagging": ""}, {}, E.GetObjectTagging),
    ("PUT", "b", "k", {"tagging": ""}, {}, E.PutObjectTagging),
    ("DELETE", "b", "k", {"tagging": ""}, {}, E.DeleteObjectTagging),
    ("GET", "b", "k", {"attributes": ""}, {}, E.GetObjectAttributes),
    ("POST", "b", "k", {"uploads": ""}, {}, E.CreateMultipartUpload),
    ("PUT", "b", "k", {"uploadId": "u", "partNumber": "1"}, {}, E.UploadPart),
    (
        "PUT",
        "b",
        "k",
        {"uploadId": "u", "partNumber": "1"},
        {"x-amz-copy-source": "a/b"},
        E.UploadPartCopy,
    ),
    ("POST", "b", "k", {"uploadId": "u"}, {}, E.CompleteMultipartUpload),
    ("DELETE", "b", "k", {"uploadId": "u"}, {}, E.AbortMultipartUpload),
    ("GET", "b", "k", {"uploadId": "u"}, {}, E.ListParts),
    ("POST", "b", "k", {"restore": ""}, {}, E.RestoreObject),
]


@pytest.mark.parametrize(("method", "bucket", "key", "query", "headers", "expected"), CASES)
def test_resolve(
    method: str,
    bucket: str | None,
    key: str | None,
    query: dict[str, str],
    headers: dict[str, str],
    expected: E,
) -> None:
    assert resolve(method, bucket, key, query, headers) is expected


@pytest.mark.parametrize(
    ("method", "bucket", "key"),
    [("PATCH", "b", "k"), ("POST", None, None), ("OPTIONS", "b", None), ("POST", "b", "k")],
)
def test_methods_not_allowed(method: str, bucket: str | None, key: str | None) -> None:
    assert resolve(method, bucket, key, {}, {}) is None


def test_every_implemented_handler_is_a_routable_endpoint() -> None:
    from andromede.s3.handlers import HANDLERS

    assert set(HANDLERS) <= set(E)
