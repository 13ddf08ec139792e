"""``andromede admin audit``: read a running server's audit trail over the admin API."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import IO, Annotated, Final

import typer
from rich.table import Table

from andromede.cli.client import AdminClient, AdminError
from andromede.cli.common import (
    AsJson,
    DataDir,
    Endpoint,
    connect,
    console,
    err_console,
    fail,
    obj,
)

audit_admin_app = typer.Typer(
    help="Read the audit trail: query, export as JSON Lines, the checkpoint signing key.",
    no_args_is_help=True,
)

TIME_HELP: Final = "ISO 8601 time (UTC if no zone), or an age such as 90s, 15m, 2h, 7d"
Tenant = Annotated[
    str | None, typer.Option(help="Records touching this tenant or made by its principals")
]
Since = Annotated[str | None, typer.Option(help=f"From this time, inclusive: {TIME_HELP}")]
Until = Annotated[str | None, typer.Option(help=f"Up to this time, exclusive: {TIME_HELP}")]
Bucket = Annotated[str | None, typer.Option(help="Bucket name")]
PrincipalOpt = Annotated[
    str | None,
    typer.Option(
        "--principal",
        help="Access key id, or kind: key, operator, anonymous, unauthenticated, system",
    ),
]
Operation = Annotated[
    str | None, typer.Option(help="Operation: PutObject, GetObject, admin:CreateTenant, ...")
]
Outcome = Annotated[
    str | None,
    typer.Option(help="success, failure, an HTTP status (404) or an error code (AccessDenied)"),
]
AfterSeq = Annotated[int, typer.Option("--after-seq", help="Only records after this seq")]
After = Annotated[
    str | None,
    typer.Option("--after", help="A cluster: only records after this cursor (CHAIN:SEQ,...)"),
]
Out = Annotated[Path | None, typer.Option("--out", help="Write to this file, not stdout")]

_AGE = re.compile(r"^(\d+)([smhd])$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MIN_WIDTH: Final = {"seq": 3, "time": 24, "status": 6}
_COLUMNS: Final = ["seq", "time", "status", "operation", "tenant", "principal", "bucket", "key"]


def _time(text: str | None) -> str | None:
    """An age (``15m``) becomes the time that long ago; anything else goes to the server."""
    if text is None:
        return None
    match = _AGE.match(text.strip())
    if match is None:
        return text
    age = dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    return (dt.datetime.now(dt.UTC) - age).isoformat()


def _params(
    tenant: str | None,
    since: str | None,
    until: str | None,
    bucket: str | None,
    principal: str | None,
    operation: str | None,
    outcome: str | None,
    after_seq: int,
    after: str | None = None,
) -> dict[str, str]:
    given: dict[str, str | None] = {
        "tenant": tenant,
        "since": _time(since),
        "until": _time(until),
        "bucket": bucket,
        "principal": principal,
        "operation": operation,
        "outcome": outcome,
        "after_seq": str(after_seq) if after_seq else None,
        "after": after or None,
    }
    return {k: v for k, v in given.items() if v is not None}


def _principal(record: dict[str, object]) -> str:
    principal = obj(record.get("principal"))
    return str(principal.get("access_key_id") or principal.get("kind") or "")


def _cell(record: dict[str, object], column: str) -> str:
    if column == "principal":
        return _principal(record)
    if column == "status":
        error = record.get("error")
        return f"{record.get('status')} {error}" if error else str(record.get("status"))
    value = record.get(column)
    return "" if value is None else str(value)


@audit_admin_app.command("query")
def query(
    tenant: Tenant = None,
    since: Since = None,
    until: Until = None,
    bucket: Bucket = None,
    principal: PrincipalOpt = None,
    operation: Operation = None,
    outcome: Outcome = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Records per page")] = 100,
    after_seq: AfterSeq = 0,
    after: After = None,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """Records matching every filter given, oldest first (a tenant's key sees its own)."""
    params = _params(tenant, since, until, bucket, principal, operation, outcome, after_seq, after)
    params["limit"] = str(limit)
    try:
        page = connect(endpoint, data_dir).request("GET", "/v1/audit/records", params=params)
    except AdminError as exc:
        fail(exc)
    if json_out:
        sys.stdout.write(json.dumps(page, indent=2) + "\n")
        return
    table = Table()
    for column in _COLUMNS:  # one line per record; the time whole, the rest cut to fit
        table.add_column(column, no_wrap=True, min_width=_MIN_WIDTH.get(column))
    for record in page["records"]:
        table.add_row(*(_cell(record, c) for c in _COLUMNS))
    console.print(table)
    if page.get("next_after_seq") is not None:
        err_console.print(f"more records: --after-seq {page['next_after_seq']}", highlight=False)
    if page.get("next_after"):
        err_console.print(f"more records: --after {page['next_after']}", highlight=False)


@audit_admin_app.command("export")
def export(
    tenant: Tenant = None,
    since: Since = None,
    until: Until = None,
    bucket: Bucket = None,
    principal: PrincipalOpt = None,
    operation: Operation = None,
    outcome: Outcome = None,
    after_seq: AfterSeq = 0,
    after: After = None,
    out: Out = None,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
) -> None:
    """Every matching record as JSON Lines, streamed (to --out only once complete)."""
    params = _params(tenant, since, until, bucket, principal, operation, outcome, after_seq, after)
    client = connect(endpoint, data_dir)
    if out is None:
        try:
            _stream(client, params, sys.stdout.buffer)
        except BrokenPipeError:  # the reader went away (``| head``): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(code=1) from None
        return
    partial = out.with_name(out.name + ".partial")
    try:
        with open(partial, "wb") as fh:
            _stream(client, params, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def _stream(client: AdminClient, params: dict[str, str], sink: IO[bytes]) -> None:
    try:
        with client.stream("/v1/audit/export", params) as response:
            for chunk in response.iter_bytes():
                sink.write(chunk)
    except AdminError as exc:
        fail(exc)
    sink.flush()


@audit_admin_app.command("public-key")
def public_key(out: Out = None, endpoint: Endpoint = None, data_dir: DataDir = None) -> None:
    """The Ed25519 public key (PEM) for ``andromede audit verify --public-key``."""
    try:
        with connect(endpoint, data_dir).stream("/v1/audit/public-key") as response:
            pem = response.read()
    except AdminError as exc:
        fail(exc)
    if out is None:
        sys.stdout.buffer.write(pem)
        sys.stdout.buffer.flush()
    else:
        out.write_bytes(pem)
