"""The real server driven by rclone and s3cmd.

Each tool runs with a clean environment and a tenant key of its own (see
``support.cli_tools``), so a tool's quirks never leak into another's test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.cli_tools import (
    MiB,
    Tool,
    make_tool,
    make_tree,
    ok,
    random_file,
    sha256,
    tree_digest,
)
from support.server import Server

_MISSING = [tool for tool in ("rclone", "s3cmd") if shutil.which(tool) is None]
# Under CI the tools are installed by .ci/run: a missing one must fail, not skip.
pytestmark = [
    pytest.mark.skipif(
        bool(_MISSING) and os.environ.get("CI") != "true",
        reason=f"not installed: {', '.join(_MISSING)}",
    ),
]


@pytest.fixture(scope="module")
def server(cli_tools_server: Server) -> Server:
    """The server the command-line tool tests share (see ``cli_tools_server``)."""
    return cli_tools_server


# --- rclone --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rclone(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Tool:
    home = tmp_path_factory.mktemp("rclone-home")
    tool = make_tool(server, home)
    config = home / "rclone.conf"
    config.write_text(
        "[andromede]\n"
        "type = s3\n"
        "provider = Other\n"
        "env_auth = false\n"
        f"access_key_id = {tool.access_key}\n"
        f"secret_access_key = {tool.secret_key}\n"
        f"endpoint = {server.endpoint}\n"
        "region = us-east-1\n"
        "force_path_style = true\n"
    )
    tool.env["RCLONE_CONFIG"] = str(config)
    return tool


def run_rclone(tool: Tool, *args: str) -> subprocess.CompletedProcess[str]:
    # 5 MiB parts, so the 20 MiB file goes up as a four-part multipart upload.
    return tool.run(
        "rclone",
        "--s3-upload-cutoff",
        "5M",
        "--s3-chunk-size",
        "5M",
        "--low-level-retries",
        "1",
        "--retries",
        "1",
        *args,
    )


@pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone not installed")
def test_rclone_sync_check_and_back(rclone: Tool, server: Server, tmp_path: Path) -> None:
    remote = "andromede:rclone-sync"
    ok(run_rclone(rclone, "mkdir", remote))
    assert "rclone-sync" in ok(run_rclone(rclone, "lsd", "andromede:"))

    src = tmp_path / "src"
    expected = make_tree(src)
    big = random_file(src / "media/big video.bin", 20 * MiB)
    expected["media/big video.bin"] = sha256(big)

    ok(run_rclone(rclone, "sync", str(src), f"{remote}/tree"))
    head = server.client(rclone.access_key, rclone.secret_key).head_object(
        Bucket="rclone-sync", Key="tree/media/big video.bin"
    )
    assert head["ETag"].strip('"').endswith("-4")  # it did go up in parts
    # rclone keeps the whole file's MD5 in metadata, since a multipart ETag is not one.
    assert head["Metadata"]["md5chksum"]
    check = run_rclone(rclone, "check", str(src), f"{remote}/tree")
    ok(check)
    assert "0 differences found" in check.stderr
    assert f"{len(expected)} matching files" in check.stderr

    entries = json.loads(
        ok(run_rclone(rclone, "lsjson", "--recursive", "--files-only", f"{remote}/tree"))
    )
    by_path = {e["Path"]: e for e in entries}
    assert set(by_path) == set(expected)
    assert by_path["media/big video.bin"]["Size"] == 20 * MiB
    assert by_path["unicodé/Ωmega ☃.txt"]["Size"] == len("snowman ☃\n".encode())

    ok(run_rclone(rclone, "copyto", f"{remote}/tree/media/big video.bin", str(tmp_path / "big")))
    assert sha256(tmp_path / "big") == expected["media/big video.bin"]
    ok(run_rclone(rclone, "copy", f"{remote}/tree", str(tmp_path / "down")))
    assert tree_digest(tmp_path / "down") == expected

    # Remote to remote: server-side copies, and a move that copies then deletes.
    ok(
        run_rclone(
            rclone, "copyto", f"{remote}/tree/unicodé/Ωmega ☃.txt", f"{remote}/copies/c 1.txt"
        )
    )
    assert ok(run_rclone(rclone, "cat", f"{remote}/copies/c 1.txt")) == "snowman ☃\n"
    ok(run_rclone(rclone, "moveto", f"{remote}/copies/c 1.txt", f"{remote}/copies/moved.txt"))
    copies = json.loads(ok(run_rclone(rclone, "lsjson", f"{remote}/copies")))
    assert [e["Path"] for e in copies] == ["moved.txt"]

    ok(run_rclone(rclone, "deletefile", f"{remote}/tree/top.txt"))
    remaining = json.loads(ok(run_rclone(rclone, "lsjson", "-R", "--files-only", f"{remote}/tree")))
    assert {e["Path"] for e in remaining} == set(expected) - {"top.txt"}
    differs = run_rclone(rclone, "check", str(src), f"{remote}/tree")
    assert differs.returncode == 1
    assert "1 differences found" in differs.stderr

    ok(run_rclone(rclone, "purge", remote))
    assert "rclone-sync" not in ok(run_rclone(rclone, "lsd", "andromede:"))


# --- s3cmd ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3cmd(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Tool:
    home = tmp_path_factory.mktemp("s3cmd-home")
    tool = make_tool(server, home)
    host = server.endpoint.removeprefix("http://")
    (home / ".s3cfg").write_text(
        "[default]\n"
        f"access_key = {tool.access_key}\n"
        f"secret_key = {tool.secret_key}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"  # no %(bucket)s: path-style requests
        "use_https = False\n"
        "signature_v2 = False\n"
        "bucket_location = us-east-1\n"
        "progress_meter = False\n"
    )
    return tool


def run_s3cmd(tool: Tool, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return tool.run("s3cmd", "-c", str(tool.home / ".s3cfg"), *args, cwd=cwd)


@pytest.mark.skipif(shutil.which("s3cmd") is None, reason="s3cmd not installed")
def test_s3cmd_round_trip(s3cmd: Tool, server: Server, tmp_path: Path) -> None:
    bucket = "s3cmd-bucket"
    out = ok(run_s3cmd(s3cmd, "mb", f"s3://{bucket}"))
    assert out.strip() == f"Bucket 's3://{bucket}/' created"

    # s3cmd's parts are 15 MB by default; 5 MB parts make the 20 MiB file a 5-part upload.
    src = random_file(tmp_path / "payload.bin", 20 * MiB)
    out = ok(
        run_s3cmd(
            s3cmd, "put", "--multipart-chunk-size-mb=5", str(src), f"s3://{bucket}/data/payload.bin"
        )
    )
    # With the progress meter off s3cmd prints no per-part lines: the ETag tells the parts.
    assert out.startswith(f"upload: '{src}' -> 's3://{bucket}/data/payload.bin' (20971520 bytes")
    head = server.client(s3cmd.access_key, s3cmd.secret_key).head_object(
        Bucket=bucket, Key="data/payload.bin"
    )
    assert head["ETag"].strip('"').endswith("-4")
    small = tmp_path / "small file.txt"
    small.write_bytes(b"small\n")
    ok(run_s3cmd(s3cmd, "put", str(small), f"s3://{bucket}/data/small file.txt"))

    listing = ok(run_s3cmd(s3cmd, "ls", f"s3://{bucket}/data/")).splitlines()
    assert [line.split()[2] for line in listing] == [str(20 * MiB), "6"]
    assert listing[0].endswith(f"s3://{bucket}/data/payload.bin")
    assert listing[1].endswith(f"s3://{bucket}/data/small file.txt")
    assert f"DIR  s3://{bucket}/data/" in ok(run_s3cmd(s3cmd, "ls", f"s3://{bucket}"))

    info = ok(run_s3cmd(s3cmd, "info", f"s3://{bucket}/data/payload.bin"))
    fields = {
        k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines()[1:])
    }
    assert fields["File size"] == str(20 * MiB)
    # s3cmd keeps the whole file's MD5 in its attrs metadata and shows it for multipart objects.
    assert fields["MD5 sum"] == hashlib.md5(src.read_bytes()).hexdigest()  # noqa: S324

    dest = tmp_path / "back.bin"
    ok(run_s3cmd(s3cmd, "get", f"s3://{bucket}/data/payload.bin", str(dest)))
    assert sha256(dest) == sha256(src)

    # A bucket with objects in it cannot be removed.
    not_empty = run_s3cmd(s3cmd, "rb", f"s3://{bucket}")
    assert not_empty.returncode != 0
    assert "BucketNotEmpty" in not_empty.stderr

    out = ok(
        run_s3cmd(
            s3cmd, "del", f"s3://{bucket}/data/payload.bin", f"s3://{bucket}/data/small file.txt"
        )
    )
    assert out.count("delete: ") == 2
    assert ok(run_s3cmd(s3cmd, "ls", f"s3://{bucket}/data/")) == ""
    removed = ok(run_s3cmd(s3cmd, "rb", f"s3://{bucket}"))
    assert removed == f"Bucket 's3://{bucket}/' removed\n"
    assert bucket not in ok(run_s3cmd(s3cmd, "ls"))
