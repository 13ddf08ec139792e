"""Every domain error maps to a real S3 error code and status."""

from __future__ import annotations

import inspect

from andromede.core import errors
from andromede.http_errors import ERROR_TABLE, lookup

KNOWN_S3_CODES = {
    # What S3 answers when the KMS key of an SSE-KMS request cannot be used.
    "KMS.NotFoundException",
    "KMS.DisabledException",
    "KMS.KMSInvalidStateException",
    "OperationAborted",
    "ServerSideEncryptionConfigurationNotFoundError",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "RequestTimeTooSkewed",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "MissingSecurityHeader",
    "XAmzContentSHA256Mismatch",
    "InvalidArgument",
    "InvalidRequest",
    "MalformedXML",
    "MissingContentLength",
    "IncompleteBody",
    "RequestTimeout",
    "EntityTooLarge",
    "EntityTooSmall",
    "KeyTooLongError",
    "MetadataTooLarge",
    "RequestHeaderSectionTooLarge",
    "InvalidTag",
    "BadRequest",
    "InvalidRange",
    "InvalidPartNumber",
    "MethodNotAllowed",
    "NotImplemented",
    "InvalidLocationConstraint",
    "IllegalLocationConstraintException",
    "InvalidEncryptionAlgorithmError",
    "InvalidStorageClass",
    "BadDigest",
    "InvalidDigest",
    "InternalError",
    "InvalidBucketName",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchVersion",
    "InvalidBucketState",
    "InvalidRetentionPeriod",
    "NoSuchLifecycleConfiguration",
    "ObjectLockConfigurationNotFoundError",
    "NoSuchObjectLockConfiguration",
    "NoSuchUpload",
    "NoSuchTagSet",
    "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "BucketNotEmpty",
    "PreconditionFailed",
    "NotModified",
    "ConditionalRequestConflict",
    "InvalidPart",
    "InvalidPartOrder",
    "InvalidObjectState",
    "SlowDown",
    "ServiceUnavailable",
    # Admin API only (not S3 operations):
    "NoSuchTenant",
    "NoSuchAccessKey",
    "TenantAlreadyExists",
    "NoSuchSite",
    "SiteAlreadyExists",
    "SiteNotDrained",
    "NoSuchRegion",
    "RegionAlreadyExists",
}


def _domain_errors() -> list[type[errors.AndromedeError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.AndromedeError)
    ]


def test_every_domain_error_has_an_explicit_mapping() -> None:
    missing = [cls.__name__ for cls in _domain_errors() if cls not in ERROR_TABLE]
    assert missing == []


def test_codes_are_real_s3_codes_with_plausible_statuses() -> None:
    for cls in _domain_errors():
        code, status = lookup(cls())
        assert code in KNOWN_S3_CODES, cls
        assert 300 <= status < 600


def test_lookup_follows_the_mro() -> None:
    class Custom(errors.NoSuchKey):
        pass

    assert lookup(Custom()) == ("NoSuchKey", 404)
    assert lookup(errors.ChecksumMismatch()) == ("BadDigest", 400)
