"""Domain errors: one class per condition, no HTTP in them.

The S3 face maps each class (along its MRO) to an S3 error code and status; a unit test checks
that every class here has a mapping.
"""

from __future__ import annotations

import datetime as dt


class AndromedeError(Exception):
    """Base of every domain error. ``message`` is safe to show to the client."""

    default_message = "An error occurred."

    def __init__(self, message: str | None = None, **details: str) -> None:
        self.message = message or self.default_message
        self.details = details
        # Response headers the error carries (e.g. ``x-amz-delete-marker`` on a 404).
        self.headers: list[tuple[str, str]] = []
        super().__init__(self.message)

    def with_headers(self, *headers: tuple[str, str]) -> AndromedeError:
        """This error, answered with ``headers`` too."""
        self.headers.extend(headers)
        return self


# --- authentication -------------------------------------------------------------------------
class AuthError(AndromedeError):
    """A request could not be authenticated."""


class InvalidAccessKeyId(AuthError):
    default_message = "The AWS Access Key Id you provided does not exist in our records."


class SignatureDoesNotMatch(AuthError):
    default_message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


class RequestTimeTooSkewed(AuthError):
    default_message = "The difference between the request time and the current time is too large."


class RequestExpired(AuthError):
    default_message = "Request has expired"


class AuthorizationHeaderMalformed(AuthError):
    default_message = "The authorization header is malformed."


class AuthorizationQueryParametersError(AuthError):
    default_message = "Query-string authentication parameters are malformed."


class MissingSecurityHeader(AuthError):
    default_message = "Your request is missing a required header."


class AnonymousAccessDenied(AuthError):
    default_message = "Access Denied"


class ContentSHA256Mismatch(AuthError):
    default_message = "The provided 'x-amz-content-sha256' header does not match what was computed."


class InvalidContentSHA256(AuthError):
    default_message = (
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a streaming mode or a hex SHA-256."
    )


# --- authorisation --------------------------------------------------------------------------
class AccessDenied(AndromedeError):
    default_message = "Access Denied"


# --- request shape --------------------------------------------------------------------------
class InvalidArgument(AndromedeError):
    default_message = "Invalid Argument"


class InvalidRequest(AndromedeError):
    default_message = "Invalid Request"


class MalformedXML(AndromedeError):
    default_message = (
        "The XML you provided was not well-formed or did not validate against our published schema."
    )


class MissingContentLength(AndromedeError):
    default_message = "You must provide the Content-Length HTTP header."


class RequestTimeout(AndromedeError):
    default_message = (
        "Your socket connection to the server was not read from or written to within the "
        "timeout period. Idle connections will be closed."
    )


