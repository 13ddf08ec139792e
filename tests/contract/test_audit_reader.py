"""The AuditReader contract on trails written by the real trail writer, and the AuditLog
service's rules on top of it (who may read what)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.audit.keys import public_pem
from andromede.audit.reader import SegmentReader
from andromede.audit.trail import HashChainTrail, TrailConfig
from andromede.core import errors
from andromede.core.audit import AuditQuery, AuditRecord, PrincipalKind, format_time
from andromede.core.models import Principal
from andromede.services.audit import AuditLog

T0 = dt.datetime(2026, 11, 23, 6, 0, 0, 123000, tzinfo=dt.UTC)
KEY_A = "AKACME0000000001"
KEY_B = "AKGLOBEX00000001"
OPERATOR = "AKOPERATOR000001"


def record(i: int, **fields: Any) -> AuditRecord:
    """A varied record: two tenants, their keys, the operator, anonymous and failed
    authentications, successes and failures."""
    tenant = "acme" if i % 2 == 0 else "globex"
    defaults: dict[str, Any] = {
        "kind": "request",
        "time": T0 + dt.timedelta(seconds=i),
        "face": "s3",
        "operation": ["PutObject", "GetObject", "ListObjectsV2", "DeleteObject"][i % 4],
        "request_id": f"req-{i:05d}",
        "tenant": tenant,
        "principal_kind": PrincipalKind.KEY,
        "access_key_id": KEY_A if tenant == "acme" else KEY_B,
        "principal_tenant": tenant,
        "source": "127.0.0.1",
        "user_agent": "pytest",
        "bucket": f"{tenant}-{'photos' if i % 3 else 'logs'}",
        "key": f"k/{i}",
        "status": 200,
        "bytes_in": i,
    }
    if i % 7 == 0:
        defaults.update(status=404, error="NoSuchKey")
    if i % 11 == 0:
        defaults.update(principal_kind=PrincipalKind.OPERATOR, access_key_id=OPERATOR)
        defaults.update(principal_tenant="default")
    if i % 13 == 0:
        defaults.update(principal_kind=PrincipalKind.ANONYMOUS, access_key_id=None)
        defaults.update(principal_tenant=None, status=403, error="AccessDenied")
    defaults.update(fields)
    return AuditRecord(**defaults)


async def write(directory: Path, key: Ed25519PrivateKey, records: Sequence[AuditRecord]) -> None:
    """Append ``records`` in order through the real writer, then close it (clean shutdown)."""
    trail = HashChainTrail(
        TrailConfig(directory, segment_bytes=65536, checkpoint_interval=0.2), key
    )
    trail.open()
    try:
        for start in range(0, len(records), 50):
            await asyncio.gather(*(trail.record(r) for r in records[start : start + 50]))
    finally:
        await trail.close()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "audit"


RECORDS = [record(i) for i in range(600)]


@pytest.fixture
async def trail(directory: Path, key: Ed25519PrivateKey) -> Path:
    """600 records over several segments, with checkpoints between them."""
    await write(directory, key, RECORDS)
    assert len(seg.list_segments(directory)) >= 4
    return directory


def ids(found: list[dict[str, object]]) -> list[object]:
    return [r["request_id"] for r in found]


def expected(keep: Callable[[dict[str, Any]], bool]) -> list[object]:
    return [r.as_dict()["request_id"] for r in RECORDS if keep(r.as_dict())]


def principal_of(r: dict[str, Any]) -> dict[str, Any]:
    principal: dict[str, Any] = r["principal"]
    return principal


FILTERS: list[tuple[str, AuditQuery, Callable[[dict[str, Any]], bool]]] = [
    ("everything", AuditQuery(), lambda r: True),
    (
        "tenant: record's or principal's",
        AuditQuery(tenant="acme"),
        lambda r: "acme" in (r["tenant"], principal_of(r)["tenant"]),
    ),
    (
        "principal tenant only",
        AuditQuery(tenant="default"),
        lambda r: principal_of(r)["tenant"] == "default",
    ),
    ("bucket", AuditQuery(bucket="globex-logs"), lambda r: r["bucket"] == "globex-logs"),
    (
        "principal by key",
        AuditQuery(principal=KEY_B),
        lambda r: principal_of(r)["access_key_id"] == KEY_B,
    ),
    (
        "principal by kind",
        AuditQuery(principal="anonymous"),
        lambda r: principal_of(r)["kind"] == "anonymous",
    ),
    ("operation", AuditQuery(operation="GetObject"), lambda r: r["operation"] == "GetObject"),
    ("success", AuditQuery(outcome="success"), lambda r: r["status"] < 400),
    ("failure", AuditQuery(outcome="failure"), lambda r: r["status"] >= 400),
    ("status", AuditQuery(outcome="404"), lambda r: r["status"] == 404),
    ("error code", AuditQuery(outcome="AccessDenied"), lambda r: r["error"] == "AccessDenied"),
    (
        "since/until",
        AuditQuery(since=T0 + dt.timedelta(seconds=100), until=T0 + dt.timedelta(seconds=250)),
        lambda r: (
            format_time(T0 + dt.timedelta(seconds=100))
            <= r["time"]
            < format_time(T0 + dt.timedelta(seconds=250))
        ),
    ),
    (
        "combined",
        AuditQuery(tenant="globex", operation="GetObject", outcome="failure"),
        lambda r: (
            "globex" in (r["tenant"], principal_of(r)["tenant"])
            and r["operation"] == "GetObject"
            and r["status"] >= 400
        ),
    ),
    ("no match", AuditQuery(bucket="nobody"), lambda r: False),
]


@pytest.mark.parametrize(("name", "query", "keep"), FILTERS, ids=[f[0] for f in FILTERS])
async def test_each_filter_selects_exactly_the_matching_records(
    trail: Path, name: str, query: AuditQuery, keep: Callable[[dict[str, Any]], bool]
) -> None:
    want = expected(keep)
    assert name == "no match" or want, "the sample should exercise the filter"
    found = await SegmentReader(trail).query(query)
    assert ids(found) == want


async def test_records_come_back_as_stored_with_their_seq(trail: Path) -> None:
    found = await SegmentReader(trail).query(AuditQuery())
    seqs = [r["seq"] for r in found]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert seqs[0] == 2  # seq 1 is the first segment's own entry
    for got, sent in zip(found, RECORDS, strict=True):
        assert "prev" not in got
        assert {k: v for k, v in got.items() if k != "seq"} == sent.as_dict()


async def test_seq_matches_the_line_in_the_trail(trail: Path) -> None:
    by_seq: dict[int, dict[str, Any]] = {}
    for _, path in seg.list_segments(trail):
        for line in seg.iter_lines(path):
            entry = fmt.parse_line(line.raw)
            by_seq[entry["seq"]] = entry
    for got in await SegmentReader(trail).query(AuditQuery(bucket="acme-logs")):
        stored = by_seq[int(str(got["seq"]))]
        assert stored["request_id"] == got["request_id"]
        assert stored["type"] == "request"


async def test_limit_and_paging_by_after_seq(trail: Path) -> None:
    whole = await SegmentReader(trail).query(AuditQuery(tenant="acme"))
    for reader in (SegmentReader(trail), None):  # one reader remembers where pages end
        pages: list[dict[str, object]] = []
        after = 0
        while True:
            page = await (reader or SegmentReader(trail)).query(
                AuditQuery(tenant="acme", after_seq=after, limit=37)
            )
            assert len(page) <= 37
            pages += page
            if len(page) < 37:
                break
            after = int(str(page[-1]["seq"]))
        assert pages == whole


async def test_after_seq_is_exclusive(trail: Path) -> None:
    first = await SegmentReader(trail).query(AuditQuery(limit=3))
    seq = int(str(first[1]["seq"]))
    after = await SegmentReader(trail).query(AuditQuery(after_seq=seq, limit=1))
    assert after == [first[2]]


async def test_since_is_inclusive_and_until_exclusive_to_the_millisecond(
    directory: Path, key: Ed25519PrivateKey
) -> None:
    await write(directory, key, [record(1, time=T0, request_id="at-t0")])
    reader = SegmentReader(directory)
    micro = dt.timedelta(microseconds=1)
    assert ids(await reader.query(AuditQuery(since=T0))) == ["at-t0"]
    assert ids(await reader.query(AuditQuery(since=T0 + micro))) == []
    assert ids(await reader.query(AuditQuery(until=T0))) == []
    assert ids(await reader.query(AuditQuery(until=T0 + micro))) == ["at-t0"]
    paris = dt.timezone(dt.timedelta(hours=1))
    assert ids(await reader.query(AuditQuery(since=T0.astimezone(paris)))) == ["at-t0"]


async def test_events_are_records_checkpoints_are_not(
    directory: Path, key: Ed25519PrivateKey
) -> None:
    event = AuditRecord("event", T0, "kms", "kms:RotateKey", tenant="acme")
    await write(directory, key, [record(2), event])
    found = await SegmentReader(directory).query(AuditQuery(tenant="acme"))
    assert [r["type"] for r in found] == ["request", "event"]
    assert found[1]["operation"] == "kms:RotateKey"


async def test_an_empty_or_missing_trail_has_no_records(directory: Path) -> None:
    assert await SegmentReader(directory).query(AuditQuery()) == []
    await write(directory, Ed25519PrivateKey.generate(), [])
    assert await SegmentReader(directory).query(AuditQuery()) == []


def forged_line(request_id: str, moment: dt.datetime) -> bytes:
    body = fmt.dumps(record(2, time=moment, request_id=request_id).as_dict())
    return fmt.entry_line(10**9, fmt.GENESIS, body)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


async def test_since_skips_segments_that_ended_before_it(
    directory: Path, key: Ed25519PrivateKey
) -> None:
    early = [record(2 * i, time=dt.datetime.now(dt.UTC)) for i in range(300)]
    await write(directory, key, early)
    await asyncio.sleep(0.05)  # the clock must move past the early records' millisecond
    now = dt.datetime.now(dt.UTC)
    middle = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as records store it
    late = [record(2 * i, request_id=f"late-{i}", time=middle) for i in range(300)]
    await write(directory, key, late)
    # A line that only a reader opening the first segment could see, dated inside the window.
    first = seg.list_segments(directory)[0][1]
    append(first, forged_line("inside-a-skipped-segment", middle))

    reader = SegmentReader(directory, clock_slack=0)
    found = ids(await reader.query(AuditQuery(since=middle, tenant="acme")))
    assert found == [f"late-{i}" for i in range(300)]
    everything = ids(await reader.query(AuditQuery(tenant="acme")))
    assert "inside-a-skipped-segment" in everything
    # With the default slack, the segment is too close to the bound to be skipped.
    assert "inside-a-skipped-segment" in ids(
        await SegmentReader(directory).query(AuditQuery(since=middle, tenant="acme"))
    )


async def test_until_skips_sealed_segments_once_measured(
    directory: Path, key: Ed25519PrivateKey
) -> None:
    late_time = T0 + dt.timedelta(days=1)
    records = [record(i) for i in range(200)] + [
        record(i, request_id=f"late-{i}", time=late_time) for i in range(400)
    ]
    await write(directory, key, records)
    segments = seg.list_segments(directory)
    assert len(segments) >= 4
    reader = SegmentReader(directory)
    until = T0 + dt.timedelta(hours=1)
    want = [r.request_id for r in records[:200]]
    assert ids(await reader.query(AuditQuery(until=until))) == want
    # Sealed segments holding only late records were measured by that scan: a line slipped
    # into one of them afterwards is not read by the same reader, but is by a new one.
    append(segments[-2][1], forged_line("slipped-in", T0))
    assert ids(await reader.query(AuditQuery(until=until))) == want
    assert ids(await SegmentReader(directory).query(AuditQuery(until=until)))[-1] == "slipped-in"


async def test_entries_past_the_published_head_are_not_read(
    directory: Path, key: Ed25519PrivateKey
) -> None:
    await write(directory, key, [record(2, request_id="acknowledged")])
    head = seg.SharedHead(directory / "head")
    published = head.load()
    head.close()
    assert published is not None
    # A group written but not synced (its requests not acknowledged) sits after the head.
    unsynced = fmt.entry_line(
        published.next_seq,
        published.head,
        fmt.dumps(record(2, request_id="unsynced").as_dict()),
    )
    path = directory / seg.segment_name(published.segment)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, unsynced, published.offset)
    finally:
        os.close(fd)
    assert ids(await SegmentReader(directory).query(AuditQuery())) == ["acknowledged"]
    # An offline copy (segments without the head) is read to the end of its whole lines.
    copy = directory.parent / "copy"
    copy.mkdir()
    for _, segment in seg.list_segments(directory):
        (copy / segment.name).write_bytes(segment.read_bytes())
    assert ids(await SegmentReader(copy).query(AuditQuery())) == ["acknowledged", "unsynced"]


async def test_torn_and_malformed_lines_are_skipped(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    good = fmt.entry_line(2, fmt.GENESIS, fmt.dumps(record(2, request_id="good").as_dict()))
    start = fmt.segment_line(1, fmt.GENESIS, 1, format_time(T0))
    (copy / seg.segment_name(1)).write_bytes(
        start + b"not json\n" + b'{"seq":3}\n' + good + good[:40]
    )
    assert ids(await SegmentReader(copy).query(AuditQuery())) == ["good"]


async def test_segments_removed_by_retention_are_skipped(trail: Path) -> None:
    reader = SegmentReader(trail)
    before = await reader.query(AuditQuery())
    oldest = seg.list_segments(trail)[0][1]
    removed = {r["request_id"] for r in before if int(str(r["seq"])) < _first_seq(trail, 1)}
    oldest.unlink()
    after = await reader.query(AuditQuery())
    assert removed
    assert ids(after) == [r["request_id"] for r in before if r["request_id"] not in removed]


def _first_seq(directory: Path, index: int) -> int:
    entry = seg.first_entry(seg.list_segments(directory)[index][1])
    assert entry is not None
    seq: int = entry["seq"]
    return seq


async def test_queries_run_concurrently_while_the_trail_grows(
    directory: Path, key: Ed25519PrivateKey
) -> None:
    trail = HashChainTrail(
        TrailConfig(directory, segment_bytes=65536, checkpoint_interval=0.05), key
    )
    trail.open()
    reader = SegmentReader(directory)
    seen: list[list[list[object]]] = [[], []]

    async def keep_reading(into: list[list[object]]) -> None:
        for _ in range(20):
            into.append(ids(await reader.query(AuditQuery(tenant="acme"))))
            await asyncio.sleep(0.005)  # readers interleave with the writes: the point

    try:
        now = dt.datetime.now(dt.UTC)
        writing = [trail.record(record(2 * i, time=now)) for i in range(400)]
        await asyncio.gather(keep_reading(seen[0]), keep_reading(seen[1]), *writing)
    finally:
        await trail.close()
    final = ids(await reader.query(AuditQuery(tenant="acme")))
    assert final == [f"req-{2 * i:05d}" for i in range(400)]
    for results in seen:  # each answer is what was acknowledged by then: a growing prefix
        assert [len(r) for r in results] == sorted(len(r) for r in results)
        for result in results:
            assert result == final[: len(result)]


# --- the service: who reads what ------------------------------------------------------------
@pytest.fixture
def audit_log(trail: Path, key: Ed25519PrivateKey) -> AuditLog:
    return AuditLog(SegmentReader(trail), public_pem(key))


ACME = Principal(KEY_A, "acme", is_operator=False)
ROOT = Principal(OPERATOR, "default", is_operator=True)


async def test_a_tenant_reads_only_its_own_records(audit_log: AuditLog) -> None:
    mine = await audit_log.query(ACME, AuditQuery())
    assert ids(mine) == expected(lambda r: "acme" in (r["tenant"], principal_of(r)["tenant"]))
    assert ids(await audit_log.query(ACME, AuditQuery(tenant="acme"))) == ids(mine)
    with pytest.raises(errors.AccessDenied):
        await audit_log.query(ACME, AuditQuery(tenant="globex"))
    # Filters narrow within the tenant, never widen beyond it.
    assert await audit_log.query(ACME, AuditQuery(principal=KEY_B)) == []


async def test_an_operator_reads_everything(audit_log: AuditLog) -> None:
    assert len(await audit_log.query(ROOT, AuditQuery())) == len(RECORDS)
    globex = await audit_log.query(ROOT, AuditQuery(tenant="globex"))
    assert ids(globex) == expected(lambda r: "globex" in (r["tenant"], principal_of(r)["tenant"]))


@pytest.mark.parametrize(
    "query",
    [
        AuditQuery(limit=0),
        AuditQuery(limit=1001),
        AuditQuery(after_seq=-1),
        AuditQuery(outcome="not a code"),
        AuditQuery(since=dt.datetime(2026, 1, 1)),  # naive: refused
    ],
)
async def test_invalid_queries_are_refused(audit_log: AuditLog, query: AuditQuery) -> None:
    with pytest.raises(errors.InvalidArgument):
        await audit_log.query(ROOT, query)


def test_the_public_key_is_the_signing_key_public_half(
    audit_log: AuditLog, key: Ed25519PrivateKey
) -> None:
    assert audit_log.public_key() == public_pem(key)
    assert audit_log.public_key().startswith(b"-----BEGIN PUBLIC KEY-----")


async def test_bounds_at_the_ends_of_the_calendar(trail: Path) -> None:
    reader = SegmentReader(trail)
    low, high = dt.datetime.min.replace(tzinfo=dt.UTC), dt.datetime.max.replace(tzinfo=dt.UTC)
    assert len(await reader.query(AuditQuery(since=low, until=high))) == len(RECORDS)
    assert await reader.query(AuditQuery(since=high)) == []
    assert await reader.query(AuditQuery(until=low)) == []
