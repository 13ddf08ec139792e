"""``andromede residency verify``: check a signed residency report, offline or against the
server.

Offline, the report must be of a known kind and format, signed by the key given (its SHA-256
is in the report) over the report's canonical form, and its shards must lie in the region's
jurisdictions. With ``--check``, the server's current report for the same bucket must still
place every object's shards on the same sites. Exit status: 0 when all holds, 1 otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn, TypedDict
from urllib.parse import quote

import typer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.markup import escape
from rich.table import Table

from andromede.cli.admin_placement import human_size
from andromede.cli.common import AsJson, DataDir, Endpoint, call, console, err_console
from andromede.core.residency import REPORT_FORMAT, REPORT_KIND, canonical

VALID: Final = 0
INVALID: Final = 1
_ANY: Final = "*"

residency_app = typer.Typer(help="Proof of residency: verify signed reports.", no_args_is_help=True)

# (key, version_id) -> per segment: (blob, etag, shard sites in shard order)
Placements = dict[tuple[str, str], tuple[str, list[tuple[str, tuple[str, ...]]]]]


@dataclass
class Differences:
    """How the server's placement now differs from a report's."""

    gone: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        """Nothing differs."""
        return not (self.gone or self.added or self.changed or self.moved)


@residency_app.callback()
def _group() -> None:
    """Proof of residency: verify signed reports."""


def _stop(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(INVALID)


def _load_report(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        _stop(f"cannot read the report {path}: {exc.strerror or exc}")
    except ValueError as exc:
        _stop(f"{path} is not JSON: {exc}")
    if not isinstance(doc, dict):
        _stop(f"{path} is not a residency report (not a JSON object)")
    return doc


def _load_key(path: Path) -> tuple[Ed25519PublicKey, bytes]:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        _stop(f"cannot read the key {path}: {exc.strerror or exc}")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        _stop(f"{path}: not a public key in PEM form")
    if not isinstance(key, Ed25519PublicKey):
        _stop(f"{path}: not an Ed25519 public key")
    return key, pem


def _fingerprints(key: Ed25519PublicKey, pem: bytes) -> set[str]:
    """The file's SHA-256, and that of the key re-encoded as the server exports it (a copy
    whose line endings were changed is still the same key)."""
    exported = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {hashlib.sha256(pem).hexdigest(), hashlib.sha256(exported).hexdigest()}


def signature_problems(doc: dict[str, Any], key: Ed25519PublicKey, pem: bytes) -> list[str]:
    """What is wrong with the report as a signed document (empty when it is authentic)."""
    if doc.get("kind") != REPORT_KIND:
        return [f"not a residency report (kind {doc.get('kind')!r}, expected {REPORT_KIND!r})"]
    if doc.get("format") != REPORT_FORMAT:
        return [f"report format {doc.get('format')!r}; this verifier reads {REPORT_FORMAT}"]
    problems = []
    if doc.get("public_key_sha256") not in _fingerprints(key, pem):
        problems.append(
            f"signed with another key: the report names {doc.get('public_key_sha256')}, "
            f"the key given is {hashlib.sha256(pem).hexdigest()}"
        )
    try:
        signature = base64.b64decode(str(doc.get("signature", "")), validate=True)
        key.verify(signature, canonical(doc))
    except (binascii.Error, InvalidSignature):
        problems.append("the signature does not match the report's contents")
    return problems


def policy_problems(doc: dict[str, Any]) -> list[str]:
    """Shards outside the region's jurisdictions, by the report's own listing."""
    allowed = set(doc.get("region", {}).get("jurisdictions", []))
    outside: dict[str, int] = {}
    try:
        for obj in doc["objects"]:
            for segment in obj["segments"]:
                for shard in segment["shards"]:
                    if _ANY not in allowed and shard["jurisdiction"] not in allowed:
                        outside[shard["jurisdiction"]] = outside.get(shard["jurisdiction"], 0) + 1
    except (KeyError, TypeError):
        return ["the report's objects are not in the expected form"]
    problems = [
        f"{n} shards in {code}, outside the region's jurisdictions ({','.join(sorted(allowed))})"
        for code, n in sorted(outside.items())
    ]
    if doc.get("within_policy") is not True:
        problems.append("the report says the bucket's data is not within its policy")
    return problems


def placements(doc: dict[str, Any]) -> Placements:
    """Each object version's segments: blob, ETag and the sites of its shards."""
    found: Placements = {}
    for obj in doc.get("objects", []):
        segments = [
            (str(s["blob"]), tuple(str(sh["site"]) for sh in s["shards"])) for s in obj["segments"]
        ]
        found[(str(obj["key"]), str(obj["version_id"]))] = (str(obj["etag"]), segments)
    return found


def _name(key: str, version_id: str) -> str:
    return f"{key} (version {version_id})"


