"""Checksum algorithms S3 clients send (``x-amz-checksum-*``) and how they combine."""

from __future__ import annotations

import enum


class ChecksumAlgorithm(enum.Enum):
    """The algorithms of ``x-amz-checksum-algorithm``; values are the AWS spellings."""

    CRC32 = "CRC32"
    CRC32C = "CRC32C"
    CRC64NVME = "CRC64NVME"
    SHA1 = "SHA1"
    SHA256 = "SHA256"

    @property
    def header(self) -> str:
        """The request/response header carrying this checksum."""
        return "x-amz-checksum-" + self.value.lower()


class ChecksumType(enum.Enum):
    """``x-amz-checksum-type``: a checksum of the whole object, or of the parts' checksums."""

    FULL_OBJECT = "FULL_OBJECT"
    COMPOSITE = "COMPOSITE"
