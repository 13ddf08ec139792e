"""RFC 5424 messages and RFC 6587 octet-counting frames for trail entries (no I/O)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import format as fmt
from andromede.audit import rfc5424
from andromede.core.audit import AuditRecord

WHEN = dt.datetime(2026, 11, 23, 6, 0, 0, 123000, tzinfo=dt.UTC)
PREV = "ab" * 32
ORIGIN = rfc5424.Origin.of("gw1.example.fr", "andromede", "4242")


def record_line(seq: int = 7, **fields: Any) -> bytes:
    values: dict[str, Any] = {"request_id": "req-1", "bucket": "b", "key": "k", "status": 200}
    values.update(fields)
    record = AuditRecord("request", WHEN, "s3", values.pop("operation", "PutObject"), **values)
    return fmt.entry_line(seq, PREV, fmt.dumps(record.as_dict()))


def message(line: bytes) -> bytes:
    return rfc5424.syslog_message(ORIGIN, line, fmt.parse_line(line))


def test_a_request_becomes_one_exact_message() -> None:
    line = record_line()
    expected = (
        b"<110>1 2026-11-23T06:00:00.123Z gw1.example.fr andromede 4242 PutObject "
        b'[andromede@32473 seq="7" type="request" request_id="req-1"] ' + line[:-1]
    )
    assert message(line) == expected


def test_msg_is_the_hashed_line_so_a_collector_can_rechain() -> None:
    line = record_line()
    msg = message(line).split(b"] ", 1)[1]
    assert fmt.line_hash(msg) == fmt.line_hash(line)
    assert b"\n" not in msg
    assert not msg.startswith(b"\xef\xbb\xbf")  # no BOM: the bytes are the hashed ones


def test_frame_is_octet_counted() -> None:
    assert rfc5424.frame(b"<110>1 - - - - - - x") == b"20 <110>1 - - - - - - x"
    data = "é".encode()
    assert rfc5424.frame(data) == b"2 " + data  # counts octets, not characters


@pytest.mark.parametrize(
    ("fields", "pri"),
    [
        ({"status": 200}, 110),
        ({"status": 204}, 110),
        ({"status": 304}, 110),
        ({"status": 403, "error": "AccessDenied"}, 109),
        ({"status": 404, "error": "NoSuchKey"}, 109),
        ({"status": 503, "error": "ServiceUnavailable"}, 109),
    ],
)
def test_pri_is_facility_13_info_or_notice(fields: dict[str, Any], pri: int) -> None:
    assert message(record_line(**fields)).startswith(b"<%d>1 " % pri)


def test_an_event_with_an_error_is_a_notice() -> None:
    ok = AuditRecord("event", WHEN, "kms", "CreateKey")
    failed = AuditRecord("event", WHEN, "kms", "UnwrapKey", error="KeyDisabled")
    for record, pri in ((ok, b"<110>"), (failed, b"<109>")):
        line = fmt.entry_line(3, PREV, fmt.dumps(record.as_dict()))
        assert message(line).startswith(pri + b"1 2026-11-23T06:00:00.123Z ")


def test_segment_and_checkpoint_entries_are_informational_named_by_type() -> None:
    segment = fmt.segment_line(1, fmt.GENESIS, 1, "2026-11-23T06:00:00.000Z")
    assert message(segment) == (
        b"<110>1 2026-11-23T06:00:00.000Z gw1.example.fr andromede 4242 segment "
        b'[andromede@32473 seq="1" type="segment"] ' + segment[:-1]
    )
    key = Ed25519PrivateKey.generate()
    checkpoint = fmt.checkpoint_line(
        key,
        seq=9,
        prev=PREV,
        time="2026-11-23T06:00:01.500Z",
        reason="interval",
        segment=1,
        prev_checkpoint=fmt.GENESIS,
        origin=fmt.Origin(1, fmt.GENESIS),
    )
    sent = message(checkpoint)
    assert sent.startswith(
        b"<110>1 2026-11-23T06:00:01.500Z gw1.example.fr andromede 4242 checkpoint "
        b'[andromede@32473 seq="9" type="checkpoint"] {'
    )
    shipped = json.loads(sent.split(b"] ", 1)[1])
    assert fmt.checkpoint_signature_ok(shipped, key.public_key())  # still verifiable
    assert base64.b64decode(shipped["sig"])


def test_an_unreadable_line_is_shipped_as_is_with_nil_fields() -> None:
    raw = b'{"seq":12,"prev":"short"}\n'
    assert rfc5424.syslog_message(ORIGIN, raw, None) == (
        b"<109>1 - gw1.example.fr andromede 4242 - - " + raw[:-1]
    )


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("GetObject", "GetObject"),
        ("A" * 32, "A" * 32),
        ("A" * 33, "-"),  # PutBucketIntelligentTieringConfiguration is 40 characters
        ("Get Object", "-"),
        ("Opération", "-"),
        ("", "-"),
    ],
)
def test_msgid_is_the_operation_when_rfc_5424_allows_it(operation: str, expected: str) -> None:
    fields = message(record_line(operation=operation)).split(b" ")
    assert fields[5].decode() == expected


@pytest.mark.parametrize(
    ("hostname", "app", "procid", "expected"),
    [
        ("h" * 300, "a" * 60, "9" * 200, ("h" * 255, "a" * 48, "9" * 128)),
        ("gw 1\tfr", "andro mède", "1\n2", ("gw1fr", "andromde", "12")),
        ("", "   ", "é", ("-", "-", "-")),
    ],
)
def test_header_fields_obey_rfc_5424_limits(
    hostname: str, app: str, procid: str, expected: tuple[str, str, str]
) -> None:
    origin = rfc5424.Origin.of(hostname, app, procid)
    assert (origin.hostname, origin.app_name, origin.procid) == expected
    sent = rfc5424.syslog_message(origin, record_line(), fmt.parse_line(record_line()))
    assert sent.split(b" ")[2:5] == [field.encode() for field in expected]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-11-23T06:00:00.123Z", "2026-11-23T06:00:00.123Z"),
        ("2026-11-23T08:00:00.123+02:00", "2026-11-23T06:00:00.123Z"),
        ("yesterday", "-"),
        (None, "-"),
        (12, "-"),
    ],
)
def test_timestamp_is_the_entrys_time_in_utc(given: object, expected: str) -> None:
    assert rfc5424.timestamp(given) == expected


def test_sd_param_values_are_escaped_and_bounded() -> None:
    assert rfc5424.sd_value('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert rfc5424.sd_value("x\ny\x00z") == "x?y?z"
    assert rfc5424.sd_value("r" * 500) == "r" * rfc5424.MAX_SD_VALUE
    line = record_line(request_id='id"with]odd\\chars')
    assert b' request_id="id\\"with\\]odd\\\\chars"] {' in message(line)


def test_a_request_id_outside_ascii_stays_utf8_and_the_frame_counts_octets() -> None:
    line = record_line(request_id="réq")
    sent = message(line)
    assert 'request_id="réq"'.encode() in sent
    framed = rfc5424.frame(sent)
    length, rest = framed.split(b" ", 1)
    assert int(length) == len(rest) == len(sent)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:514", ("127.0.0.1", 514)),
        ("logs.example.fr:6514", ("logs.example.fr", 6514)),
        ("[::1]:601", ("::1", 601)),
    ],
)
def test_address_parses(address: str, expected: tuple[str, int]) -> None:
    assert rfc5424.parse_address(address) == expected


@pytest.mark.parametrize("address", ["logs", ":514", "logs:", "logs:0", "logs:65536", "logs:x"])
def test_bad_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        rfc5424.parse_address(address)
