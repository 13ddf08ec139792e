"""What a failed boto3 call says: the S3 error code, and the HTTP status."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a failed call."""
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    """The S3 error code of a failed call."""
    return str(exc.value.response["Error"]["Code"])