class IncompleteBody(AndromedeError):
    default_message = (
        "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )


class EntityTooLarge(AndromedeError):
    default_message = "Your proposed upload exceeds the maximum allowed size."


class EntityTooSmall(AndromedeError):
    default_message = "Your proposed upload is smaller than the minimum allowed object size."


class KeyTooLong(AndromedeError):
    default_message = "Your key is too long."


class MetadataTooLarge(AndromedeError):
    default_message = "Your metadata headers exceed the maximum allowed metadata size."


class RequestHeaderSectionTooLarge(AndromedeError):
    default_message = "Your request header section exceeds the maximum allowed size."


class InvalidTag(AndromedeError):
    default_message = "The tag provided was not a valid tag."


class TooManyTags(AndromedeError):
    # AWS answers this limit with the generic BadRequest code, not InvalidTag.
    default_message = "Object tags cannot be greater than 10"


class InvalidRange(AndromedeError):
    default_message = "The requested range is not satisfiable"


class InvalidPartNumber(AndromedeError):
    default_message = "The requested partnumber is not satisfiable"


class MethodNotAllowed(AndromedeError):
    default_message = "The specified method is not allowed against this resource."


class NotImplementedOperation(AndromedeError):
    default_message = (
        "A header or operation you provided implies functionality that is not implemented."
    )


class InvalidLocationConstraint(AndromedeError):
    default_message = "The specified location-constraint is not valid"


class IllegalLocationConstraint(AndromedeError):
    default_message = (
        "The location constraint is incompatible with the region this request was sent to."
    )


class InvalidEncryptionAlgorithm(AndromedeError):
    default_message = "The encryption request you specified is not valid."


class InvalidStorageClass(AndromedeError):
    default_message = "The storage class you specified is not valid."


# --- integrity ------------------------------------------------------------------------------
class BadDigest(AndromedeError):
    default_message = "The Content-MD5 you specified did not match what we received."


class InvalidDigest(AndromedeError):
    default_message = "The Content-MD5 you specified is not valid."


class ChecksumMismatch(BadDigest):
    default_message = "The checksum you specified did not match what we received."


class InvalidChecksum(InvalidRequest):
    default_message = "Value for the checksum header is invalid."


class DataCorrupted(AndromedeError):
    """Stored data failed its checksum: never served."""

    default_message = "Stored data failed its integrity check."


# --- names ----------------------------------------------------------------------------------
class InvalidBucketName(AndromedeError):
    default_message = "The specified bucket is not valid."


class InvalidObjectName(AndromedeError):
    default_message = "The specified key is not valid."


class InvalidTenantName(InvalidArgument):
    default_message = "Tenant names are 1-63 characters: lowercase letters, digits and '-'."


# --- state ----------------------------------------------------------------------------------
class NoSuchBucket(AndromedeError):
    default_message = "The specified bucket does not exist"


class NoSuchKey(AndromedeError):
    default_message = "The specified key does not exist."


class NoSuchVersion(AndromedeError):
    default_message = "The specified version does not exist."


class NoSuchLifecycleConfiguration(AndromedeError):
    default_message = "The lifecycle configuration does not exist"


class InvalidRetentionPeriod(AndromedeError):
    default_message = "The retention period is not valid."


class InvalidBucketState(AndromedeError):
    default_message = "The request is not valid with the current state of the bucket."


class ObjectLockConfigurationNotFound(AndromedeError):
    default_message = "Object Lock configuration does not exist for this bucket"


class NoSuchObjectLockConfiguration(AndromedeError):
    default_message = "The specified object does not have a ObjectLock configuration"


class NoSuchUpload(AndromedeError):
    default_message = (
        "The specified multipart upload does not exist. The upload ID may be invalid, "
        "or the upload may have been aborted or completed."
    )


class NoSuchTagSet(AndromedeError):
    default_message = "The TagSet does not exist"


class NoSuchTenant(AndromedeError):
    default_message = "The specified tenant does not exist."


class NoSuchAccessKey(AndromedeError):
    default_message = "The specified access key does not exist."


class TenantAlreadyExists(AndromedeError):
    default_message = "A tenant with this name already exists."


class BucketAlreadyExists(AndromedeError):
    default_message = (
        "The requested bucket name is not available. The bucket namespace is shared by all users "
        "of the system. Please select a different name and try again."
    )


class BucketAlreadyOwnedByYou(AndromedeError):
    default_message = (
        "Your previous request to create the named bucket succeeded and you already own it."
    )


class BucketNotEmpty(AndromedeError):
    default_message = "The bucket you tried to delete is not empty"


class PreconditionFailed(AndromedeError):
    default_message = "At least one of the pre-conditions you specified did not hold"


class NotModified(AndromedeError):
    """Not an error to the client (304), but it ends the request the same way.

    It carries the object's validators: a 304 repeats the ETag and Last-Modified.
    """

    default_message = "Not Modified"

    def __init__(self, etag: str | None = None, last_modified: dt.datetime | None = None) -> None:
        super().__init__()
        self.etag = etag
        self.last_modified = last_modified


class ConditionalRequestConflict(AndromedeError):
    default_message = (
        "A conflicting operation occurred. If using PutObject you can retry the request."
    )


class InvalidPart(AndromedeError):
    default_message = (
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag."
    )


class InvalidPartOrder(AndromedeError):
    default_message = (
        "The list of parts was not in ascending order. Parts must be ordered by part number."
    )


class InvalidObjectState(AndromedeError):
    default_message = "The operation is not valid for the current state of the object."


# --- service --------------------------------------------------------------------------------
class ServiceUnavailable(AndromedeError):
    default_message = "Please reduce your request rate."


class MetadataUnavailable(ServiceUnavailable):
    default_message = "The metadata database cannot be reached; please retry."


class StorageFull(ServiceUnavailable):
    default_message = "The storage site has no space left; the write was not stored."


class AuditUnavailable(ServiceUnavailable):
    default_message = (
        "The audit trail cannot be written; the request was refused rather than left unrecorded."
    )


class BlobNotFound(DataCorrupted):
    default_message = "Stored data for this object is missing."


# --- keys and encryption --------------------------------------------------------------------
class KmsError(AndromedeError):
    """A key-encryption key cannot be used for this request."""


class KmsNotFound(KmsError):
    default_message = "The key does not exist."


class KmsDisabled(KmsError):
    default_message = "The key is disabled."


class KmsInvalidState(KmsError):
    default_message = "The key is not in a state that allows this operation."


class KeyManagerUnavailable(ServiceUnavailable):
    default_message = "The key manager is unavailable. Please retry."


class DecryptionFailed(DataCorrupted):
    """Stored data failed its authentication tag: it was altered, moved or truncated."""

    default_message = "Stored data failed authentication and was not returned."


class SseCustomerKeyMissing(InvalidRequest):
    default_message = (
        "The object was stored using a form of Server Side Encryption. "
        "The correct parameters must be provided to retrieve the object."
    )


class SseCustomerKeyMismatch(AccessDenied):
    default_message = "The provided customer encryption key does not match the object's key."


class SseCustomerKeyNotTheUploads(InvalidArgument):
    """A part sent with another SSE-C key than its upload's: a request error, not a denial."""

    default_message = "The provided encryption parameters did not match the ones used originally."


class SseCustomerKeyMd5Mismatch(InvalidArgument):
    default_message = "The calculated MD5 hash of the key did not match the hash that was provided."


class NoSuchEncryptionConfiguration(AndromedeError):
    default_message = "The server side encryption configuration was not found"


class KmsAliasExists(KmsError):
    default_message = "The tenant already has a key with this alias."


# --- placement ------------------------------------------------------------------------------
class PlacementImpossible(ServiceUnavailable):
    default_message = "Not enough sites allowed by the bucket's residency policy are available."


class ShardsUnavailable(ServiceUnavailable):
    default_message = "Too few of the object's shards can be read right now; nothing was returned."


class NoSuchSite(AndromedeError):
    default_message = "The site does not exist."


class SiteAlreadyExists(AndromedeError):
    default_message = "A site with this name, or on this path, already exists."


class SiteNotDrained(AndromedeError):
    default_message = "The site still holds shards: drain it first."


class NoSuchRegion(AndromedeError):
    default_message = "The region does not exist."


class RegionAlreadyExists(AndromedeError):
    default_message = "A region with this name already exists."
