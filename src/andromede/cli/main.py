"""``andromede``: serve, and administer a running server over its admin API."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from andromede.cli.admin_audit import audit_admin_app
from andromede.cli.admin_jobs import jobs_app
from andromede.cli.admin_kms import kms_app
from andromede.cli.admin_placement import region_app, repair_app, residency_admin_app, site_app
from andromede.cli.audit import audit_app
from andromede.cli.common import (
    AsJson,
    DataDir,
    Endpoint,
    call,
    console,
    err_console,
    obj,
    objects,
)
from andromede.cli.residency import residency_app

app = typer.Typer(help="Andromède, a sovereign S3 object store.", no_args_is_help=True)
admin = typer.Typer(help="Administer a running server (admin API over HTTP).", no_args_is_help=True)
tenant_cmd = typer.Typer(help="Tenants (organisations).", no_args_is_help=True)
key_cmd = typer.Typer(help="Access keys.", no_args_is_help=True)
app.add_typer(admin, name="admin")
admin.add_typer(tenant_cmd, name="tenant")
admin.add_typer(key_cmd, name="key")
admin.add_typer(audit_admin_app, name="audit")
admin.add_typer(kms_app, name="kms")
admin.add_typer(site_app, name="site")
admin.add_typer(region_app, name="region")
admin.add_typer(repair_app, name="repair")
admin.add_typer(jobs_app, name="jobs")
admin.add_typer(residency_admin_app, name="residency")
app.add_typer(audit_app, name="audit")
app.add_typer(residency_app, name="residency")


@app.command()
def serve(
    data_dir: DataDir = None,
    address: Annotated[str | None, typer.Option(help="host:port to listen on")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: cores)")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML settings file")] = None,
) -> None:
    """Run the server: S3 API, admin API under /_andromede/admin, one process per core."""
    # Imported here: the admin commands should not pay for loading the server.
    from andromede.server import run  # noqa: PLC0415
    from andromede.settings import SettingsError  # noqa: PLC0415

    if config is not None:
        os.environ["ANDROMEDE_CONFIG_FILE"] = str(config)
    try:
        run(data_dir=data_dir, address=address, workers=workers)
    except SettingsError as exc:
        # The operator's mistake, not ours: the message names it; a traceback would bury it.
        err_console.print(f"andromede serve: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from exc


def _output(data: object, as_json: bool, columns: list[str]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    rows = objects(data) if isinstance(data, list) else [obj(data)]
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(table)


@tenant_cmd.command("create")
def tenant_create(
    name: str, endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Create a tenant."""
    data = call(endpoint, data_dir, "POST", "/v1/tenants", {"name": name})
    _output(data, json_out, ["name", "created"])


@tenant_cmd.command("list")
def tenant_list(
    endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """List tenants."""
    _output(call(endpoint, data_dir, "GET", "/v1/tenants"), json_out, ["name", "created"])


_KEY_COLUMNS = ["access_key_id", "tenant", "is_operator", "created", "description"]


@key_cmd.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to")],
    description: Annotated[str, typer.Option(help="Free text")] = "",
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """Create an access key; prints the secret once."""
    data = call(
        endpoint, data_dir, "POST", "/v1/keys", {"tenant": tenant, "description": description}
    )
    _output(data, json_out, ["access_key_id", "secret_key", "tenant"])


@key_cmd.command("list")
def key_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys")] = None,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """List access keys (never secrets)."""
    params = {"tenant": tenant} if tenant else None
    _output(call(endpoint, data_dir, "GET", "/v1/keys", params=params), json_out, _KEY_COLUMNS)


@key_cmd.command("delete")
def key_delete(
    access_key_id: str,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """Delete an access key."""
    call(endpoint, data_dir, "DELETE", f"/v1/keys/{access_key_id}")
    _output({"deleted": access_key_id}, json_out, ["deleted"])


@admin.command("whoami")
def whoami(endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False) -> None:
    """Show who the credentials belong to."""
    _output(
        call(endpoint, data_dir, "GET", "/v1/whoami"),
        json_out,
        ["access_key_id", "tenant", "is_operator"],
    )


def main() -> None:
    """Console-script entry point."""
    app()
