"""Every gateway's chain at once: ``andromede audit export`` copies the chains a cluster's
gateways mirrored to a Ceph pool (``audit/mirror.py``) into a directory, one sub-directory
per chain; ``andromede audit verify DIR`` on such a directory checks each chain with its key.

The keys travel with the chains: whoever can write the pool could replace a chain and its key
together, so each chain's key id is printed, and ``--public-key`` (repeatable) restricts the
keys accepted to those an auditor holds (a chain signed by another key is then NOT INTACT).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from andromede.audit.format import key_id
from andromede.audit.keys import SigningKeyError, load_public_key
from andromede.audit.mirror import KEY_OBJECT, RadosMirror, export
from andromede.audit.verify import Report, verify_trail
from andromede.core.locations import RadosLocation


def is_export(directory: Path) -> bool:
    """Whether ``directory`` holds chains (sub-directories with a key) rather than segments."""
    if not directory.is_dir() or any(directory.glob("*.log")):
        return False
    return any((sub / KEY_OBJECT).is_file() for sub in directory.iterdir() if sub.is_dir())


def verify_chains(
    directory: Path, trusted: list[Ed25519PublicKey]
) -> list[tuple[str, Report | None, str | None]]:
    """(chain, report, refusal) for each chain under ``directory``: the report of its segments
    under its own key, or a refusal (its key unreadable, or not among ``trusted``)."""
    allowed = {key_id(k) for k in trusted}
    out: list[tuple[str, Report | None, str | None]] = []
    for sub in sorted(p for p in directory.iterdir() if (p / KEY_OBJECT).is_file()):
        try:
            key = load_public_key((sub / KEY_OBJECT).read_bytes())
        except (OSError, SigningKeyError) as exc:
            out.append((sub.name, None, f"its key cannot be read: {exc}"))
            continue
        if allowed and key_id(key) not in allowed:
            out.append((sub.name, None, f"signed by key {key_id(key)}, not one given"))
            continue
        out.append((sub.name, verify_trail(sub, key), None))
    return out


def export_chains(location: RadosLocation, destination: Path) -> dict[str, int]:
    """Copy every chain of the pool into ``destination``."""
    return export(RadosMirror(location), destination)


def print_json(results: list[tuple[str, Report | None, str | None]]) -> None:
    doc = {
        "intact": all(r is not None and r.intact for _, r, _ in results) and bool(results),
        "chains": {
            chain: (report.as_dict() if report is not None else {"intact": False, "refused": why})
            for chain, report, why in results
        },
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
