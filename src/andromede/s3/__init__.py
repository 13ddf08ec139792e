"""The S3 face: protocol translation only (routing, SigV4, XML, headers)."""
