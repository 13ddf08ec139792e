"""Residency through the tools people already use: the aws CLI and rclone create an FR-only
bucket, upload (multipart included) and read back; no byte reaches the BE or US sites."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_tools import (
    AWS,
    MiB,
    Tool,
    make_aws_tool,
    make_tool,
    make_tree,
    ok,
    random_file,
    sha256,
)
from support.cli_tools import tree_digest as digest_tree
from support.placement import SITES, Cluster, cluster

JURISDICTION = {name: j for name, j, _ in SITES}
UNDER_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def fr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("placement-clients")) as made:
        yield made


def assert_in_fr(fr: Cluster, bucket: str, keys: int) -> None:
    report = fr.report(bucket)
    assert len(report["objects"]) == keys
    assert set(report["totals"]) == {"FR"}
    for entry in report["objects"]:
        for segment in entry["segments"]:
            sites = [s["site"] for s in segment["shards"]]
            assert len(set(sites)) == 3
            assert {JURISDICTION[s] for s in sites} == {"FR"}
    assert fr.files("be-a") == fr.files("us-a") == []


@pytest.mark.skipif(not Path(AWS).exists() and not UNDER_CI, reason="aws CLI v2 not installed")
def test_aws_cli_into_an_fr_bucket(fr: Cluster, tmp_path: Path) -> None:
    tool = make_aws_tool(fr.server, tmp_path / "aws-home")

    def aws(*args: str) -> str:
        return ok(tool.run(AWS, "--endpoint-url", fr.server.endpoint, *args))

    aws(
        "s3api",
        "create-bucket",
        "--bucket",
        "fr-aws",
        "--create-bucket-configuration",
        "LocationConstraint=fr-only",
    )
    assert '"fr-only"' in aws("s3api", "get-bucket-location", "--bucket", "fr-aws")
    big = random_file(tmp_path / "big.bin", 20 * MiB)  # the CLI uploads it in 8 MiB parts
    aws("s3", "cp", str(big), "s3://fr-aws/big.bin")
    tree = tmp_path / "tree"
    expected = make_tree(tree)
    aws("s3", "sync", str(tree), "s3://fr-aws/tree")
    aws("s3", "cp", "s3://fr-aws/big.bin", str(tmp_path / "back.bin"))
    assert sha256(tmp_path / "back.bin") == sha256(big)
    aws("s3", "sync", "s3://fr-aws/tree", str(tmp_path / "down"))
    assert digest_tree(tmp_path / "down") == expected
    assert_in_fr(fr, "fr-aws", 1 + len(expected))


@pytest.mark.skipif(shutil.which("rclone") is None and not UNDER_CI, reason="rclone not installed")
def test_rclone_into_an_fr_bucket(fr: Cluster, tmp_path: Path) -> None:
    tool: Tool = make_tool(fr.server, tmp_path / "rclone-home")
    config = tool.home / "rclone.conf"
    config.write_text(
        "[andromede]\ntype = s3\nprovider = Other\nenv_auth = false\n"
        f"access_key_id = {tool.access_key}\nsecret_access_key = {tool.secret_key}\n"
        f"endpoint = {fr.server.endpoint}\nregion = us-east-1\n"
        "location_constraint = fr-only\nforce_path_style = true\n"
    )
    tool.env["RCLONE_CONFIG"] = str(config)

    def rclone(*args: str) -> str:
        return ok(tool.run("rclone", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", *args))

    rclone("mkdir", "andromede:fr-rclone")
    src = tmp_path / "src"
    expected = make_tree(src)
    rclone("sync", str(src), "andromede:fr-rclone/tree")
    rclone("check", str(src), "andromede:fr-rclone/tree")
    rclone("copy", "andromede:fr-rclone/tree", str(tmp_path / "down"))
    assert digest_tree(tmp_path / "down") == expected
    assert (
        fr.server.client(tool.access_key, tool.secret_key).get_bucket_location(Bucket="fr-rclone")[
            "LocationConstraint"
        ]
        == "fr-only"
    )
    assert_in_fr(fr, "fr-rclone", len(expected))