def compare(report: Placements, current: Placements) -> Differences:
    """Objects gone, added, replaced (same version, other bytes), and shards moved."""
    diff = Differences()
    for ident in sorted(report.keys() - current.keys()):
        diff.gone.append(_name(*ident))
    for ident in sorted(current.keys() - report.keys()):
        diff.added.append(_name(*ident))
    for ident in sorted(report.keys() & current.keys()):
        (etag, was), (now_etag, now) = report[ident], current[ident]
        if etag != now_etag or [b for b, _ in was] != [b for b, _ in now]:
            diff.changed.append(_name(*ident))
            continue
        for number, ((_, old_sites), (_, new_sites)) in enumerate(zip(was, now, strict=True)):
            for index, (old, new) in enumerate(zip(old_sites, new_sites, strict=False)):
                if old != new:
                    diff.moved.append(
                        f"{_name(*ident)}: segment {number} shard {index} {old} -> {new}"
                    )
            if len(old_sites) != len(new_sites):
                diff.moved.append(
                    f"{_name(*ident)}: segment {number} has {len(new_sites)} shards, "
                    f"was {len(old_sites)}"
                )
    return diff


def _check(
    doc: dict[str, Any],
    key: Ed25519PublicKey,
    pem: bytes,
    endpoint: str | None,
    data_dir: Path | None,
) -> tuple[Differences, list[str]]:
    """The server's current report for the bucket, compared with ``doc``."""
    bucket = str(doc.get("bucket", ""))
    if not bucket:
        _stop("the report names no bucket to check")
    current = call(endpoint, data_dir, "GET", f"/v1/residency/{quote(bucket, safe='')}")
    problems = [f"the server's current report: {p}" for p in signature_problems(current, key, pem)]
    try:
        return compare(placements(doc), placements(current)), problems
    except (KeyError, TypeError):
        _stop("a report's objects are not in the expected form")


class Summary(TypedDict):
    """What a report says, as ``verify`` shows it (and adds to its --json output)."""

    bucket: object
    tenant: object
    region: object
    jurisdictions: list[str]
    redundancy: object
    generated: object
    objects: int
    totals: dict[str, dict[str, object]]
    within_policy: object


def _summary(doc: dict[str, Any]) -> Summary:
    """What the report says, in a shape that holds even for a malformed one."""
    region = doc.get("region")
    region = region if isinstance(region, dict) else {}
    jurisdictions = region.get("jurisdictions")
    objects, totals = doc.get("objects"), doc.get("totals")
    return {
        "bucket": doc.get("bucket"),
        "tenant": doc.get("tenant"),
        "region": region.get("name"),
        "jurisdictions": [str(j) for j in jurisdictions] if isinstance(jurisdictions, list) else [],
        "redundancy": region.get("redundancy"),
        "generated": doc.get("generated"),
        "objects": len(objects) if isinstance(objects, list) else 0,
        "totals": {
            str(code): t
            for code, t in (totals.items() if isinstance(totals, dict) else [])
            if isinstance(t, dict)
        },
        "within_policy": doc.get("within_policy"),
    }


def _show(path: Path, summary: Summary, problems: list[str], diff: Differences | None) -> None:
    if problems:
        verdict = "[red]NOT VALID[/red]"
    elif diff is not None and not diff.matches:
        verdict = "[yellow]VALID, NO LONGER CURRENT[/yellow]"
    else:
        verdict = "[green]VALID[/green]"
    console.print(
        f"residency report {escape(str(path))}: {verdict}", highlight=False, soft_wrap=True
    )
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    jurisdictions = ",".join(summary["jurisdictions"])
    rows = [
        ("bucket", f"{summary['bucket']} (tenant {summary['tenant']})"),
        ("region", f"{summary['region']}: {jurisdictions}, {summary['redundancy']}"),
        ("generated", str(summary["generated"])),
        ("objects", str(summary["objects"])),
    ]
    for code, total in sorted(summary["totals"].items()):
        size = total.get("object_bytes")
        size_text = human_size(size) if isinstance(size, int) else str(size)
        rows.append((f"in {code}", f"{total.get('shards')} shard(s), {size_text}"))
    if diff is not None:
        rows.append(("server", "placement unchanged" if diff.matches else "placement changed"))
    for name, value in rows:
        table.add_row(name, escape(value))
    console.print(table, highlight=False)
    for problem in problems:
        console.print(f"[red]problem[/red] {escape(problem)}", highlight=False, soft_wrap=True)
    if diff is not None:
        for label, items in asdict(diff).items():
            for item in items:
                console.print(
                    f"[yellow]{label}[/yellow] {escape(item)}", highlight=False, soft_wrap=True
                )


@residency_app.command()
def verify(
    report: Annotated[Path, typer.Argument(help="The report (JSON) to verify")],
    public_key: Annotated[
        Path,
        typer.Option(
            "--public-key", help="The server's residency public key (PEM, from admin residency)"
        ),
    ],
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Also ask the server whether every shard is still where reported"
        ),
    ] = False,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """Verify a residency report: its signature, its policy, and (--check) that it still holds.
    Exit 0 only when all holds."""
    doc = _load_report(report)
    key, pem = _load_key(public_key)
    problems = signature_problems(doc, key, pem)
    if not problems:
        problems = policy_problems(doc)
    diff = None
    if check:
        diff, server_problems = _check(doc, key, pem, endpoint, data_dir)
        problems += server_problems
    summary = _summary(doc)
    valid = not problems and (diff is None or diff.matches)
    if json_out:
        out: dict[str, object] = {"report": str(report), "valid": valid, "problems": problems}
        out.update(summary)
        if diff is not None:
            out["check"] = {"matches": diff.matches, **asdict(diff)}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        _show(report, summary, problems, diff)
    raise typer.Exit(VALID if valid else INVALID)
