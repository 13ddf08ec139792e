"""Every S3 operation by its AWS name, and how a request maps to one.

S3 routes on method + whether a bucket/key is present + query subresources + a few headers.
Unimplemented operations are listed too: they answer NotImplemented, never a wrong default.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Mapping


class Endpoint(enum.Enum):
    """S3 operations (AWS names)."""

    # service
    ListBuckets = "ListBuckets"
    # bucket
    CreateBucket = "CreateBucket"
    HeadBucket = "HeadBucket"
    DeleteBucket = "DeleteBucket"
    ListObjects = "ListObjects"
    ListObjectsV2 = "ListObjectsV2"
    ListObjectVersions = "ListObjectVersions"
    ListMultipartUploads = "ListMultipartUploads"
    GetBucketLocation = "GetBucketLocation"
    DeleteObjects = "DeleteObjects"
    GetBucketVersioning = "GetBucketVersioning"
    PutBucketVersioning = "PutBucketVersioning"
    GetBucketLifecycleConfiguration = "GetBucketLifecycleConfiguration"
    PutBucketLifecycleConfiguration = "PutBucketLifecycleConfiguration"
    DeleteBucketLifecycle = "DeleteBucketLifecycle"
    GetBucketEncryption = "GetBucketEncryption"
    PutBucketEncryption = "PutBucketEncryption"
    DeleteBucketEncryption = "DeleteBucketEncryption"
    GetBucketTagging = "GetBucketTagging"
    PutBucketTagging = "PutBucketTagging"
    DeleteBucketTagging = "DeleteBucketTagging"
    GetBucketPolicy = "GetBucketPolicy"
    PutBucketPolicy = "PutBucketPolicy"
    DeleteBucketPolicy = "DeleteBucketPolicy"
    GetBucketPolicyStatus = "GetBucketPolicyStatus"
    GetBucketCors = "GetBucketCors"
    PutBucketCors = "PutBucketCors"
    DeleteBucketCors = "DeleteBucketCors"
    GetObjectLockConfiguration = "GetObjectLockConfiguration"
    PutObjectLockConfiguration = "PutObjectLockConfiguration"
    GetBucketAcl = "GetBucketAcl"
    PutBucketAcl = "PutBucketAcl"
    GetBucketWebsite = "GetBucketWebsite"
    PutBucketWebsite = "PutBucketWebsite"
    DeleteBucketWebsite = "DeleteBucketWebsite"
    GetBucketLogging = "GetBucketLogging"
    PutBucketLogging = "PutBucketLogging"
    GetBucketNotificationConfiguration = "GetBucketNotificationConfiguration"
    PutBucketNotificationConfiguration = "PutBucketNotificationConfiguration"
    GetBucketReplication = "GetBucketReplication"
    PutBucketReplication = "PutBucketReplication"
    DeleteBucketReplication = "DeleteBucketReplication"
    GetBucketOwnershipControls = "GetBucketOwnershipControls"
    PutBucketOwnershipControls = "PutBucketOwnershipControls"
    DeleteBucketOwnershipControls = "DeleteBucketOwnershipControls"
    GetPublicAccessBlock = "GetPublicAccessBlock"
    PutPublicAccessBlock = "PutPublicAccessBlock"
    DeletePublicAccessBlock = "DeletePublicAccessBlock"
    GetBucketAccelerateConfiguration = "GetBucketAccelerateConfiguration"
    PutBucketAccelerateConfiguration = "PutBucketAccelerateConfiguration"
    GetBucketRequestPayment = "GetBucketRequestPayment"
    PutBucketRequestPayment = "PutBucketRequestPayment"
    PostObject = "PostObject"
    # object
    GetObject = "GetObject"
    HeadObject = "HeadObject"
    PutObject = "PutObject"
    CopyObject = "CopyObject"
    DeleteObject = "DeleteObject"
    GetObjectTagging = "GetObjectTagging"
    PutObjectTagging = "PutObjectTagging"
    DeleteObjectTagging = "DeleteObjectTagging"
    GetObjectAttributes = "GetObjectAttributes"
    GetObjectAcl = "GetObjectAcl"
    PutObjectAcl = "PutObjectAcl"
    GetObjectRetention = "GetObjectRetention"
    PutObjectRetention = "PutObjectRetention"
    GetObjectLegalHold = "GetObjectLegalHold"
    PutObjectLegalHold = "PutObjectLegalHold"
    GetObjectTorrent = "GetObjectTorrent"
    RestoreObject = "RestoreObject"
    SelectObjectContent = "SelectObjectContent"
    CreateMultipartUpload = "CreateMultipartUpload"
    UploadPart = "UploadPart"
    UploadPartCopy = "UploadPartCopy"
    CompleteMultipartUpload = "CompleteMultipartUpload"
    AbortMultipartUpload = "AbortMultipartUpload"
    ListParts = "ListParts"


E = Endpoint

# Bucket subresources: query key → endpoint, per method.
_BUCKET_GET: dict[str, Endpoint] = {
    "location": E.GetBucketLocation,
    "versioning": E.GetBucketVersioning,
    "lifecycle": E.GetBucketLifecycleConfiguration,
    "encryption": E.GetBucketEncryption,
    "tagging": E.GetBucketTagging,
    "policy": E.GetBucketPolicy,
    "policyStatus": E.GetBucketPolicyStatus,
    "cors": E.GetBucketCors,
    "object-lock": E.GetObjectLockConfiguration,
    "acl": E.GetBucketAcl,
    "website": E.GetBucketWebsite,
    "logging": E.GetBucketLogging,
    "notification": E.GetBucketNotificationConfiguration,
    "replication": E.GetBucketReplication,
    "ownershipControls": E.GetBucketOwnershipControls,
    "publicAccessBlock": E.GetPublicAccessBlock,
    "accelerate": E.GetBucketAccelerateConfiguration,
    "requestPayment": E.GetBucketRequestPayment,
    "uploads": E.ListMultipartUploads,
    "versions": E.ListObjectVersions,
}
_BUCKET_PUT: dict[str, Endpoint] = {
    "versioning": E.PutBucketVersioning,
    "lifecycle": E.PutBucketLifecycleConfiguration,
    "encryption": E.PutBucketEncryption,
    "tagging": E.PutBucketTagging,
    "policy": E.PutBucketPolicy,
    "cors": E.PutBucketCors,
    "object-lock": E.PutObjectLockConfiguration,
    "acl": E.PutBucketAcl,
    "website": E.PutBucketWebsite,
    "logging": E.PutBucketLogging,
    "notification": E.PutBucketNotificationConfiguration,
    "replication": E.PutBucketReplication,
    "ownershipControls": E.PutBucketOwnershipControls,
    "publicAccessBlock": E.PutPublicAccessBlock,
    "accelerate": E.PutBucketAccelerateConfiguration,
    "requestPayment": E.PutBucketRequestPayment,
}
_BUCKET_DELETE: dict[str, Endpoint] = {
    "lifecycle": E.DeleteBucketLifecycle,
    "encryption": E.DeleteBucketEncryption,
    "tagging": E.DeleteBucketTagging,
    "policy": E.DeleteBucketPolicy,
    "cors": E.DeleteBucketCors,
    "website": E.DeleteBucketWebsite,
    "replication": E.DeleteBucketReplication,
    "ownershipControls": E.DeleteBucketOwnershipControls,
    "publicAccessBlock": E.DeletePublicAccessBlock,
}
_OBJECT_GET: dict[str, Endpoint] = {
    "tagging": E.GetObjectTagging,
    "attributes": E.GetObjectAttributes,
    "uploadId": E.ListParts,
    "acl": E.GetObjectAcl,
    "retention": E.GetObjectRetention,
    "legal-hold": E.GetObjectLegalHold,
    "torrent": E.GetObjectTorrent,
}
_OBJECT_PUT: dict[str, Endpoint] = {
    "tagging": E.PutObjectTagging,
    "acl": E.PutObjectAcl,
    "retention": E.PutObjectRetention,
    "legal-hold": E.PutObjectLegalHold,
}
_OBJECT_DELETE: dict[str, Endpoint] = {
    "tagging": E.DeleteObjectTagging,
    "uploadId": E.AbortMultipartUpload,
}
_OBJECT_POST: dict[str, Endpoint] = {
    "uploads": E.CreateMultipartUpload,
    "uploadId": E.CompleteMultipartUpload,
    "restore": E.RestoreObject,
    "select": E.SelectObjectContent,
}


def _first(table: Mapping[str, Endpoint], query: Container[str]) -> Endpoint | None:
    for name, endpoint in table.items():
        if name in query:
            return endpoint
    return None


def resolve(
    method: str,
    bucket: str | None,
    key: str | None,
    query: Container[str],
    headers: Mapping[str, str],
) -> Endpoint | None:
    """The operation a request names, or None when the method is not allowed there."""
    if bucket is None:
        return E.ListBuckets if method in ("GET", "HEAD") else None
    if key is None:
        return _resolve_bucket(method, query)
    return _resolve_object(method, query, headers)


# A dispatch table: one return per HTTP method.
def _resolve_bucket(method: str, query: Container[str]) -> Endpoint | None:  # noqa: PLR0911
    if method == "GET":
        found = _first(_BUCKET_GET, query)
        if found is not None:
            return found
        list_type = "list-type" in query
        return E.ListObjectsV2 if list_type else E.ListObjects
    if method == "HEAD":
        return E.HeadBucket
    if method == "PUT":
        return _first(_BUCKET_PUT, query) or E.CreateBucket
    if method == "DELETE":
        return _first(_BUCKET_DELETE, query) or E.DeleteBucket
    if method == "POST":
        return E.DeleteObjects if "delete" in query else E.PostObject
    return None


# A dispatch table: one return per HTTP method.
def _resolve_object(  # noqa: PLR0911
    method: str, query: Container[str], headers: Mapping[str, str]
) -> Endpoint | None:
    if method == "GET":
        return _first(_OBJECT_GET, query) or E.GetObject
    if method == "HEAD":
        return E.HeadObject
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return E.UploadPartCopy if "x-amz-copy-source" in headers else E.UploadPart
        found = _first(_OBJECT_PUT, query)
        if found is not None:
            return found
        return E.CopyObject if "x-amz-copy-source" in headers else E.PutObject
    if method == "DELETE":
        return _first(_OBJECT_DELETE, query) or E.DeleteObject
    if method == "POST":
        return _first(_OBJECT_POST, query)
    return None
