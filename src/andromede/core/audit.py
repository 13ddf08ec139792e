"""Audit records and the per-request trace that services annotate.

A face (S3, admin) opens a :class:`RequestTrace` for each request and makes it current; the
services and the authorisation rules add what only they know (whose data was touched, which
version, which sites). The face then turns the trace into one :class:`AuditRecord`, which the
audit sink makes durable before the response leaves.

No I/O here: the context variable only carries a mutable object through the call stack.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

# Every field a client chooses is cut, so that a record line stays far below the 64 KiB that
# readers of the trail accept: JSON may escape a character into 6 bytes.
MAX_USER_AGENT: Final = 512
MAX_FIELD: Final = 2048  # object keys, event details
MAX_NAME: Final = 255  # bucket names (valid ones have at most 63), version ids, sources


class PrincipalKind(StrEnum):
    """Who a request acted as."""

    KEY = "key"  # a tenant's access key
    OPERATOR = "operator"  # an operator key
    ANONYMOUS = "anonymous"  # no credentials at all
    UNAUTHENTICATED = "unauthenticated"  # credentials that did not verify
    SYSTEM = "system"  # the server itself (background jobs)


@dataclass
class RequestTrace:
    """What is learnt about one request while it runs (mutable, request-scoped)."""

    face: str
    request_id: str
    source: str
    user_agent: str
    started: dt.datetime
    operation: str = ""
    principal_kind: PrincipalKind = PrincipalKind.ANONYMOUS
    access_key_id: str | None = None
    principal_tenant: str | None = None
    owner: str | None = None
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = None
    bytes_in: int = 0
    sites: set[str] = field(default_factory=set)


# An access key id as a client claims it (before its signature is checked): bounded and plain,
# so that a hostile header cannot put anything else in the trail.
_CREDENTIAL: Final = re.compile(r"Credential=([A-Za-z0-9]{1,128})/")


def arriving(
    face: str,
    request_id: str,
    headers: Iterable[tuple[bytes, bytes]],
    query_string: bytes,
    client: tuple[str, int] | None,
    now: dt.datetime,
) -> RequestTrace:
    """A trace for a request that just arrived (nothing of it is trusted yet).

    The access key id the request claims (Authorization header or presigned
    ``X-Amz-Credential``) is kept as an unauthenticated principal until the signature checks
    out; nothing else of those fields (never a signature) is kept.
    """
    user_agent = ""
    claimed: str | None = None
    for name, value in headers:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")[:MAX_USER_AGENT]
        elif name == b"authorization":
            claimed = _claimed(value.decode("latin-1"))
    if claimed is None and b"X-Amz-Credential=" in query_string:
        # Only the credential's value is decoded, not the whole query.
        value = query_string.split(b"X-Amz-Credential=", 1)[1].split(b"&", 1)[0]
        claimed = _claimed("Credential=" + urllib.parse.unquote(value.decode("latin-1")))
    trace = RequestTrace(
        face=face,
        request_id=request_id,
        source=str(client[0]) if client else "",
        user_agent=user_agent,
        started=now,
    )
    if claimed is not None:
        trace.principal_kind = PrincipalKind.UNAUTHENTICATED
        trace.access_key_id = claimed
    return trace


def _claimed(text: str) -> str | None:
    match = _CREDENTIAL.search(text)
    return match.group(1) if match else None


_current: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar(
    "andromede_request_trace", default=None
)


# Requests between begin() and end() in this process: a hint for the audit sink (a request
# alone in its process may sync its record itself, see audit/inline.py), never a rule.
_open = 0


def begin(trace: RequestTrace) -> contextvars.Token[RequestTrace | None]:
    """Make ``trace`` the current request's trace (every :func:`begin` needs its :func:`end`)."""
    global _open  # noqa: PLW0603 - one counter per process, by design
    _open += 1
    return _current.set(trace)


def end(token: contextvars.Token[RequestTrace | None]) -> None:
    """Forget the trace made current by :func:`begin`."""
    global _open  # noqa: PLW0603
    _open -= 1
    _current.reset(token)


def open_traces() -> int:
    """How many requests of this process are between :func:`begin` and :func:`end`."""
    return _open


def current() -> RequestTrace | None:
    """The current request's trace, if a face opened one."""
    return _current.get()


def note_owner(tenant: str) -> None:
    """The request touched (or tried to touch) data or settings of ``tenant``."""
    trace = _current.get()
    if trace is not None:
        trace.owner = tenant


def note_version(version_id: str | None) -> None:
    """The object version the request read or wrote."""
    trace = _current.get()
    if trace is not None and version_id:
        trace.version_id = version_id


def note_site(site: str) -> None:
    """The request read or wrote bytes on ``site``."""
    trace = _current.get()
    if trace is not None:
        trace.sites.add(site)


