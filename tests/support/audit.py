"""Reading a server's audit trail from outside: its records, and the offline verifier's say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def trail_entries(audit_dir: Path) -> list[dict[str, Any]]:
    """Every entry of the trail under ``audit_dir``, oldest first (zero padding dropped)."""
    entries = []
    for path in sorted(audit_dir.glob("*.log")):
        data = path.read_bytes()
        end = data.find(b"\0")
        for line in (data if end < 0 else data[:end]).splitlines():
            entries.append(json.loads(line))
    return entries


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
