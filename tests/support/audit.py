"""Reading a server's audit trail from outside: its records, and the offline verifier's say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.waiting import wait_until


def trail_entries(audit_dir: Path) -> list[dict[str, Any]]:
    """Every entry of the trail under ``audit_dir``, oldest first (zero padding dropped)."""
    entries = []
    for path in sorted(audit_dir.glob("*.log")):
        data = path.read_bytes()
        end = data.find(b"\0")
        for line in (data if end < 0 else data[:end]).splitlines():
            entries.append(json.loads(line))
    return entries


def signed_up_to_here(audit_dir: Path) -> bool:
    """Whether the newest entry of the trail is a checkpoint, i.e. every record written so far
    is signed. Safe while the writer appends: a line not yet whole is not read."""
    for path in sorted(audit_dir.glob("*.log"), reverse=True):
        data = path.read_bytes()
        end = data.find(b"\0")
        whole = (data if end < 0 else data[:end]).rpartition(b"\n")[0]
        if whole:
            return bool(json.loads(whole.rpartition(b"\n")[2])["type"] == "checkpoint")
    return False


def wait_for_checkpoint(audit_dir: Path, seconds: float = 10.0) -> None:
    """Wait until the writer, idle, has signed what it wrote with a checkpoint: one comes a
    checkpoint interval after the last record."""
    wait_until(lambda: signed_up_to_here(audit_dir), seconds, what="an idle checkpoint")


def trail_records(audit_dir: Path) -> list[dict[str, Any]]:
    """The request and event records of the trail."""
    return [e for e in trail_entries(audit_dir) if e["type"] in ("request", "event")]


def verify_data_dir(data_dir: Path) -> tuple[int, dict[str, Any]]:
    """Run ``andromede audit verify --data-dir`` (offline): exit status and JSON report."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "andromede",
            "audit",
            "verify",
            "--data-dir",
            str(data_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError as exc:
        raise AssertionError(f"verify printed no JSON:\n{done.stdout}\n{done.stderr}") from exc
    return done.returncode, report
