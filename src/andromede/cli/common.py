"""What every admin command shares: its options, its consoles, its client, how it fails."""

from __future__ import annotations

from collections.abc import Mapping
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
    body: Mapping[str, object] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    """One admin API call; an error response ends the command with status 1."""
    client = connect(endpoint, data_dir)
    try:
        return client.request(method, path, body, params)
    except AdminError as exc:
        fail(exc)


# --- reading the API's JSON answers ----------------------------------------------------------
# Display code reads the server's answers leniently: a field missing, or of another type than
# the API documents, shows as empty (or zero) instead of failing the command.
JsonObject = dict[str, object]


def obj(value: object) -> JsonObject:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def objects(value: object) -> list[JsonObject]:
    """The JSON objects of the list ``value`` (nothing if it is no list)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def integer(value: object) -> int | None:
    """``value`` if it is an integer (JSON's true and false are not)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def count(value: object) -> int:
    """``value`` if it is an integer, else 0."""
    return integer(value) or 0


def texts(value: object) -> list[str]:
    """The items of the list ``value`` as text (nothing if it is no list)."""
    return [str(v) for v in value] if isinstance(value, list) else []
