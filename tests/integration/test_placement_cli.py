"""``andromede admin site|region|repair|residency`` and ``andromede residency verify`` against a
real server with local sites in FR (four failure domains), BE and US: what an operator types,
what it prints, and what a tenant's auditor can check offline."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support.server import Server, running_server

# site name -> (jurisdiction, failure domain)
SITES = {
    "fr-par1": ("FR", "paris-1"),
    "fr-par2": ("FR", "paris-2"),
    "fr-lyo": ("FR", "lyon-1"),
    "fr-mrs": ("FR", "marseille-1"),
    "be-bru": ("BE", "brussels-1"),
    "us-nyc": ("US", "nyc-1"),
}
# ``site list``'s columns, the drain summary last.
COLUMNS = ["name", "jurisdiction", "failure_domain", "provider", "backend", "state", "available"]
COLUMNS += ["used", "free", "shards"]
FR_R3 = "fr-r3"  # FR only, three replicas over three failure domains
EU_EC = "eu-ec"  # FR or BE, erasure code 2+1 over two failure domains


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Repairs run when a test asks (``repair run``), not in the background meanwhile.
    data = tmp_path_factory.mktemp("placement-cli") / "data"
    with running_server(data, ANDROMEDE_REPAIR_INTERVAL_SECONDS="3600") as srv:
        yield srv


@pytest.fixture(scope="module")
def sites_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sites")


@pytest.fixture(scope="module")
def placed(server: Server, sites_root: Path) -> dict[str, Any]:
    """The sites and the two regions, added through the CLI: what each add printed."""
    added: dict[str, Any] = {}
    for name, (jurisdiction, domain) in SITES.items():
        where = opts(jurisdiction=jurisdiction, failure_domain=domain, path=sites_root / name)
        added[name] = ok(admin(server, "site", "add", name, *where, "--provider", "acme cloud"))
    for name, jurisdictions, redundancy, domains in [
        (FR_R3, "FR", "replicas:3", 3),
        (EU_EC, "FR,BE", "ec:2+1", 2),
    ]:
        policy = opts(
            jurisdictions=jurisdictions, redundancy=redundancy, min_failure_domains=domains
        )
        added[name] = ok(admin(server, "region", "add", name, *policy))
    return added


def opts(**options: object) -> list[str]:
    """``--json`` and ``--some-option VALUE`` for each ``some_option=VALUE``."""
    flat = ["--json"]
    for name, value in options.items():
        flat += ["--" + name.replace("_", "-"), str(value)]
    return flat


def admin(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """``andromede admin ARGS --data-dir DATA`` as the operator."""
    return server.cli("admin", *args, check=False)


def offline(*args: str) -> subprocess.CompletedProcess[str]:
    """``andromede ARGS`` with no server to reach and no credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROMEDE_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "andromede", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a successful ``--json`` command printed."""
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """The command failed with status 1, nothing on stdout, ``expected`` on stderr."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    for text in expected:
        assert text in result.stderr, result.stderr


def new_bucket(server: Server, region: str, **objects: bytes) -> str:
    s3 = server.client()
    name = "pl-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    for key, body in objects.items():
        s3.put_object(Bucket=name, Key=key, Body=body)
    return name


def shard_counts(server: Server) -> dict[str, int]:
    return {s["name"]: s["shards"] for s in ok(admin(server, "site", "list", "--json"))}


def export(server: Server, bucket: str, directory: Path) -> tuple[Path, Path]:
    """``admin residency public-key`` and ``report --out``: the key and the report files."""
    key, report = directory / "residency.pem", directory / f"{bucket}.json"
    pem = ok(admin(server, "residency", "public-key", "--out", str(key), "--json"))
    summary = ok(
        admin(server, "residency", "report", "--bucket", bucket, "--out", str(report), "--json")
    )
    assert summary["bucket"] == bucket
    assert summary["out"] == str(report)
    assert json.loads(report.read_text())["public_key_sha256"] == pem["sha256"]
    return key, report


