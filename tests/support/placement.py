"""Several local sites in jurisdictions and failure domains, for the placement tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from andromede.cli.client import AdminClient
from support.server import Server, running_server

# name, jurisdiction, failure domain
SITES = [
    ("fr-a", "FR", "paris-1"),
    ("fr-b", "FR", "paris-2"),
    ("fr-c", "FR", "lyon-1"),
    ("fr-d", "FR", "marseille-1"),
    ("be-a", "BE", "brussels-1"),
    ("us-a", "US", "virginia-1"),
]
# name, jurisdictions, redundancy, min failure domains
REGIONS = [
    ("fr-only", ["FR"], "replicas:3", 3),
    ("fr-ec", ["FR"], "ec:2+2", 4),
    ("fr-be", ["FR", "BE"], "ec:3+2", 4),
]
# Background rounds out of the way: each test runs repair when it wants one.
QUIET = {
    "ANDROMEDE_REPAIR_INTERVAL_SECONDS": "3600",
    "ANDROMEDE_SCRUB_BYTES_PER_SECOND": "0",
    "ANDROMEDE_PLACEMENT_REFRESH_SECONDS": "0.2",
}


@dataclass
class Cluster:
    """A server with sites under ``root/sites/<name>``."""

    server: Server
    root: Path

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.server.endpoint, self.server.access_key, self.server.secret_key)

    def site_dir(self, name: str) -> Path:
        return self.root / "sites" / name

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.admin.request(method, path, body)

    def add_site(self, name: str, jurisdiction: str, domain: str) -> None:
        self.request(
            "POST",
            "/v1/sites",
            {
                "name": name,
                "jurisdiction": jurisdiction,
                "failure_domain": domain,
                "provider": "acme",
                "path": str(self.site_dir(name)),
            },
        )

    def repair(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/v1/repair/run")
        return result

    def report(self, bucket: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/residency/{bucket}")
        return result

    def files(self, name: str) -> list[Path]:
        """Every file a site holds (blobs and temporary files), markers aside."""
        base = self.site_dir(name)
        return sorted(p for p in base.rglob("*") if p.is_file() and p.name != "FORMAT")

    def shard_path(self, site: str, blob_id: str) -> Path:
        return self.site_dir(site) / "blobs" / blob_id[:2] / blob_id


@contextlib.contextmanager
def cluster(tmp_path: Path, *, mounts: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A server with the six sites and three regions registered. ``mounts``: site name ->
    tmpfs size, for a site on a small filesystem of its own."""
    root = tmp_path
    mounted: list[Path] = []
    try:
        for name, size in (mounts or {}).items():
            target = root / "sites" / name
            target.mkdir(parents=True)
            mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target))
            mounted.append(target)
        with running_server(root / "data", **QUIET) as server:
            made = Cluster(server, root)
            for site in SITES:
                made.add_site(*site)
            for name, jurisdictions, redundancy, domains in REGIONS:
                made.request(
                    "POST",
                    "/v1/regions",
                    {
                        "name": name,
                        "jurisdictions": jurisdictions,
                        "redundancy": redundancy,
                        "min_failure_domains": domains,
                    },
                )
            yield made
    finally:
        for target in mounted:
            subprocess.run(["umount", "-l", str(target)], check=False)


def mount(*args: str) -> None:
    """mount(8), or skip where this machine does not let the tests mount (fail under CI)."""
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = f"cannot mount ({done.stderr.strip()}); the test needs root and mount(8)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a directory read-only even for root: a read-only bind mount over itself."""
    mount("--bind", str(path), str(path))
    try:
        mount("-o", "remount,bind,ro", str(path))
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def shard_sites(report: dict[str, Any], key: str) -> list[list[str]]:
    """Per segment of ``key``, the sites of its shards (from a residency report)."""
    for entry in report["objects"]:
        if entry["key"] == key:
            return [[s["site"] for s in seg["shards"]] for seg in entry["segments"]]
    raise KeyError(key)
