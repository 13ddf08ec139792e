"""RFC 5424 messages for the trail's entries, framed by octet counting (RFC 6587 §3.4.1).

Facility 13 (log audit); severity informational, or notice for failures and denials. MSGID is
the operation; MSG is the entry's exact line, so that a collector can re-verify the chain.
The structured-data ID uses enterprise number 32473, which RFC 5612 reserves for
documentation: there is no number of our own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from andromede.audit import format as fmt
from andromede.core.audit import format_time, parse_time

FACILITY_AUDIT: Final = 13
SEVERITY_NOTICE: Final = 5
SEVERITY_INFO: Final = 6
SD_ID: Final = "andromede@32473"
NIL: Final = "-"
MAX_HOSTNAME: Final = 255
MAX_APP_NAME: Final = 48
MAX_PROCID: Final = 128
MAX_MSGID: Final = 32
MAX_SD_VALUE: Final = 128
_TIMESTAMP_RE: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
)


# --- the message --------------------------------------------------------------------------
def header_field(value: str, limit: int) -> str:
    """A header field (HOSTNAME, APP-NAME, PROCID): printable US-ASCII only, at most ``limit``
    characters, NILVALUE when nothing is left."""
    kept = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return kept or NIL


def msgid(value: object) -> str:
    """A MSGID as given when it is 1 to 32 printable US-ASCII characters, else NILVALUE."""
    if (
        isinstance(value, str)
        and 0 < len(value) <= MAX_MSGID
        and all(33 <= ord(c) <= 126 for c in value)
    ):
        return value
    return NIL


def timestamp(value: object) -> str:
    """An RFC 5424 TIMESTAMP for an entry's ``time`` (NILVALUE when it has none usable)."""
    if not isinstance(value, str):
        return NIL
    try:
        text = format_time(parse_time(value))
    except (ValueError, OverflowError):
        return NIL
    return text if _TIMESTAMP_RE.match(text) else NIL


def sd_value(value: str) -> str:
    """A PARAM-VALUE: bounded, control characters replaced, ``"``, ``\\`` and ``]`` escaped."""
    clean = "".join(c if c.isprintable() else "?" for c in value[:MAX_SD_VALUE])
    return clean.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def severity(entry: Mapping[str, object] | None) -> int:
    """Notice for a failed or denied request (or an event reporting an error), else
    informational; an unreadable line is a notice too."""
    if entry is None:
        return SEVERITY_NOTICE
    if entry.get("type") not in fmt.RECORD_TYPES:
        return SEVERITY_INFO
    status = entry.get("status")
    failed = isinstance(status, int) and status >= 400
    return SEVERITY_NOTICE if failed or entry.get("error") else SEVERITY_INFO


def structured_data(entry: Mapping[str, Any] | None) -> str:
    """One SD element naming the entry (seq, type, request id), or NILVALUE."""
    if entry is None:
        return NIL
    params = [f'seq="{int(entry["seq"])}"', f'type="{sd_value(str(entry["type"]))}"']
    request_id = entry.get("request_id")
    if isinstance(request_id, str) and request_id:
        params.append(f'request_id="{sd_value(request_id)}"')
    return f"[{SD_ID} {' '.join(params)}]"


@dataclass(frozen=True)
class Origin:
    """Who sends: the header fields every message of one shipper shares (already bounded)."""

    hostname: str
    app_name: str = "andromede"
    procid: str = NIL

    @classmethod
    def of(cls, hostname: str, app_name: str, procid: str) -> Origin:
        """The fields cut to RFC 5424's limits and character set."""
        return cls(
            header_field(hostname, MAX_HOSTNAME),
            header_field(app_name, MAX_APP_NAME),
            header_field(procid, MAX_PROCID),
        )


def syslog_message(origin: Origin, raw: bytes, entry: Mapping[str, Any] | None) -> bytes:
    """The SYSLOG-MSG for one trail line (``entry`` is the parsed line, None if unreadable)."""
    if entry is None:
        name, when = NIL, NIL
    else:
        kind = entry.get("type")
        name = msgid(entry.get("operation") if kind in fmt.RECORD_TYPES else kind)
        when = timestamp(entry.get("time"))
    pri = FACILITY_AUDIT * 8 + severity(entry)
    header = (
        f"<{pri}>1 {when} {origin.hostname} {origin.app_name} {origin.procid} {name} "
        f"{structured_data(entry)} "
    )
    return header.encode("utf-8", errors="replace") + raw.rstrip(b"\n")


def frame(message: bytes) -> bytes:
    """Octet-counting framing (RFC 6587 §3.4.1): ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d " % len(message) + message


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for an IPv6 literal) as a (host, port) pair."""
    host, sep, port_text = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not (sep and host and re.fullmatch(r"[0-9]{1,5}", port_text)) or not (
        0 < int(port_text) < 65536
    ):
        raise ValueError(f"syslog address must be host:port, not {address!r}")
    return host, int(port_text)