def verify(report: Path, key: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return offline("residency", "verify", str(report), "--public-key", str(key), *more)


def check(server: Server, report: Path, key: Path) -> subprocess.CompletedProcess[str]:
    """``residency verify --check`` against the server (``--data-dir`` finds it)."""
    args = ("residency", "verify", str(report), "--public-key", str(key), "--check", "--json")
    return server.cli(*args, check=False)


def test_sites_and_regions_are_added(server: Server, placed: dict[str, Any], sites_root: Path):
    for name, (jurisdiction, domain) in SITES.items():
        assert placed[name] == {
            "name": name,
            "jurisdiction": jurisdiction,
            "failure_domain": domain,
            "provider": "acme cloud",
            "path": str(sites_root / name),
            "backend": "local",
            "state": "active",
            "available": None,
            "problem": None,
            "used_bytes": None,
            "free_bytes": None,
            "shards": None,
            "drain": None,
        }
        assert (sites_root / name).is_dir()
    listed = {s["name"]: s for s in ok(admin(server, "site", "list", "--json"))}
    for name in SITES:
        assert listed[name]["available"] is True
        assert listed[name]["free_bytes"] > 0
    assert placed[FR_R3] == {
        "name": FR_R3,
        "jurisdictions": ["FR"],
        "redundancy": "replicas:3",
        "min_failure_domains": 3,
    }
    regions = {r["name"]: r for r in ok(admin(server, "region", "list", "--json"))}
    assert regions[EU_EC]["jurisdictions"] == ["BE", "FR"]
    assert regions[EU_EC]["redundancy"] == "ec:2+1"


def test_relative_path_is_made_absolute_here(
    server: Server, placed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    where = opts(jurisdiction="DE", failure_domain="frankfurt-1", path="sites/de")
    site = ok(admin(server, "site", "add", "de-fra", *where))
    assert site["path"] == str(tmp_path.resolve() / "sites" / "de")
    assert site["provider"] == "self"
    assert ok(admin(server, "site", "remove", "de-fra", "--json")) == {"removed": "de-fra"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["site", "add", "fr-x", "--jurisdiction", "fr", "--failure-domain", "d"],
         ["InvalidArgument", "'fr' is not a jurisdiction"]),
        (["site", "add", "fr-par1", "--jurisdiction", "FR", "--failure-domain", "d"],
         ["SiteAlreadyExists"]),
        (["region", "add", "r5", "--jurisdictions", "FR", "--redundancy", "raid5"],
         ["InvalidArgument", "Redundancy 'raid5'"]),
        (["region", "add", "r2", "--jurisdictions", "FR", "--redundancy", "replicas:2",
          "--min-failure-domains", "3"], ["min-failure-domains", "2 for replicas:2"]),
        (["region", "add", FR_R3, "--jurisdictions", "FR", "--redundancy", "replicas:1"],
         ["RegionAlreadyExists"]),
        (["site", "drain", "nowhere"], ["NoSuchSite"]),
        (["residency", "report", "--bucket", "no-such-bucket-here"], ["NoSuchBucket"]),
    ],
)  # fmt: skip
def test_bad_input_is_refused(
    server: Server, placed: dict[str, Any], tmp_path: Path, args: list[str], expected: list[str]
):
    if args[:2] == ["site", "add"]:
        args = [*args, "--path", str(tmp_path / "site")]
    refused(admin(server, *args, "--json"), *expected)


def test_a_second_site_on_the_same_path_is_refused(
    server: Server, placed: dict[str, Any], sites_root: Path
):
    where = opts(jurisdiction="FR", failure_domain="paris-9", path=sites_root / "fr-par1")
    refused(admin(server, "site", "add", "fr-twin", *where), "SiteAlreadyExists")


