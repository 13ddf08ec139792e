"""What a request's trace keeps of the outside world, and the record made from it."""

from __future__ import annotations

import datetime as dt

from andromede.core import audit
from andromede.core.audit import PrincipalKind, RequestTrace

NOW = dt.datetime(2026, 11, 23, 6, 0, 0, 123456, tzinfo=dt.UTC)
SIGV4 = (
    b"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE123/20261123/us-east-1/s3/aws4_request, "
    b"SignedHeaders=host;x-amz-date, Signature=" + b"f" * 64
)


def _arriving(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> RequestTrace:
    return audit.arriving("s3", "RID", headers, query, ("10.0.0.7", 5555), NOW)


def test_claimed_key_from_header_is_unauthenticated_until_verified() -> None:
    trace = _arriving([(b"authorization", SIGV4), (b"user-agent", b"aws-cli/2")])
    assert trace.principal_kind is PrincipalKind.UNAUTHENTICATED
    assert trace.access_key_id == "AKIAEXAMPLE123"
    assert (trace.source, trace.user_agent) == ("10.0.0.7", "aws-cli/2")


def test_claimed_key_from_presigned_query() -> None:
    query = b"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKPRESIGNED%2F20261123%2Fus"
    trace = _arriving([], query + b"&X-Amz-Signature=" + b"a" * 64)
    assert trace.access_key_id == "AKPRESIGNED"


def test_no_credentials_is_anonymous_and_hostile_key_ids_are_not_kept() -> None:
    assert _arriving([]).principal_kind is PrincipalKind.ANONYMOUS
    hostile = b'AWS4-HMAC-SHA256 Credential=AK"}\n{"evil/2026/x/s3/aws4_request'
    trace = _arriving([(b"authorization", hostile)])
    assert trace.access_key_id is None
    assert trace.principal_kind is PrincipalKind.ANONYMOUS


def test_record_holds_no_signature_and_bounds_long_fields() -> None:
    trace = _arriving([(b"authorization", SIGV4), (b"user-agent", b"u" * 5000)])
    trace.key = "k" * 10_000
    trace.operation = "GetObject"
    record = audit.record_of(trace, 403, "SignatureDoesNotMatch", 0).as_dict()
    text = repr(record)
    assert "Signature=" not in text
    assert "f" * 64 not in text
    assert len(record["user_agent"]) == audit.MAX_USER_AGENT  # type: ignore[arg-type]
    assert len(record["key"]) == audit.MAX_FIELD + 1  # type: ignore[arg-type]
    assert record["time"] == "2026-11-23T06:00:00.123Z"
    assert record["tenant"] is None


def test_owner_noted_during_the_request_is_the_record_tenant() -> None:
    trace = _arriving([])
    trace.principal_tenant = "acme"
    token = audit.begin(trace)
    try:
        audit.note_owner("globex")
        audit.note_site("paris-1")
        audit.note_version("v1")
    finally:
        audit.end(token)
    audit.note_owner("ignored-outside-a-request")
    record = audit.record_of(trace, 403, "AccessDenied", 0)
    assert (record.tenant, record.principal_tenant) == ("globex", "acme")
    assert (record.sites, record.version_id) == (("paris-1",), "v1")


def test_time_round_trip() -> None:
    text = audit.format_time(NOW)
    assert audit.parse_time(text) == NOW.replace(microsecond=123000)
