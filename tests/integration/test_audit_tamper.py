"""Tamper tests on copies of a real server's trail: ``andromede audit verify`` (the command, in
a subprocess) exits 1 and names the spot for every change, and exits 0 on the untouched trail.

The server runs once for the module with small segments and a short checkpoint interval, takes
a few hundred S3 requests from boto3 and stops cleanly; each test tampers with its own copy.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import format as fmt
from andromede.audit import segments as seg
from andromede.audit.keys import load_signing_key, public_pem
from support.audit import wait_for_checkpoint
from support.server import running_server


@dataclass(frozen=True)
class Stopped:
    """A cleanly stopped server's data dir, its trail, and the trail's public key file."""

    data_dir: Path
    audit: Path
    public_key: Path


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Stopped:
    base = tmp_path_factory.mktemp("audit-tamper")
    data = base / "data"
    env = {
        "ANDROMEDE_AUDIT_SEGMENT_BYTES": "65536",
        "ANDROMEDE_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0.5",
    }
    with running_server(data, workers=2, **env) as srv:
        s3 = srv.client()
        s3.create_bucket(Bucket="ledger")
        for i in range(300):
            s3.put_object(Bucket="ledger", Key=f"invoices/{i:04d}", Body=b"x" * i)
            if i % 3 == 0:
                s3.get_object(Bucket="ledger", Key=f"invoices/{i:04d}")["Body"].read()
            if i % 100 == 99:
                wait_for_checkpoint(data / "audit")  # idle: an interval checkpoint
    public = base / "audit.pub"
    public.write_bytes(public_pem(load_signing_key(data / "audit-signing.key")))
    return Stopped(data, data / "audit", public)


@pytest.fixture
def trail(stopped: Stopped, tmp_path: Path) -> Path:
    """A copy of the stopped server's trail, free to tamper with."""
    copy = tmp_path / "audit"
    shutil.copytree(stopped.audit, copy)
    return copy


def verify(args: list[str]) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "andromede", "audit", "verify", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError as exc:
        raise AssertionError(f"no JSON report:\n{done.stdout}\n{done.stderr}") from exc
    return done.returncode, report


def problem_in(trail: Path, stopped: Stopped) -> dict[str, Any]:
    """Verify ``trail``: it must fail with exactly one problem, returned."""
    code, report = verify([str(trail), "--public-key", str(stopped.public_key)])
    assert code == 1, report
    assert report["intact"] is False
    [problem] = report["problems"]
    return problem


# --- what a tamperer does -------------------------------------------------------------------
def segment(directory: Path, index: int) -> Path:
    return seg.list_segments(directory)[index][1]


def lines_of(path: Path) -> list[bytes]:
    return [line.raw for line in seg.iter_lines(path)]


def write_lines(path: Path, lines: list[bytes], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(lines) + tail)


def entry(raw: bytes) -> dict[str, Any]:
    return fmt.parse_line(raw)


def two_records(lines: list[bytes], start: int = 5) -> int:
    """Index of a request record followed by another, at or after ``start``."""
    for index in range(start, len(lines) - 1):
        if entry(lines[index])["type"] == entry(lines[index + 1])["type"] == "request":
            return index
    raise AssertionError("no two records in a row")


def spot(problem: dict[str, Any]) -> tuple[str, int | None, int | None]:
    return problem["segment"], problem["line"], problem["seq"]


# --- the tests ------------------------------------------------------------------------------
def test_untouched_trail_verifies(trail: Path, stopped: Stopped) -> None:
    code, report = verify([str(trail), "--public-key", str(stopped.public_key)])
    assert code == 0, report
    assert report["intact"] is True
    assert report["problems"] == []
    facts = report["facts"]
    assert facts["records"] >= 400
    assert facts["segments"] >= 3
    assert facts["complete"] is True
    assert facts["checkpoints"] > facts["segments"]
    assert facts["unsigned_tail"] == 0  # a clean stop signs everything


def test_data_dir_mode_on_the_stopped_server(stopped: Stopped) -> None:
    code, report = verify(["--data-dir", str(stopped.data_dir)])
    assert code == 0, report
    assert report["directory"] == str(stopped.audit)


def test_edited_field(trail: Path, stopped: Stopped) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    index = two_records(lines, 10)
    lines[index] = lines[index].replace(b'"status":200', b'"status":403')
    write_lines(path, lines)
    problem = problem_in(trail, stopped)
    assert problem["kind"] == "modified"
    assert spot(problem) == (path.name, index + 1, entry(lines[index])["seq"])


def test_deleted_record(trail: Path, stopped: Stopped) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    index = two_records(lines, 20)
    seq = entry(lines.pop(index))["seq"]
    write_lines(path, lines)
    problem = problem_in(trail, stopped)
    assert problem["kind"] == "deleted"
    assert (problem["segment"], problem["line"]) == (path.name, index + 1)
    assert (problem["first_seq"], problem["last_seq"]) == (seq, seq)