def test_writes_land_on_the_region_sites(
    server: Server, placed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
):
    before = shard_counts(server)
    bucket = new_bucket(server, FR_R3, a=b"alpha", b=b"beta" * 100)
    location = server.client().get_bucket_location(Bucket=bucket)["LocationConstraint"]
    assert location == FR_R3
    after = shard_counts(server)
    grown = {name: after[name] - before[name] for name in SITES}
    assert sum(grown.values()) == 6  # two blobs, three replicas each
    assert all(0 <= grown[n] <= 2 for n in SITES if n.startswith("fr-"))
    assert grown["be-bru"] == grown["us-nyc"] == 0
    monkeypatch.setenv("COLUMNS", "200")
    table = admin(server, "site", "list")
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if line.strip()]
    header = lines[0].split()
    assert header == [*COLUMNS, "drain"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["be-bru"].split()[:3] == ["be-bru", "BE", "brussels-1"]
    assert "iB" in rows["fr-lyo"]  # human sizes
    assert rows["fr-lyo"].split()[-1] == str(after["fr-lyo"])


def test_a_site_holding_shards_cannot_be_removed(server: Server, placed: dict[str, Any]):
    new_bucket(server, FR_R3, k=b"x")
    holding = [n for n, count in shard_counts(server).items() if count and n.startswith("fr-")]
    refused(admin(server, "site", "remove", holding[0]), "SiteNotDrained", "drain it first")


@pytest.fixture(scope="module")
def exported(
    server: Server, placed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, Path]:
    """A bucket of the erasure-coded region with one object: (bucket, key file, report)."""
    bucket = new_bucket(server, EU_EC, doc=b"x" * 3000)
    return bucket, *export(server, bucket, tmp_path_factory.mktemp("exported"))


def test_report_verifies_offline_with_the_exported_key(exported: tuple[str, Path, Path]):
    bucket, key, report = exported
    doc = json.loads(report.read_text())
    assert doc["kind"] == "andromede-residency-report"
    assert doc["region"]["name"] == EU_EC
    assert doc["within_policy"] is True
    (obj,) = doc["objects"]
    shards = obj["segments"][0]["shards"]
    assert len(shards) == 3
    assert {s["jurisdiction"] for s in shards} <= {"FR", "BE"}
    assert {s["site"] for s in shards} <= {"fr-par1", "fr-par2", "fr-lyo", "fr-mrs", "be-bru"}
    assert set(doc["totals"]) <= {"FR", "BE"}
    result = ok(verify(report, key, "--json"))
    assert result["valid"] is True
    assert result["problems"] == []
    assert result["bucket"] == bucket
    human = verify(report, key)
    assert human.returncode == 0, human.stderr
    assert "VALID" in human.stdout
    assert "NOT VALID" not in human.stdout


def _tamper_jurisdiction(doc: dict[str, Any]) -> None:
    doc["objects"][0]["segments"][0]["shards"][0]["jurisdiction"] = "US"


def _tamper_site(doc: dict[str, Any]) -> None:
    doc["objects"][0]["segments"][0]["shards"][0]["site"] = "us-nyc"


@pytest.mark.parametrize("tamper", [_tamper_jurisdiction, _tamper_site])
def test_a_tampered_report_fails(exported: tuple[str, Path, Path], tmp_path: Path, tamper: Any):
    _, key, report = exported
    doc = json.loads(report.read_text())
    tamper(doc)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    result = verify(tampered, key)
    assert result.returncode == 1
    assert "NOT VALID" in result.stdout
    assert "signature does not match" in result.stdout


def test_another_key_does_not_verify(exported: tuple[str, Path, Path], tmp_path: Path):
    _, _, report = exported
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    result = verify(report, other, "--json")
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    assert any("signed with another key" in p for p in problems)
    refused(verify(report, tmp_path / "missing.pem"), "cannot read the key")


def test_check_follows_the_server(server: Server, placed: dict[str, Any], tmp_path: Path):
    bucket = new_bucket(server, FR_R3, a=b"first", b=b"second", c=b"third")
    key, report = export(server, bucket, tmp_path)
    now = ok(check(server, report, key))
    assert now["valid"] is True
    assert now["check"] == {"matches": True, "gone": [], "added": [], "changed": [], "moved": []}
    s3 = server.client()
    s3.put_object(Bucket=bucket, Key="a", Body=b"overwritten")
    s3.delete_object(Bucket=bucket, Key="b")
    result = check(server, report, key)
    assert result.returncode == 1
    found = json.loads(result.stdout)
    assert found["valid"] is False
    assert found["problems"] == []  # still authentic, just no longer current
    gone = [g.split()[0] for g in found["check"]["gone"]]
    assert sorted(gone) == ["a", "b"]
    assert [a.split()[0] for a in found["check"]["added"]] == ["a"]
    human = server.cli(
        "residency", "verify", str(report), "--public-key", str(key), "--check", check=False
    )
    assert human.returncode == 1
    assert "NO LONGER CURRENT" in human.stdout
    assert "gone b (version" in human.stdout


def test_repair_status_and_run(server: Server, placed: dict[str, Any]):
    before = ok(admin(server, "repair", "status", "--json"))
    assert set(before) == {"degraded_blobs", "bytes_at_risk", "scrub", "repair", "drains"}
    bucket = new_bucket(server, FR_R3, doc=b"r" * 2000)
    doc = ok(admin(server, "residency", "report", "--bucket", bucket))
    segment = doc["objects"][0]["segments"][0]
    site = segment["shards"][0]["site"]
    (shard,) = Path(placed[site]["path"]).rglob(segment["blob"])
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # one bit flip in the shard's last frame
    shard.write_bytes(bytes(data))
    after = ok(admin(server, "repair", "run", "--json"))
    assert after["scrub"]["found_bad"] >= before["scrub"].get("found_bad", 0) + 1
    assert after["scrub"]["repaired"] >= before["scrub"].get("repaired", 0) + 1
    assert after["degraded_blobs"] == 0
    assert after["repair"]["bytes_rebuilt"] > before["repair"].get("bytes_rebuilt", 0)
    assert shard.read_bytes() != bytes(data)
    body = server.client().get_object(Bucket=bucket, Key="doc")["Body"].read()
    assert body == b"r" * 2000
    human = admin(server, "repair", "status")
    assert human.returncode == 0, human.stderr
    for label in ("degraded blobs", "bytes at risk", "scrub", "rebuilt", "drains"):
        assert label in human.stdout


@dataclass(frozen=True)
class Drained:
    """A site drained with ``repair run``: the report from before, its key, the status."""

    site: str
    report: Path
    key: Path
    status: dict[str, Any]


@pytest.fixture(scope="module")
def drained(
    server: Server, placed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Drained:
    """Object ``a`` and the first version of ``c`` share a site (two of four FR sites each
    way); ``c`` is overwritten (its old blob queued for deletion), then the site drained."""
    bucket = new_bucket(server, FR_R3, a=b"one", c=b"three")
    key, report = export(server, bucket, tmp_path_factory.mktemp("drained"))
    layouts = {
        o["key"]: o["segments"][0]["shards"] for o in json.loads(report.read_text())["objects"]
    }
    site = sorted({s["site"] for s in layouts["a"]} & {s["site"] for s in layouts["c"]})[0]
    server.client().put_object(Bucket=bucket, Key="c", Body=b"three again")
    assert ok(admin(server, "site", "drain", site, "--json"))["state"] == "draining"
    return Drained(site, report, key, ok(admin(server, "repair", "run", "--json")))


def test_drain_moves_shards_away(server: Server, drained: Drained):
    site = drained.site
    assert drained.status["drains"][site]["state"] == "done"
    assert drained.status["drains"][site]["remaining"] == 0
    assert shard_counts(server)[site] == 0
    result = check(server, drained.report, drained.key)
    assert result.returncode == 1
    moved = json.loads(result.stdout)["check"]["moved"]
    assert any(m.startswith("a (version") and f" {site} -> " in m for m in moved), moved
    human = admin(server, "repair", "status")
    assert f"drain {site}" in human.stdout
    assert "done: " in human.stdout


def test_a_drained_site_is_removed(server: Server, drained: Drained):
    assert ok(admin(server, "site", "remove", drained.site, "--json")) == {"removed": drained.site}
    assert drained.site not in shard_counts(server)
