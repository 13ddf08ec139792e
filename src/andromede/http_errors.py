"""Domain errors → (S3 error code, HTTP status), looked up along the class's MRO."""

from __future__ import annotations

from andromede.core import errors as e

ERROR_TABLE: dict[type[e.AndromedeError], tuple[str, int]] = {
    e.AndromedeError: ("InternalError", 500),
    e.AuthError: ("AccessDenied", 403),
    e.InvalidAccessKeyId: ("InvalidAccessKeyId", 403),
    e.SignatureDoesNotMatch: ("SignatureDoesNotMatch", 403),
    e.RequestTimeTooSkewed: ("RequestTimeTooSkewed", 403),
    e.RequestExpired: ("AccessDenied", 403),
    e.AuthorizationHeaderMalformed: ("AuthorizationHeaderMalformed", 400),
    e.AuthorizationQueryParametersError: ("AuthorizationQueryParametersError", 400),
    e.MissingSecurityHeader: ("MissingSecurityHeader", 400),
    e.AnonymousAccessDenied: ("AccessDenied", 403),
    e.ContentSHA256Mismatch: ("XAmzContentSHA256Mismatch", 400),
    e.InvalidContentSHA256: ("InvalidArgument", 400),
    e.AccessDenied: ("AccessDenied", 403),
    e.InvalidArgument: ("InvalidArgument", 400),
    e.InvalidRequest: ("InvalidRequest", 400),
    e.MalformedXML: ("MalformedXML", 400),
    e.MissingContentLength: ("MissingContentLength", 411),
    e.IncompleteBody: ("IncompleteBody", 400),
    e.EntityTooLarge: ("EntityTooLarge", 400),
    e.EntityTooSmall: ("EntityTooSmall", 400),
    e.KeyTooLong: ("KeyTooLongError", 400),
    e.MetadataTooLarge: ("MetadataTooLarge", 400),
    e.RequestHeaderSectionTooLarge: ("RequestHeaderSectionTooLarge", 400),
    e.InvalidTag: ("InvalidTag", 400),
    e.TooManyTags: ("BadRequest", 400),
    e.InvalidRange: ("InvalidRange", 416),
    # S3 documents 416 InvalidPartNumber but answers 400 InvalidPart (so do the SDKs' tests).
    e.InvalidPartNumber: ("InvalidPart", 400),
    e.MethodNotAllowed: ("MethodNotAllowed", 405),
    e.NotImplementedOperation: ("NotImplemented", 501),
    e.InvalidLocationConstraint: ("InvalidLocationConstraint", 400),
    e.IllegalLocationConstraint: ("IllegalLocationConstraintException", 400),
    e.InvalidEncryptionAlgorithm: ("InvalidEncryptionAlgorithmError", 400),
    e.InvalidStorageClass: ("InvalidStorageClass", 400),
    e.BadDigest: ("BadDigest", 400),
    e.InvalidDigest: ("InvalidDigest", 400),
    # A value that is no digest at all cannot match the body: S3 answers BadDigest.
    e.InvalidChecksum: ("BadDigest", 400),
    e.DataCorrupted: ("InternalError", 500),
    e.BlobNotFound: ("InternalError", 500),
    e.ChecksumMismatch: ("BadDigest", 400),
    e.InvalidTenantName: ("InvalidArgument", 400),
    e.InvalidBucketName: ("InvalidBucketName", 400),
    e.InvalidObjectName: ("InvalidArgument", 400),
    e.NoSuchBucket: ("NoSuchBucket", 404),
    e.NoSuchKey: ("NoSuchKey", 404),
    e.NoSuchUpload: ("NoSuchUpload", 404),
    e.NoSuchTagSet: ("NoSuchTagSet", 404),
    e.NoSuchTenant: ("NoSuchTenant", 404),
    e.NoSuchAccessKey: ("NoSuchAccessKey", 404),
    e.TenantAlreadyExists: ("TenantAlreadyExists", 409),
    e.BucketAlreadyExists: ("BucketAlreadyExists", 409),
    e.BucketAlreadyOwnedByYou: ("BucketAlreadyOwnedByYou", 409),
    e.BucketNotEmpty: ("BucketNotEmpty", 409),
    e.PreconditionFailed: ("PreconditionFailed", 412),
    e.NotModified: ("NotModified", 304),
    e.ConditionalRequestConflict: ("ConditionalRequestConflict", 409),
    e.InvalidPart: ("InvalidPart", 400),
    e.InvalidPartOrder: ("InvalidPartOrder", 400),
    e.InvalidObjectState: ("InvalidObjectState", 403),
    e.ServiceUnavailable: ("SlowDown", 503),
    e.StorageFull: ("ServiceUnavailable", 503),
    e.AuditUnavailable: ("ServiceUnavailable", 503),
    e.KmsError: ("KMS.KMSInvalidStateException", 400),
    e.KmsNotFound: ("KMS.NotFoundException", 400),
    e.KmsDisabled: ("KMS.DisabledException", 400),
    e.KmsInvalidState: ("KMS.KMSInvalidStateException", 400),
    e.KeyManagerUnavailable: ("ServiceUnavailable", 503),
    e.DecryptionFailed: ("InternalError", 500),
    e.SseCustomerKeyMissing: ("InvalidRequest", 400),
    e.SseCustomerKeyMismatch: ("AccessDenied", 403),
    e.SseCustomerKeyNotTheUploads: ("InvalidArgument", 400),
    e.SseCustomerKeyMd5Mismatch: ("InvalidArgument", 400),
    e.KmsAliasExists: ("OperationAborted", 409),
    e.NoSuchEncryptionConfiguration: ("ServerSideEncryptionConfigurationNotFoundError", 404),
    e.PlacementImpossible: ("ServiceUnavailable", 503),
    e.ShardsUnavailable: ("ServiceUnavailable", 503),
    e.NoSuchSite: ("NoSuchSite", 404),
    e.SiteAlreadyExists: ("SiteAlreadyExists", 409),
    e.SiteNotDrained: ("SiteNotDrained", 409),
    e.NoSuchRegion: ("NoSuchRegion", 404),
    e.RegionAlreadyExists: ("RegionAlreadyExists", 409),
}


def lookup(exc: e.AndromedeError) -> tuple[str, int]:
    """The (code, status) for an error: the nearest class in its MRO that has an entry."""
    for cls in type(exc).__mro__:
        found = ERROR_TABLE.get(cls)
        if found is not None:
            return found
    return ("InternalError", 500)
