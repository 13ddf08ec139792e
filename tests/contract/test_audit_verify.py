"""The offline verifier on trails written by the real writer (in process), then tampered with:
every change is found, classified, and named by segment file, line and seq."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.audit import verify_report as vr
from andromede.audit.keys import public_pem
from andromede.audit.trail import HashChainTrail, TrailConfig
from andromede.audit.verify import Finding, Report, verify_trail
from andromede.cli.audit import audit_app
from andromede.core.audit import AuditRecord
from support.audit import wait_for_checkpoint

SEGMENT_BYTES = 64 * 1024


def _record(n: int) -> AuditRecord:
    return AuditRecord(
        "request",
        dt.datetime.now(dt.UTC),
        "s3",
        "PutObject",
        request_id=f"req-{n}",
        tenant="acme",
        bucket="ledger",
        key=f"invoices/{n:05d}-" + "x" * 80,
        status=200,
        bytes_in=n,
    )


def _write(trail: HashChainTrail, first: int, count: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: trail.record_blocking(_record(n)), range(first, first + count)))


@dataclass(frozen=True)
class Pristine:
    """A trail as the writer left it after a clean stop, and its key."""

    directory: Path
    key: Ed25519PrivateKey


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    key = Ed25519PrivateKey.generate()
    directory = tmp_path_factory.mktemp("pristine") / "audit"
    trail = HashChainTrail(
        TrailConfig(directory, segment_bytes=SEGMENT_BYTES, checkpoint_interval=0.2), key
    )
    trail.open()
    for batch in range(6):
        _write(trail, batch * 100, 100)
        wait_for_checkpoint(directory)  # an interval checkpoint between batches
    asyncio.run(trail.close())
    # Reopened with a long interval, the last records are signed by the shutdown checkpoint.
    trail = HashChainTrail(TrailConfig(directory, segment_bytes=SEGMENT_BYTES), key)
    trail.open()
    _write(trail, 600, 10)
    asyncio.run(trail.close())
    return Pristine(directory, key)


@pytest.fixture
def trail(pristine: Pristine, tmp_path: Path) -> Path:
    """A copy of the pristine trail, free to tamper with."""
    copy = tmp_path / "audit"
    shutil.copytree(pristine.directory, copy)
    return copy


# --- reading and rewriting segments (what a tamperer does) ----------------------------------
def lines_of(path: Path) -> list[bytes]:
    """The segment's lines, newline included, zero fill dropped."""
    return [line.raw for line in seg.iter_lines(path)]


def write_lines(path: Path, lines: list[bytes], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(lines) + tail)


def segment(directory: Path, index: int) -> Path:
    return seg.list_segments(directory)[index][1]


def entry(raw: bytes) -> dict[str, Any]:
    return fmt.parse_line(raw)


def record_line(path: Path, start: int = 5) -> int:
    """Index of the first record line at or after ``start``, followed by another record."""
    lines = lines_of(path)
    for index in range(start, len(lines) - 1):
        if (
            entry(lines[index])["type"] == "request"
            and entry(lines[index + 1])["type"] == "request"
        ):
            return index
    raise AssertionError(f"no two records in a row in {path.name}")


def rehash(
    directory: Path,
    signer: Ed25519PrivateKey,
    first_segment: int,
    edit: Callable[[int, dict[str, Any]], dict[str, Any]] = lambda _i, e: e,
    last_segment: int | None = None,
) -> None:
    """Rewrite segments ``first_segment..last_segment`` (indexes) with ``edit`` applied to each
    entry, every prev recomputed and every checkpoint re-signed by ``signer``: a forger's
    rebuild. ``edit`` gets the entry's index in its segment."""
    found = seg.list_segments(directory)
    last = len(found) - 1 if last_segment is None else last_segment
    head = entry(lines_of(found[first_segment][1])[0])["prev"]
    checkpoint: str | None = None
    for _number, path in found[first_segment : last + 1]:
        out = []
        for index, raw in enumerate(lines_of(path)):
            body = edit(index, entry(raw))
            body["prev"] = head
            if body["type"] == "checkpoint":
                if checkpoint is not None:
                    body["prev_checkpoint"] = checkpoint
                body["key_id"] = fmt.key_id(signer.public_key())
                body.pop("sig", None)
                sig = signer.sign(fmt.checkpoint_message(body))
                body["sig"] = base64.b64encode(sig).decode()
            line = (fmt.dumps(body) + "\n").encode()
            head = fmt.line_hash(line)
            if body["type"] == "checkpoint":
                checkpoint = head
            out.append(line)
        write_lines(path, out)


