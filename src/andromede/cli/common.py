"""What every admin command shares: its options, its consoles, its client, how it fails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from andromede.cli.client import AdminClient, AdminError, resolve_target

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Server data directory")]
Endpoint = Annotated[
    str | None, typer.Option("--endpoint", envvar="ANDROMEDE_ENDPOINT", help="Server URL")
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
console = Console()
# Errors go to stderr, unwrapped, so that stdout stays parseable under --json.
err_console = Console(stderr=True, soft_wrap=True)


def connect(endpoint: str | None, data_dir: Path | None) -> AdminClient:
    """A client for the server named by ``--endpoint`` or found through ``--data-dir``."""
    try:
        return AdminClient(*resolve_target(endpoint, data_dir))
    except AdminError as exc:
        fail(exc)


def fail(exc: AdminError) -> NoReturn:
    """Print the error on stderr and exit with status 1."""
    err_console.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(code=1)


def call(
    endpoint: str | None,
    data_dir: Path | None,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    """One admin API call; an error response ends the command with status 1."""
    client = connect(endpoint, data_dir)
    try:
        return client.request(method, path, body, params)
    except AdminError as exc:
        fail(exc)
