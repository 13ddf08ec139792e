"""``andromede admin site|region|repair|residency``: where data lives, on a running server.

Sites and regions are the operator's; ``residency report`` fetches the signed report that
``andromede residency verify`` checks offline.
"""

from __future__ import annotations

import hashlib
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
    connect,
    console,
    count,
    fail,
    integer,
    obj,
    texts,
)

site_app = typer.Typer(
    help="Sites: places data can live (a directory on the server's hosts).", no_args_is_help=True
)
region_app = typer.Typer(
    help="Regions: residency policies a bucket names as its LocationConstraint.",
    no_args_is_help=True,
)
repair_app = typer.Typer(help="Repair, scrub and drain progress.", no_args_is_help=True)
residency_admin_app = typer.Typer(
    help="Signed residency reports: where every shard of a bucket lives.", no_args_is_help=True
)

SITES: Final = "/v1/sites"
REGIONS: Final = "/v1/regions"
REPAIR: Final = "/v1/repair"
RESIDENCY: Final = "/v1/residency"

SiteName = Annotated[str, typer.Argument(help="The site's name")]
Out = Annotated[Path | None, typer.Option("--out", help="Write to this file, not stdout")]

_SITE_COLUMNS: Final = [
    "name",
    "jurisdiction",
    "failure_domain",
    "provider",
    "backend",
    "state",
    "available",
    "used",
    "free",
    "shards",
    "drain",
]
_DRAIN_COUNTS: Final = [("moved", "moved"), ("remaining", "left")]
_WHOLE: Final = {"name", "state", "shards"}
_REGION_COLUMNS: Final = ["name", "jurisdictions", "redundancy", "min_failure_domains"]
_UNITS: Final = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def human_size(size: int | None) -> str:
    """``1.5 GiB``; empty when unknown."""
    if size is None:
        return ""
    value, unit = float(size), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{size} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def _dump(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _drain(progress: dict[str, object] | None) -> str:
    """``blocked: 0 moved, 2 left, by bk1`` (buckets whose policy leaves no other site)."""
    if not progress:
        return ""
    parts = [f"{progress[k]} {word}" for k, word in _DRAIN_COUNTS if k in progress]
    if progress.get("failed"):
        parts.append(f"{progress['failed']} failed")
    blocked = texts(progress.get("blocked"))
    if blocked:
        parts.append(f"by {','.join(blocked)}")
    state = str(progress.get("state", "?"))
    return f"{state}: {', '.join(parts)}" if parts else state


def _site_cell(site: dict[str, object], column: str) -> str:
    if column == "available":
        value = site.get("available")
        return "" if value is None else ("yes" if value else "no")
    if column in ("used", "free"):
        return human_size(integer(site.get(f"{column}_bytes")))
    if column == "drain":  # the state and what is left; ``repair status`` says more
        drain = obj(site.get("drain"))
        left = drain.get("remaining")
        state = str(drain.get("state", ""))
        return f"{state}, {left} left" if left else state
    value = site.get(column)
    return "" if value is None else str(value)


def _show_sites(sites: list[dict[str, object]], as_json: bool) -> None:
    if as_json:
        _dump(sites)
        return
    rows = [[_site_cell(site, c) for c in _SITE_COLUMNS] for site in sites]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for number, column in enumerate(_SITE_COLUMNS):
        # One line per site, the name, state and shard count whole; the rest cut to fit.
        whole = column in _WHOLE
        width = max([len(column), *(len(row[number]) for row in rows)]) if whole else None
        table.add_column(column, no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    console.print(table, highlight=False)
    for site in sites:
        if site.get("problem"):
            console.print(f"site {site.get('name')}: {site.get('problem')}", highlight=False)


def _show_regions(regions: list[dict[str, object]], as_json: bool) -> None:
    if as_json:
        _dump(regions)
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in _REGION_COLUMNS:
        table.add_column(column, no_wrap=True)
    for region in regions:
        cells = [region.get("name"), ",".join(texts(region.get("jurisdictions")))]
        cells += [region.get("redundancy"), region.get("min_failure_domains")]
        table.add_row(*("" if c is None else str(c) for c in cells))
    console.print(table, highlight=False)


def _server_path(path: str) -> str:
    """Absolute paths go as given (they name a directory on the server's hosts); a relative
    one is resolved here, for a server on this machine."""
    given = Path(path)
    return str(given if given.is_absolute() else given.resolve())


# --- sites ------------------------------------------------------------------------------------
@site_app.command("add")
def site_add(
    name: Annotated[str, typer.Argument(help="1-32 of lowercase letters, digits, '-'")],
    jurisdiction: Annotated[
        str, typer.Option(help="ISO 3166-1 alpha-2 country code, upper case: FR, BE, ...")
    ],
    failure_domain: Annotated[
        str, typer.Option(help="Sites sharing a failure domain can fail together (paris-1)")
    ],
    path: Annotated[
        str | None,
        typer.Option(
            help=(
                "local: the site's directory on the server's hosts (created if missing). A "
                "relative path is made absolute here, against this shell's directory: give "
                "an absolute one for a remote server"
            )
        ),
    ] = None,
    provider: Annotated[str, typer.Option(help="Who operates the site")] = "self",
    backend: Annotated[
        str, typer.Option(help="local (a directory) or rados (a Ceph pool, via librados)")
    ] = "local",
    ceph_conf: Annotated[
        str | None,
        typer.Option(help="rados: the cluster's ceph.conf on the gateway hosts (absolute)"),
    ] = None,
    pool: Annotated[str | None, typer.Option(help="rados: the pool")] = None,
    ceph_user: Annotated[
        str,
        typer.Option(help="rados: the cephx user (without client.) whose key ring the conf names"),
    ] = "admin",
    namespace: Annotated[
        str, typer.Option(help="rados: a RADOS namespace, for sites sharing a pool")
    ] = "",
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """Register a site: a local directory, or a Ceph pool (--backend rados). The server opens
    it and writes to it first; what is wrong (a missing pool, a refused key, a cluster out of
    reach) is named, and nothing is registered."""
    body: dict[str, object] = {
        "name": name,
        "jurisdiction": jurisdiction,
        "failure_domain": failure_domain,
        "provider": provider,
        "backend": backend,
    }
    if path is not None:
        body["path"] = _server_path(path)
    if backend == "rados":
        body.update(pool=pool, ceph_conf=ceph_conf, ceph_user=ceph_user, namespace=namespace)
    site = call(endpoint, data_dir, "POST", SITES, body)
    if json_out:
        _dump(site)
        return
    console.print(
        f"site {site['name']} added: {site['jurisdiction']}, failure domain "
        f"{site['failure_domain']}, {site['path']}",
        highlight=False,
    )


@site_app.command("list")
def site_list(
    endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Sites with their state, capacity, shard count and drain progress."""
    _show_sites(call(endpoint, data_dir, "GET", SITES), json_out)


@site_app.command("drain")
def site_drain(
    name: SiteName, endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Place nothing new on the site; the repair job moves its shards to other allowed sites."""
    site = call(endpoint, data_dir, "POST", f"{SITES}/{quote(name, safe='')}/drain")
    if json_out:
        _dump(site)
        return
    console.print(
        f"site {site['name']} is {site['state']}: `andromede admin site list` shows progress",
        highlight=False,
    )


@site_app.command("remove")
def site_remove(
    name: SiteName, endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Forget a site that holds no shards (drain it first)."""
    call(endpoint, data_dir, "DELETE", f"{SITES}/{quote(name, safe='')}")
    if json_out:
        _dump({"removed": name})
    else:
        console.print(f"site {name} removed", highlight=False)


# --- regions ----------------------------------------------------------------------------------
@region_app.command("add")
def region_add(
    name: Annotated[str, typer.Argument(help="2-63 of lowercase letters, digits, '-'")],
    jurisdictions: Annotated[
        str, typer.Option(help="Allowed ISO 3166-1 alpha-2 codes, comma-separated: FR,BE")
    ],
    redundancy: Annotated[str, typer.Option(help="replicas:N or ec:K+M")],
    min_failure_domains: Annotated[
        int, typer.Option(help="Distinct failure domains each blob spans")
    ] = 1,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """Register a residency policy buckets can name as their LocationConstraint."""
    body = {
        "name": name,
        "jurisdictions": [j.strip() for j in jurisdictions.split(",") if j.strip()],
        "redundancy": redundancy,
        "min_failure_domains": min_failure_domains,
    }
    region = call(endpoint, data_dir, "POST", REGIONS, body)
    if json_out:
        _dump(region)
    else:
        _show_regions([region], as_json=False)


@region_app.command("list")
def region_list(
    endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Every region."""
    _show_regions(call(endpoint, data_dir, "GET", REGIONS), json_out)


# --- repair -----------------------------------------------------------------------------------
def _scrub(scrub: dict[str, object]) -> str:
    """``3 passes, last finished T; 6 blobs checked (63.4 KiB), 0 bad``."""
    if not scrub:
        return "not run yet"
    passes = count(scrub.get("passes"))
    line = f"{passes} pass{'es' if passes != 1 else ''}"
    if scrub.get("last_pass_finished"):
        line += f", last finished {scrub['last_pass_finished']}"
    line += (
        f"; {scrub.get('checked', 0)} blobs checked "
        f"({human_size(count(scrub.get('bytes_checked')))}), "
        f"{scrub.get('found_bad', 0)} bad, {scrub.get('repaired', 0)} repaired"
    )
    if scrub.get("blob_id"):
        line += f"; in progress at blob {scrub['blob_id']}"
    return line


def _rebuilt(repair: dict[str, object]) -> str:
    if not repair:
        return "nothing yet"
    line = (
        f"{human_size(count(repair.get('bytes_rebuilt')))} "
        f"({repair.get('repaired', 0)} blobs repaired in place, {repair.get('moved', 0)} moved, "
        f"{repair.get('blocked', 0)} blocked, {repair.get('lost', 0)} lost)"
    )
    return f"{line}, as of {repair['updated']}" if repair.get("updated") else line


def _show_repair(status: dict[str, object], as_json: bool) -> None:
    if as_json:
        _dump(status)
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("degraded blobs", str(status.get("degraded_blobs", 0)))
    table.add_row("bytes at risk", human_size(count(status.get("bytes_at_risk"))))
    table.add_row("scrub", _scrub(obj(status.get("scrub"))))
    table.add_row("rebuilt", _rebuilt(obj(status.get("repair"))))
    drains = obj(status.get("drains"))
    if not drains:
        table.add_row("drains", "none")
    for site, progress in sorted(drains.items()):
        table.add_row(f"drain {site}", _drain(obj(progress)))
    console.print(table, highlight=False)


@repair_app.command("status")
def repair_status(
    endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Degraded blobs, bytes at risk, scrub progress, bytes rebuilt, drains."""
    _show_repair(call(endpoint, data_dir, "GET", REPAIR), json_out)


@repair_app.command("run")
def repair_run(
    endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """Run one round now (queued repairs, drains, a whole scrub pass); then the status."""
    _show_repair(call(endpoint, data_dir, "POST", f"{REPAIR}/run"), json_out)


# --- residency --------------------------------------------------------------------------------
def _write(out: Path, data: bytes) -> None:
    try:
        out.write_bytes(data)
    except OSError as exc:
        fail(AdminError(f"cannot write {out}: {exc.strerror or exc}"))


@residency_admin_app.command("report")
def residency_report(
    bucket: Annotated[str, typer.Option(help="The bucket")],
    out: Out = None,
    endpoint: Endpoint = None,
    data_dir: DataDir = None,
    json_out: AsJson = False,
) -> None:
    """The bucket's signed residency report (JSON): to stdout, or to --out with a summary."""
    report = call(endpoint, data_dir, "GET", f"{RESIDENCY}/{quote(bucket, safe='')}")
    if out is None:
        _dump(report)
        return
    _write(out, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    summary = {
        "bucket": report["bucket"],
        "out": str(out),
        "objects": len(report["objects"]),
        "within_policy": report["within_policy"],
        "generated": report["generated"],
    }
    if json_out:
        _dump(summary)
        return
    policy = "within policy" if report["within_policy"] else "NOT within policy"
    console.print(
        f"residency report of {report['bucket']}: {summary['objects']} objects, {policy}, "
        f"written to {out}",
        highlight=False,
    )


@residency_admin_app.command("public-key")
def residency_public_key(
    out: Out = None, endpoint: Endpoint = None, data_dir: DataDir = None, json_out: AsJson = False
) -> None:
    """The Ed25519 public key (PEM) for ``andromede residency verify --public-key``."""
    try:
        with connect(endpoint, data_dir).stream(f"{RESIDENCY}/public-key") as response:
            pem = response.read()
    except AdminError as exc:
        fail(exc)
    digest = hashlib.sha256(pem).hexdigest()
    if out is not None:
        _write(out, pem)
    if json_out:
        _dump(
            {"out": str(out), "sha256": digest} if out else {"pem": pem.decode(), "sha256": digest}
        )
    elif out is None:
        sys.stdout.buffer.write(pem)
        sys.stdout.buffer.flush()
    else:
        console.print(
            f"public key written to {out} (sha256 {digest})", highlight=False, soft_wrap=True
        )
