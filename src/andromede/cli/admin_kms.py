"""``andromede admin kms``: tenant key-encryption keys (KEKs) on a running server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import quote

import typer
from rich import box
from rich.table import Table

from andromede.cli.client import AdminError
from andromede.cli.common import (
    AsJson,
    DataDir,
    Endpoint,
    call,
    console,
    err_console,
    fail,
    obj,
    objects,
)

kms_app = typer.Typer(
    help=(
        "Tenant key-encryption keys (KEKs): create, rotate, disable, schedule deletion, destroy."
    ),
    no_args_is_help=True,
)

KeyId = Annotated[str, typer.Argument(help="The key's id (a UUID), or its ARN")]
Tenant = Annotated[str | None, typer.Option(help="The tenant (default: the caller's own)")]

KEYS: Final = "/v1/kms/keys"
_COLUMNS: Final = ["key_id", "state", "tenant", "alias", "version", "deletion"]
# One line per key, the id and the state whole; the other columns are cut to fit.
_WHOLE: Final = {"key_id": 36, "state": len("PendingDeletion")}
_DATES: Final = {"deletion": "deletion_date"}
_ARN_KEY: Final = ":key/"


def _key_path(key_id: str, action: str = "") -> str:
    """The key's route; an ARN (as S3 clients show it) stands for its key id."""
    if key_id.startswith("arn:") and _ARN_KEY in key_id:
        key_id = key_id.rsplit(_ARN_KEY, 1)[1]
    path = f"{KEYS}/{quote(key_id, safe='')}"
    return f"{path}/{action}" if action else path


def _rewrap(progress: dict[str, object]) -> str:
    """``re-wrap to v3: 120 of 400 data keys examined``."""
    line = (
        f"re-wrap to v{progress['target_version']}: "
        f"{progress['rewrapped']} of {progress['scanned']} data keys examined"
    )
    if progress["done"]:
        return f"{line}, done {progress.get('finished') or ''}".rstrip()
    return f"{line}, running since {progress.get('started') or '?'}"


def _show(key: dict[str, object], as_json: bool) -> None:
    """One key: JSON as the API returns it, or its fields one per line."""
    if as_json:
        sys.stdout.write(json.dumps(key, indent=2) + "\n")
        return
    versions = ", ".join(f"v{v['number']} {v['created']}" for v in objects(key["versions"]))
    fields: list[tuple[str, object]] = [
        ("key_id", key["key_id"]),
        ("arn", key["arn"]),
        ("tenant", key["tenant"]),
        ("alias", key.get("alias")),
        ("state", key["state"]),
        ("description", key.get("description")),
        ("manager", key["manager"]),
        ("created", key["created"]),
        ("version", key.get("current_version")),
        ("versions", versions),
        ("deletion_date", key.get("deletion_date")),
    ]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in fields:
        if value not in (None, ""):
            table.add_row(name, str(value))
    if key.get("rewrap"):
        table.add_row("rewrap", _rewrap(obj(key["rewrap"])))
    console.print(table, highlight=False)


def _cell(key: dict[str, object], column: str) -> str:
    if column in _DATES:  # the day is enough in a table; describe shows the time
        value = key.get(_DATES[column])
        return str(value)[:10] if value else ""
    value = key.get("current_version" if column == "version" else column)
    return "" if value is None else str(value)


def _show_list(keys: list[dict[str, object]], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(keys, indent=2) + "\n")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in _COLUMNS:
        table.add_column(column, no_wrap=True, min_width=_WHOLE.get(column))
    for key in keys:
        table.add_row(*(_cell(key, c) for c in _COLUMNS))
    console.print(table, highlight=False)


def _act(
    action: str, key_id: str, endpoint: str | None, data_dir: Path | None, as_json: bool
) -> None:
    _show(call(endpoint, data_dir, "POST", _key_path(key_id, action)), as_json)


@kms_app.command("create")
def create(
    tenant: Tenant = None,
    description: Annotated[str, typer.Option(help="Free text")] = "",
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """Create a key, Enabled, at version 1."""
    body: dict[str, object] = {"description": description}
    if tenant is not None:
        body["tenant"] = tenant
    _show(call(endpoint, data_dir, "POST", KEYS, body), json_out)


@kms_app.command("list")
def list_keys(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's keys (an operator sees all without)")
    ] = None,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """List keys."""
    params = {"tenant": tenant} if tenant is not None else None
    _show_list(call(endpoint, data_dir, "GET", KEYS, params=params), json_out)


@kms_app.command("describe")
def describe(
    key_id: KeyId, endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Show a key, with the progress of its re-wrap after a rotation."""
    _show(call(endpoint, data_dir, "GET", _key_path(key_id)), json_out)


@kms_app.command("rotate")
def rotate(
    key_id: KeyId, endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """New material for the key; existing data keys are re-wrapped in the background."""
    _act("rotate", key_id, endpoint, data_dir, json_out)


@kms_app.command("disable")
def disable(
    key_id: KeyId, endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Refuse every read and write of data under the key until it is enabled again."""
    _act("disable", key_id, endpoint, data_dir, json_out)


@kms_app.command("enable")
def enable(
    key_id: KeyId, endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Make a disabled key usable again."""
    _act("enable", key_id, endpoint, data_dir, json_out)


@kms_app.command("schedule-deletion")
def schedule_deletion(
    key_id: KeyId,
    days: Annotated[int, typer.Option(help="Waiting period: 7 to 30 days")] = 30,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """Make the key unusable now, and destroy it after the waiting period."""
    path = _key_path(key_id, "schedule-deletion")
    _show(call(endpoint, data_dir, "POST", path, {"days": days}), json_out)


@kms_app.command("cancel-deletion")
def cancel_deletion(
    key_id: KeyId, endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Keep a key pending deletion after all."""
    _act("cancel-deletion", key_id, endpoint, data_dir, json_out)


@kms_app.command("destroy")
def destroy(
    key_id: KeyId,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """Destroy a key pending deletion now: its objects become unreadable (crypto-shredding)."""
    if not yes:
        if not sys.stdin.isatty():
            fail(AdminError("destroying a key is irreversible: pass --yes to confirm"))
        err_console.print(
            f"Destroying key {key_id} makes every object encrypted under it unreadable, for good.",
            highlight=False,
        )
        if not typer.confirm("Destroy it?", err=True):
            err_console.print("not destroyed", highlight=False)
            raise typer.Exit(code=1)
    _act("destroy", key_id, endpoint, data_dir, json_out)