def verify(directory: Path, key: Ed25519PrivateKey) -> Report:
    return verify_trail(directory, key.public_key())


def only_problem(report: Report) -> Finding:
    assert len(report.problems) == 1, report.problems
    assert not report.facts.complete
    return report.problems[0]


def seq_at(path: Path, index: int) -> int:
    return int(entry(lines_of(path)[index])["seq"])


# --- an intact trail ------------------------------------------------------------------------
def test_pristine_trail_verifies_with_its_facts(pristine: Pristine) -> None:
    report = verify(pristine.directory, pristine.key)
    assert report.intact, report.problems
    assert report.warnings == []
    facts = report.facts
    assert facts.complete
    assert facts.records == 610
    assert facts.segments >= 4
    assert facts.first_seq == 1
    assert facts.last_seq == facts.entries
    assert facts.checkpoints >= facts.segments + 5  # segment ends, intervals, shutdown
    assert facts.last_checkpoint_reason == "shutdown"
    assert facts.last_checkpoint_seq == facts.last_seq
    assert facts.unsigned_tail == 0
    assert facts.key_id == fmt.key_id(pristine.key.public_key())


def test_live_trail_has_an_unsigned_tail_warning_not_a_problem(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    trail = HashChainTrail(TrailConfig(tmp_path, segment_bytes=SEGMENT_BYTES), key)
    trail.open()
    try:
        _write(trail, 0, 30)
        report = verify(tmp_path, key)
    finally:
        asyncio.run(trail.close())
    assert report.intact, report.problems
    [warning] = report.warnings
    assert warning.kind == vr.UNSIGNED_TAIL
    assert (warning.first_seq, warning.last_seq) == (1, 31)
    assert (warning.segment, warning.line) == ("0000000001.log", 1)
    assert report.facts.unsigned_tail == 31
    assert verify(tmp_path, key).intact  # and after the shutdown checkpoint
    assert verify(tmp_path, key).warnings == []


def test_retention_keeps_a_verifiable_trail(trail: Path, pristine: Pristine) -> None:
    before = len(seg.list_segments(trail))
    writer = HashChainTrail(TrailConfig(trail, segment_bytes=SEGMENT_BYTES), pristine.key)
    writer.open()
    try:
        removed = writer.apply_retention(time.time() + 60)
        _write(writer, 1000, 250)
    finally:
        asyncio.run(writer.close())
    assert removed == before - 1
    report = verify(trail, pristine.key)
    assert report.intact, report.problems
    origin = report.facts.first_seq
    assert origin == seq_at(segment(trail, 0), 0) > 1
    # removing the first kept segment by hand is not covered by any checkpoint
    path = segment(trail, 0)
    last = seq_at(path, len(lines_of(path)) - 1)
    path.unlink()
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.MISSING_START
    assert (problem.first_seq, problem.last_seq) == (origin, last)


def test_retention_keeps_what_the_collector_has_not_received(
    trail: Path, pristine: Pristine
) -> None:
    found = seg.list_segments(trail)
    second_last_seq = seq_at(found[1][1], len(lines_of(found[1][1])) - 1)
    writer = HashChainTrail(TrailConfig(trail, segment_bytes=SEGMENT_BYTES), pristine.key)
    writer.open()
    try:
        # Shipped up to the middle of the second segment: only the first may go.
        removed = writer.apply_retention(time.time() + 60, shipped_seq=second_last_seq - 1)
    finally:
        asyncio.run(writer.close())
    assert removed == 1
    assert next(n for n, _ in seg.list_segments(trail)) == found[1][0]
    assert verify(trail, pristine.key).intact


# --- tampering with records -----------------------------------------------------------------
def test_edited_field_is_named(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 2)
    lines = lines_of(path)
    index = record_line(path, 10)
    lines[index] = lines[index].replace(b'"status":200', b'"status":404')
    write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.MODIFIED
    assert (problem.segment, problem.line) == (path.name, index + 1)
    assert problem.seq == seq_at(path, index)


def test_edited_seq_is_a_modification_not_a_gap(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    index = record_line(path, 10)
    seq = seq_at(path, index)
    lines[index] = lines[index].replace(f'"seq":{seq},'.encode(), b'"seq":99999,')
    write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.MODIFIED
    assert (problem.segment, problem.line, problem.seq) == (path.name, index + 1, seq)


def test_deleted_record_is_named(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    index = record_line(path, 20)
    seq = seq_at(path, index)
    del lines[index]
    write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.DELETED
    assert (problem.segment, problem.line) == (path.name, index + 1)
    assert (problem.first_seq, problem.last_seq) == (seq, seq)


def test_inserted_copy_of_an_earlier_record_is_named(trail: Path, pristine: Pristine) -> None:
    source, path = lines_of(segment(trail, 0)), segment(trail, 2)
    lines = lines_of(path)
    index = record_line(path, 15)
    lines.insert(index + 1, source[record_line(segment(trail, 0), 3)])
    write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.INSERTED
    assert (problem.segment, problem.line) == (path.name, index + 2)


def test_inserted_copy_of_a_later_record_is_named(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    index = record_line(path, 10)
    lines.insert(index, lines[index + 5])
    write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.INSERTED
    assert (problem.segment, problem.line) == (path.name, index + 1)


def test_swapped_records_are_reordered(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    index = record_line(path, 12)
    first, second = seq_at(path, index), seq_at(path, index + 1)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.REORDERED
    assert (problem.segment, problem.line, problem.seq) == (path.name, index + 1, second)
    assert (problem.first_seq, problem.last_seq) == (first, second)


def test_malformed_line_is_named(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    lines[7] = b'{"seq":' + lines[7][20:]
    write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert (problem.kind, problem.segment, problem.line) == (vr.MALFORMED, path.name, 8)


# --- truncation -----------------------------------------------------------------------------
def test_torn_last_line_is_truncation(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, -1)
    lines = lines_of(path)
    write_lines(path, lines[:-1], lines[-1][:40] + bytes(500))
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.TRUNCATED
    assert (problem.segment, problem.line) == (path.name, len(lines))


def test_sealed_segment_cut_short_is_truncation(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    following = seq_at(segment(trail, 2), 0)
    write_lines(path, lines[:30])
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.TRUNCATED
    assert (problem.segment, problem.line) == (path.name, 31)
    assert (problem.first_seq, problem.last_seq) == (seq_at(path, 29) + 1, following - 1)


def test_cut_tail_after_a_checkpoint_is_only_a_warning(trail: Path, pristine: Pristine) -> None:
    """Cut at a line boundary after a checkpoint, a trail looks like a live one: only the
    missing shutdown checkpoint hints at it (what anchoring checkpoints outside is for)."""
    path = segment(trail, -1)
    lines = lines_of(path)
    write_lines(path, lines[:-1])
    report = verify(trail, pristine.key)
    assert report.intact
    assert [w.kind for w in report.warnings] in ([vr.NO_SHUTDOWN], [vr.UNSIGNED_TAIL])


def test_junk_after_the_zero_fill_is_named(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, -1)
    lines = lines_of(path)
    end = len(b"".join(lines))
    write_lines(path, lines, bytes(1000) + b"hidden")
    problem = only_problem(verify(trail, pristine.key))
    assert (problem.kind, problem.segment, problem.offset) == (vr.JUNK, path.name, end + 1000)


def test_line_cut_by_a_zero_byte_is_malformed(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    lines[12] = lines[12][:30] + b"\0" + lines[12][31:]
    write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert (problem.kind, problem.segment, problem.line) == (vr.MALFORMED, path.name, 13)


# --- segments -------------------------------------------------------------------------------
def test_missing_middle_segment_is_named(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 2)
    first, last = seq_at(path, 0), seq_at(path, len(lines_of(path)) - 1)
    path.unlink()
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.MISSING_SEGMENT
    assert problem.segment == path.name
    assert (problem.first_seq, problem.last_seq) == (first, last)


def test_missing_first_segment_is_missing_start(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 0)
    last = seq_at(path, len(lines_of(path)) - 1)
    path.unlink()
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.MISSING_START
    assert (problem.segment, problem.line) == (segment(trail, 0).name, 1)
    assert (problem.first_seq, problem.last_seq) == (1, last)


def test_empty_newest_segment_is_a_warning(trail: Path, pristine: Pristine) -> None:
    """A crash between creating the next segment and writing its first entry."""
    segment(trail, -1).unlink()
    number = seg.list_segments(trail)[-1][0] + 1
    (trail / seg.segment_name(number)).write_bytes(bytes(SEGMENT_BYTES))
    report = verify(trail, pristine.key)
    assert report.intact, report.problems
    assert vr.EMPTY_SEGMENT in [w.kind for w in report.warnings]


def test_no_segment_is_a_problem_and_no_directory_an_error(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    assert only_problem(verify(tmp_path, key)).kind == vr.EMPTY
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "nope", key)


# --- signatures and checkpoints -------------------------------------------------------------
def test_rehashed_forgery_fails_its_first_checkpoint(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 2)

    def forge(index: int, body: dict[str, Any]) -> dict[str, Any]:
        if index == 10:
            body["bucket"] = "elsewhere"
        return body

    rehash(trail, Ed25519PrivateKey.generate(), 2, forge)
    lines = lines_of(path)
    first_checkpoint = next(
        i for i, raw in enumerate(lines) if i > 10 and entry(raw)["type"] == "checkpoint"
    )
    before = lines_of(segment(trail, 1))
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.BAD_SIGNATURE
    assert (problem.segment, problem.line) == (path.name, first_checkpoint + 1)
    assert problem.seq == seq_at(path, first_checkpoint)
    assert problem.first_seq == seq_at(segment(trail, 1), len(before) - 1) + 1
    assert "names key" in problem.message


def test_edited_checkpoint_fails_its_signature(trail: Path, pristine: Pristine) -> None:
    path = segment(trail, 0)
    lines = lines_of(path)
    index = next(i for i, raw in enumerate(lines) if entry(raw)["type"] == "checkpoint")
    body = entry(lines[index])
    body["time"] = "2020-01-01T00:00:00.000Z"
    lines[index] = (fmt.dumps(body) + "\n").encode()
    write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert (problem.kind, problem.line, problem.first_seq) == (vr.BAD_SIGNATURE, index + 1, 1)


def test_another_public_key_fails_the_first_checkpoint(pristine: Pristine) -> None:
    problem = only_problem(verify(pristine.directory, Ed25519PrivateKey.generate()))
    assert problem.kind == vr.BAD_SIGNATURE
    assert (problem.segment, problem.first_seq) == ("0000000001.log", 1)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("count", 3, "counts 3 entries"),
        ("prev_checkpoint", "ab" * 32, "prev_checkpoint"),
        ("segment", 77, "names segment 77"),
        ("key_id", "0" * 32, "names key"),
    ],
)
def test_signed_checkpoint_with_a_wrong_field(
    trail: Path, pristine: Pristine, field: str, value: object, says: str
) -> None:
    """Signed with the real key (a writer's bug, not a forgery): the field is still checked."""
    path = segment(trail, 1)
    lines = lines_of(path)
    index = next(i for i, raw in enumerate(lines) if entry(raw)["type"] == "checkpoint")

    def wrong(i: int, body: dict[str, Any]) -> dict[str, Any]:
        if i == index:
            body[field] = value
        return body

    rehash(trail, pristine.key, 1, wrong, last_segment=1)
    if field == "key_id":  # rehash names the signer's key: put the wrong id back, signed
        lines = lines_of(path)
        body = entry(lines[index])
        body["key_id"] = value
        body.pop("sig")
        body["sig"] = base64.b64encode(pristine.key.sign(fmt.checkpoint_message(body))).decode()
        lines[index] = (fmt.dumps(body) + "\n").encode()
        write_lines(path, lines)
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.BAD_CHECKPOINT
    assert (problem.segment, problem.line) == (path.name, index + 1)
    assert says in problem.message


# --- the command line -----------------------------------------------------------------------
def test_cli_verify_exit_codes_and_json(trail: Path, pristine: Pristine, tmp_path: Path) -> None:
    key_file = tmp_path / "audit.pub"
    key_file.write_bytes(public_pem(pristine.key))
    runner = CliRunner()
    done = runner.invoke(audit_app, ["verify", str(trail), "--public-key", str(key_file), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["intact"] is True
    text = runner.invoke(audit_app, ["verify", str(trail), "--public-key", str(key_file)])
    assert (text.exit_code, "INTACT" in text.stdout) == (0, True)
    segment(trail, 1).unlink()
    done = runner.invoke(audit_app, ["verify", str(trail), "--public-key", str(key_file), "--json"])
    assert done.exit_code == 1
    assert json.loads(done.stdout)["problems"][0]["kind"] == vr.MISSING_SEGMENT
    text = runner.invoke(audit_app, ["verify", str(trail), "--public-key", str(key_file)])
    assert (text.exit_code, "missing-segment" in text.stdout) == (1, True)


@pytest.mark.parametrize(
    "args",
    [
        ["verify"],
        ["verify", "{trail}"],
        ["verify", "{trail}", "--public-key", "{missing}"],
        ["verify", "{missing}", "--public-key", "{trail}/0000000001.log"],
        ["verify", "{missing}", "--public-key", "{key}"],
        ["verify", "--data-dir", "{missing}"],
    ],
)
def test_cli_usage_errors_exit_2(
    trail: Path, pristine: Pristine, tmp_path: Path, args: list[str]
) -> None:
    key_file = tmp_path / "audit.pub"
    key_file.write_bytes(public_pem(pristine.key))
    names = {"trail": str(trail), "missing": str(tmp_path / "missing"), "key": str(key_file)}
    done = CliRunner().invoke(audit_app, [a.format(**names) for a in args])
    assert done.exit_code == 2, done.output


# --- what a restart does to a broken chain --------------------------------------------------
def _restart(directory: Path, key: Ed25519PrivateKey, stale_head: bool = True) -> None:
    """Reopen the writer as a restarted server would (the head file lost, as after a reboot),
    write a few records, stop cleanly."""
    if stale_head:
        (directory / "head").unlink()
    trail = HashChainTrail(TrailConfig(directory, segment_bytes=SEGMENT_BYTES), key)
    trail.open()
    _write(trail, 900, 3)
    asyncio.run(trail.close())


def test_restart_after_an_edit_does_not_launder_it(trail: Path, pristine: Pristine) -> None:
    """An edited record in the live segment breaks the chain there; recovery sets what follows
    aside rather than destroy it, and since that holds signed checkpoints the verifier says
    entries covered by a signature were cut out."""
    path = segment(trail, -1)
    lines = lines_of(path)
    index = record_line(path, 1)
    lines[index] = lines[index].replace(b'"status":200', b'"status":403')
    write_lines(path, lines)
    _restart(trail, pristine.key)
    quarantined = list((trail / "quarantine").iterdir())
    assert len(quarantined) == 1
    assert b'"type":"checkpoint"' in quarantined[0].read_bytes()
    problem = only_problem(verify(trail, pristine.key))
    assert problem.kind == vr.DISCARDED_SIGNED
    assert problem.segment == path.name


def test_torn_unsynced_group_is_set_aside_with_a_warning(trail: Path, pristine: Pristine) -> None:
    """What a power loss leaves: the front of a group that was never synced nor acknowledged."""
    path = segment(trail, -1)
    lines = lines_of(path)
    torn = lines[-1][: len(lines[-1]) // 2]
    write_lines(path, lines, tail=torn)
    _restart(trail, pristine.key)
    report = verify(trail, pristine.key)
    assert report.intact, report.problems
    assert vr.DISCARDED in [w.kind for w in report.warnings]
    (quarantined,) = (trail / "quarantine").iterdir()
    assert quarantined.read_bytes() == torn