def test_inserted_record(trail: Path, stopped: Stopped) -> None:
    earlier = lines_of(segment(trail, 0))
    path = segment(trail, 2)
    lines = lines_of(path)
    index = two_records(lines, 8)
    lines.insert(index + 1, earlier[two_records(earlier, 5)])
    write_lines(path, lines)
    problem = problem_in(trail, stopped)
    assert problem["kind"] == "inserted"
    assert (problem["segment"], problem["line"]) == (path.name, index + 2)


def test_swapped_records(trail: Path, stopped: Stopped) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    index = two_records(lines, 15)
    first, second = entry(lines[index])["seq"], entry(lines[index + 1])["seq"]
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    write_lines(path, lines)
    problem = problem_in(trail, stopped)
    assert problem["kind"] == "reordered"
    assert spot(problem) == (path.name, index + 1, second)
    assert (problem["first_seq"], problem["last_seq"]) == (first, second)


def test_tail_truncated_mid_line(trail: Path, stopped: Stopped) -> None:
    path = segment(trail, -1)
    lines = lines_of(path)
    write_lines(path, lines[:-1], lines[-1][: len(lines[-1]) // 2])
    problem = problem_in(trail, stopped)
    assert problem["kind"] == "truncated"
    assert (problem["segment"], problem["line"]) == (path.name, len(lines))


def test_checkpoint_covered_part_truncated(trail: Path, stopped: Stopped) -> None:
    """A sealed segment cut at a line boundary: its segment-end checkpoint is gone."""
    path = segment(trail, 1)
    lines = lines_of(path)
    keep = len(lines) // 2
    write_lines(path, lines[:keep])
    problem = problem_in(trail, stopped)
    assert problem["kind"] == "truncated"
    assert (problem["segment"], problem["line"]) == (path.name, keep + 1)
    assert problem["first_seq"] == entry(lines[keep])["seq"]
    assert problem["last_seq"] == entry(lines[-1])["seq"]


def test_segment_replaced_by_a_rehashed_forgery(trail: Path, stopped: Stopped) -> None:
    """Every line rebuilt with correct prev hashes, checkpoints signed with another key: the
    chain holds, the first checkpoint of the forged segment does not verify."""
    path = segment(trail, 1)
    lines = lines_of(path)
    target = two_records(lines, 5)
    forger = Ed25519PrivateKey.generate()
    head = entry(lines[0])["prev"]
    forged, first_checkpoint = [], None
    for index, raw in enumerate(lines):
        body = entry(raw)
        body["prev"] = head
        if index == target:
            body["bucket"] = "somewhere-else"
        if body["type"] == "checkpoint":
            first_checkpoint = first_checkpoint if first_checkpoint is not None else index
            body["key_id"] = fmt.key_id(forger.public_key())
            del body["sig"]
            body["sig"] = base64.b64encode(forger.sign(fmt.checkpoint_message(body))).decode()
        line = (fmt.dumps(body) + "\n").encode()
        head = fmt.line_hash(line)
        forged.append(line)
    write_lines(path, forged)
    assert first_checkpoint is not None
    problem = problem_in(trail, stopped)
    assert problem["kind"] == "bad-signature"
    checkpoint_seq = entry(lines[first_checkpoint])["seq"]
    assert spot(problem) == (path.name, first_checkpoint + 1, checkpoint_seq)
    assert problem["first_seq"] <= entry(lines[0])["seq"]
    assert problem["last_seq"] == checkpoint_seq


def test_middle_segment_deleted(trail: Path, stopped: Stopped) -> None:
    path = segment(trail, 1)
    lines = lines_of(path)
    path.unlink()
    problem = problem_in(trail, stopped)
    assert problem["kind"] == "missing-segment"
    assert problem["segment"] == path.name
    assert problem["first_seq"] == entry(lines[0])["seq"]
    assert problem["last_seq"] == entry(lines[-1])["seq"]


def test_first_segment_deleted(trail: Path, stopped: Stopped) -> None:
    path = segment(trail, 0)
    lines = lines_of(path)
    path.unlink()
    problem = problem_in(trail, stopped)
    assert problem["kind"] == "missing-start"
    assert (problem["segment"], problem["line"]) == (segment(trail, 0).name, 1)
    assert (problem["first_seq"], problem["last_seq"]) == (1, entry(lines[-1])["seq"])


def test_data_dir_mode_finds_tampering(stopped: Stopped, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(stopped.data_dir, data, ignore=shutil.ignore_patterns("*.sock"))
    path = segment(data / "audit", 0)
    lines = lines_of(path)
    index = two_records(lines, 5)
    lines[index] = lines[index].replace(b'"bucket":"ledger"', b'"bucket":"ledgex"')
    write_lines(path, lines)
    code, report = verify(["--data-dir", str(data)])
    assert code == 1, report
    assert spot(report["problems"][0]) == (path.name, index + 1, entry(lines[index])["seq"])