@dataclass(frozen=True)
class AuditRecord:
    """One line of the trail: a request (S3 or admin) or a key-manager event.

    Never holds a secret, a signature or object content.
    """

    kind: str  # "request" or "event"
    time: dt.datetime
    face: str
    operation: str
    request_id: str = ""
    tenant: str | None = None  # whose data or settings were touched
    principal_kind: PrincipalKind = PrincipalKind.SYSTEM
    access_key_id: str | None = None
    principal_tenant: str | None = None
    source: str = ""
    user_agent: str = ""
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = None
    status: int = 0
    error: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    sites: tuple[str, ...] = ()
    details: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The record's fields as the trail stores them (JSON-ready, bounded)."""
        body: dict[str, object] = {
            "type": self.kind,
            "time": format_time(self.time),
            "face": self.face,
            "operation": self.operation,
            "request_id": self.request_id,
            "tenant": self.tenant,
            "principal": {
                "kind": self.principal_kind.value,
                "access_key_id": _bounded(self.access_key_id, MAX_NAME),
                "tenant": self.principal_tenant,
            },
            "source": _bounded(self.source, MAX_NAME),
            "user_agent": self.user_agent[:MAX_USER_AGENT],
            "bucket": _bounded(self.bucket, MAX_NAME),
            "key": _bounded(self.key),
            "version_id": _bounded(self.version_id, MAX_NAME),
            "status": self.status,
            "error": self.error,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "sites": sorted(self.sites),
        }
        if self.details:
            body["details"] = {k: _bounded(v) for k, v in self.details}
        return body


def record_of(trace: RequestTrace, status: int, error: str | None, bytes_out: int) -> AuditRecord:
    """The record for a finished request."""
    return AuditRecord(
        kind="request",
        time=trace.started,
        face=trace.face,
        operation=trace.operation or "Unknown",
        request_id=trace.request_id,
        tenant=trace.owner if trace.owner is not None else trace.principal_tenant,
        principal_kind=trace.principal_kind,
        access_key_id=trace.access_key_id,
        principal_tenant=trace.principal_tenant,
        source=trace.source,
        user_agent=trace.user_agent,
        bucket=trace.bucket,
        key=trace.key,
        version_id=trace.version_id,
        status=status,
        error=error,
        bytes_in=trace.bytes_in,
        bytes_out=bytes_out,
        sites=tuple(sorted(trace.sites)),
    )


def format_time(moment: dt.datetime) -> str:
    """UTC with milliseconds: ``2026-11-23T06:00:00.123Z``."""
    utc = moment.astimezone(dt.UTC)
    # isoformat(): a quarter of strftime's cost; the year is 4 digits in both (1000 to 9999).
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_time(text: str) -> dt.datetime:
    """Inverse of :func:`format_time` (also accepts any ISO 8601 time with a zone)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def _bounded(value: str | None, limit: int = MAX_FIELD) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "…"


@dataclass(frozen=True)
class AuditQuery:
    """A filter over the trail; every field that is set must match."""

    tenant: str | None = None  # matches the record's tenant or its principal's tenant
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    bucket: str | None = None
    principal: str | None = None  # an access key id, or a principal kind ("operator", ...)
    operation: str | None = None
    outcome: str | None = None  # "success" (status < 400), "failure", or an exact status/code
    after_seq: int = 0
    limit: int = 1000
    # Several chains (a cluster's mirror): the last seq read of each, by chain id.
    after_chains: tuple[tuple[str, int], ...] = ()


_CHAIN_ID: Final = re.compile(r"^[0-9a-f]{32}$")
MAX_CHAINS: Final = 1024


def parse_after(text: str) -> tuple[tuple[str, int], ...]:
    """A cursor over several chains, ``CHAIN:SEQ,CHAIN:SEQ`` (ValueError when malformed)."""
    if not text:
        return ()
    pairs = []
    for part in text.split(",", MAX_CHAINS):
        chain, sep, seq = part.partition(":")
        if not sep or not _CHAIN_ID.match(chain) or not seq.isdigit() or len(seq) > 19:
            raise ValueError("a cursor is CHAIN:SEQ pairs, comma-separated")
        pairs.append((chain, int(seq)))
    if len(pairs) > MAX_CHAINS or len({c for c, _ in pairs}) != len(pairs):
        raise ValueError("a cursor names each chain once")
    return tuple(sorted(pairs))


def format_after(pairs: Iterable[tuple[str, int]]) -> str:
    """The text of a cursor (:func:`parse_after` reads it)."""
    return ",".join(f"{chain}:{seq}" for chain, seq in sorted(pairs))


def advance_after(
    pairs: tuple[tuple[str, int], ...], records: Iterable[dict[str, object]]
) -> tuple[tuple[str, int], ...]:
    """The cursor after ``records`` (each with its ``chain`` and ``seq``) were read."""
    cursor = dict(pairs)
    for record in records:
        chain, seq = record.get("chain"), record.get("seq")
        if isinstance(chain, str) and isinstance(seq, int):
            cursor[chain] = seq
    return tuple(sorted(cursor.items()))
