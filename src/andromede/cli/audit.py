"""``andromede audit``: offline tools for the audit trail (no server, no credentials).

``andromede audit verify DIR --public-key FILE`` checks a copy of the segments;
``andromede audit verify --data-dir DATADIR`` checks a server's data dir in place (the trail in
``DATADIR/audit``, the public half of ``DATADIR/audit-signing.key``); ``andromede audit verify
EXPORT`` checks every chain of a cluster's export (``andromede audit export``, see
``audit_chains.py``). Exit status: 0 when the trail (every chain) is intact (warnings allowed),
1 when a problem is found, 2 on a usage error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Final, NoReturn

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from andromede.audit.keys import SigningKeyError, load_public_key
from andromede.audit.verify import Finding, Report, verify_trail
from andromede.cli import audit_chains as chains
from andromede.core.errors import AndromedeError
from andromede.core.locations import RadosLocation

INTACT: Final = 0
TAMPERED: Final = 1
USAGE: Final = 2

audit_app = typer.Typer(help="Offline tools for the audit trail.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


@audit_app.callback()
def _group() -> None:
    """Offline tools for the audit trail."""


@audit_app.command()
def verify(
    directory: Annotated[
        Path | None, typer.Argument(help="Trail directory (segment files NNNNNNNNNN.log)")
    ] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help=(
                "Ed25519 public key PEM (a private key PEM works too); for an export of "
                "several chains, repeat it to accept only those keys"
            ),
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="A server's data dir: its audit/ and signing key"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Verify a trail offline: chain, signatures, segments. Exit 0 only when intact."""
    if directory is not None and data_dir is None and chains.is_export(directory):
        _verify_export(directory, [_public_key(p) for p in public_key or []], as_json)
    if public_key is not None and len(public_key) > 1:
        _usage("one --public-key for one trail")
    trail, key_path = _locate(directory, public_key[0] if public_key else None, data_dir)
    key = _public_key(key_path)
    try:
        # In place, the server may be writing: read up to the head it published.
        report = verify_trail(trail, key, live=data_dir is not None)
    except FileNotFoundError as exc:
        _usage(str(exc))
    except OSError as exc:
        _usage(f"cannot read the trail: {exc}")
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        _show(report)
    raise typer.Exit(INTACT if report.intact else TAMPERED)


def _verify_export(directory: Path, trusted: list[Ed25519PublicKey], as_json: bool) -> NoReturn:
    try:
        results = chains.verify_chains(directory, trusted)
    except OSError as exc:
        _usage(f"cannot read the export: {exc}")
    intact = bool(results) and all(r is not None and r.intact for _, r, _ in results)
    if as_json:
        chains.print_json(results)
    else:
        for chain, report, refused in results:
            if report is not None:
                _show(report)
            else:
                console.print(
                    f"chain {escape(chain)}: [red]NOT INTACT[/red]: {escape(refused or '')}"
                )
        verdict = "[green]INTACT[/green]" if intact else "[red]NOT INTACT[/red]"
        console.print(f"{len(results)} chain(s): {verdict}", highlight=False)
    raise typer.Exit(INTACT if intact else TAMPERED)


@audit_app.command("export")
def export_command(
    destination: Annotated[Path, typer.Argument(help="Directory to copy the chains into")],
    ceph_conf: Annotated[Path, typer.Option(help="The cluster's ceph.conf (with its key ring)")],
    pool: Annotated[str, typer.Option(help="The pool of ANDROMEDE_AUDIT_RADOS")],
    ceph_user: Annotated[str, typer.Option(help="cephx user, without client.")] = "admin",
    namespace: Annotated[str, typer.Option(help="The RADOS namespace, if any")] = "",
) -> None:
    """Copy every gateway's chain from the pool they mirror to (one sub-directory each, with
    its public key), for ``andromede audit verify DESTINATION``."""
    try:
        location = RadosLocation(pool, str(ceph_conf.resolve()), ceph_user, namespace)
        counts = chains.export_chains(location, destination)
    except AndromedeError as exc:
        _usage(exc.message)
    except OSError as exc:
        _usage(f"cannot export: {exc.strerror or exc}")
    for chain, segments in counts.items():
        console.print(f"chain {chain}: {segments} segment(s)", highlight=False)
    console.print(f"{len(counts)} chain(s) in {escape(str(destination))}", highlight=False)


def _locate(
    directory: Path | None, public_key: Path | None, data_dir: Path | None
) -> tuple[Path, Path]:
    if directory is not None and data_dir is not None:
        _usage("give a trail directory or --data-dir, not both")
    if data_dir is not None:
        return data_dir / "audit", public_key or data_dir / "audit-signing.key"
    if directory is None:
        _usage("give a trail directory (with --public-key) or --data-dir")
    if public_key is None:
        _usage("--public-key is required with a trail directory")
    return directory, public_key


def _public_key(path: Path) -> Ed25519PublicKey:
    try:
        return load_public_key(path.read_bytes())
    except OSError as exc:
        _usage(f"cannot read the key {path}: {exc.strerror or exc}")
    except SigningKeyError as exc:
        _usage(f"{path}: {exc}")


def _usage(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(USAGE)


def _show(report: Report) -> None:
    facts = report.facts
    verdict = "[green]INTACT[/green]" if report.intact else "[red]NOT INTACT[/red]"
    console.print(f"audit trail {escape(str(report.directory))}: {verdict}", highlight=False)
    table = Table(show_header=False, box=None)
    rows = [
        ("key id", facts.key_id),
        ("segments", f"{facts.segments} ({facts.first_segment} .. {facts.last_segment})"),
        ("entries", f"{facts.entries} (seq {facts.first_seq} .. {facts.last_seq})"),
        ("records", str(facts.records)),
        ("checkpoints", str(facts.checkpoints)),
        (
            "last checkpoint",
            f"seq {facts.last_checkpoint_seq}, {facts.last_checkpoint_time}, "
            f"{facts.last_checkpoint_reason}"
            if facts.last_checkpoint_seq is not None
            else "none",
        ),
    ]
    if facts.complete:
        rows.append(("unsigned tail", f"{facts.unsigned_tail} entries"))
    else:
        rows.append(("read", "stopped at the first problem"))
    for name, value in rows:
        table.add_row(name, escape(value))
    console.print(table)
    for finding in report.problems:
        _finding("[red]problem[/red]", finding)
    for finding in report.warnings:
        _finding("[yellow]warning[/yellow]", finding)


def _finding(label: str, finding: Finding) -> None:
    where = finding.where()
    console.print(
        f"{label} {escape(finding.kind)}"
        + (f" at {escape(where)}" if where else "")
        + f": {escape(finding.message)}",
        highlight=False,
    )
