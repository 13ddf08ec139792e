"""``andromede admin jobs``: which gateway process runs each background job."""

from __future__ import annotations

import json
import sys
from typing import Final

import typer
from rich.table import Table

from andromede.cli.common import AsJson, DataDir, Endpoint, call, console, objects

jobs_app = typer.Typer(
    help="Background jobs: which gateway process holds each one's lease.", no_args_is_help=True
)
JOBS: Final = "/v1/jobs"


@jobs_app.command("list")
def jobs_list(
    endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Each job's holder (host:pid:random), epoch, expiry, and whether it runs now."""
    jobs = objects(call(endpoint, data_dir, "GET", JOBS))
    if json_out:
        sys.stdout.write(json.dumps(jobs, indent=2) + "\n")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("job", "holder", "epoch", "expires", "state"):
        table.add_column(column, no_wrap=column != "holder", overflow="fold")
    for job in jobs:
        state = "running" if job.get("running") else "waiting for a taker"
        table.add_row(
            str(job.get("job")), str(job.get("holder")), str(job.get("epoch")),
            str(job.get("expires")), state,
        )  # fmt: skip
    if not jobs:
        console.print("no job has run yet", highlight=False)
        return
    console.print(table, highlight=False)
