"""The real server driven by the aws CLI v2 (``s3`` and ``s3api`` commands).

Each tool runs with a clean environment and a tenant key of its own (see
``support.cli_tools``), so a tool's quirks never leak into another's test.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from support.cli_tools import (
    AWS,
    MiB,
    Tool,
    make_aws_tool,
    make_tree,
    ok,
    random_file,
    sha256,
    tree_digest,
)
from support.server import Server

# Under CI the aws CLI is installed by .ci/run: a missing one must fail, not skip.
pytestmark = [
    pytest.mark.skipif(
        not Path(AWS).exists() and os.environ.get("CI") != "true",
        reason="aws CLI v2 not installed at /usr/bin/aws",
    ),
]


@pytest.fixture(scope="module")
def server(cli_tools_server: Server) -> Server:
    """The server the command-line tool tests share (see ``cli_tools_server``)."""
    return cli_tools_server


# --- aws CLI v2 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Tool:
    return make_aws_tool(server, tmp_path_factory.mktemp("aws-home"))


def run_aws(
    tool: Tool, server: Server, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # The CLI prints local paths relative to its working directory.
    return tool.run(AWS, "--endpoint-url", server.endpoint, *args, cwd=cwd)


def test_aws_multipart_copy_round_trip(aws: Tool, server: Server, tmp_path: Path) -> None:
    bucket = "aws-cp"
    assert ok(run_aws(aws, server, "s3", "mb", f"s3://{bucket}")) == f"make_bucket: {bucket}\n"

    # 30 MiB: over the CLI's 8 MiB multipart threshold, so it uploads and downloads in parts.
    src = random_file(tmp_path / "big.bin", 30 * MiB)
    out = ok(
        run_aws(
            aws,
            server,
            "s3",
            "cp",
            "big.bin",
            f"s3://{bucket}/dir/big.bin",
            "--no-progress",
            cwd=tmp_path,
        )
    )
    assert out == f"upload: ./big.bin to s3://{bucket}/dir/big.bin\n"

    head = json.loads(
        ok(run_aws(aws, server, "s3api", "head-object", "--bucket", bucket, "--key", "dir/big.bin"))
    )
    assert head["ContentLength"] == 30 * MiB
    # A multipart ETag: MD5 of the part MD5s, dash, part count (8 MiB parts → 4).
    assert head["ETag"].strip('"').endswith("-4")

    listing = ok(run_aws(aws, server, "s3", "ls", f"s3://{bucket}/dir/"))
    assert listing.split()[-2:] == [str(30 * MiB), "big.bin"]
    assert ok(run_aws(aws, server, "s3", "ls")).split()[-1] == bucket

    dest = tmp_path / "back.bin"
    out = ok(
        run_aws(
            aws,
            server,
            "s3",
            "cp",
            f"s3://{bucket}/dir/big.bin",
            "back.bin",
            "--no-progress",
            cwd=tmp_path,
        )
    )
    assert out == f"download: s3://{bucket}/dir/big.bin to ./back.bin\n"
    assert sha256(dest) == sha256(src)

    ok(run_aws(aws, server, "s3", "rm", f"s3://{bucket}/dir/big.bin"))
    assert ok(run_aws(aws, server, "s3", "rb", f"s3://{bucket}")) == f"remove_bucket: {bucket}\n"
    assert bucket not in ok(run_aws(aws, server, "s3", "ls"))


def test_aws_sync_tree_both_ways(aws: Tool, server: Server, tmp_path: Path) -> None:
    bucket = "aws-sync"
    ok(run_aws(aws, server, "s3", "mb", f"s3://{bucket}"))
    expected = make_tree(tmp_path / "up")

    out = ok(
        run_aws(
            aws, server, "s3", "sync", str(tmp_path / "up"), f"s3://{bucket}/tree", "--no-progress"
        )
    )
    assert out.count("upload: ") == len(expected)
    # Nothing changed: a second sync has nothing to do.
    assert (
        ok(
            run_aws(
                aws,
                server,
                "s3",
                "sync",
                str(tmp_path / "up"),
                f"s3://{bucket}/tree",
                "--no-progress",
            )
        )
        == ""
    )

    listing = ok(run_aws(aws, server, "s3", "ls", "--recursive", f"s3://{bucket}/"))
    assert "tree/unicodé/Ωmega ☃.txt" in listing
    assert "tree/données/été 2024/rapport final.csv" in listing

    ok(
        run_aws(
            aws,
            server,
            "s3",
            "sync",
            f"s3://{bucket}/tree",
            str(tmp_path / "down"),
            "--no-progress",
        )
    )
    assert tree_digest(tmp_path / "down") == expected

    out = ok(run_aws(aws, server, "s3", "rm", "--recursive", f"s3://{bucket}/tree"))
    assert out.count("delete: ") == len(expected)
    assert ok(run_aws(aws, server, "s3", "ls", "--recursive", f"s3://{bucket}/")) == ""
    ok(run_aws(aws, server, "s3", "rb", f"s3://{bucket}"))


def test_aws_s3api_tagging_and_presign(aws: Tool, server: Server, tmp_path: Path) -> None:
    bucket = "aws-api"
    ok(run_aws(aws, server, "s3", "mb", f"s3://{bucket}"))
    src = tmp_path / "note.txt"
    src.write_bytes(b"presigned hello\n")
    ok(
        run_aws(
            aws,
            server,
            "s3",
            "cp",
            str(src),
            f"s3://{bucket}/notes/note.txt",
            "--content-type",
            "text/plain",
            "--metadata",
            "owner=ci",
        )
    )

    head = json.loads(
        ok(
            run_aws(
                aws, server, "s3api", "head-object", "--bucket", bucket, "--key", "notes/note.txt"
            )
        )
    )
    assert head["ContentLength"] == len(src.read_bytes())
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"owner": "ci"}
    assert head["ETag"] == f'"{hashlib.md5(src.read_bytes()).hexdigest()}"'  # noqa: S324

    missing = run_aws(aws, server, "s3api", "head-object", "--bucket", bucket, "--key", "nope")
    assert missing.returncode == 254
    assert "Not Found" in missing.stderr

    tagging = json.dumps(
        {"TagSet": [{"Key": "project", "Value": "andromède"}, {"Key": "env", "Value": "ci"}]}
    )
    ok(
        run_aws(
            aws,
            server,
            "s3api",
            "put-object-tagging",
            "--bucket",
            bucket,
            "--key",
            "notes/note.txt",
            "--tagging",
            tagging,
        )
    )
    tags = json.loads(
        ok(
            run_aws(
                aws,
                server,
                "s3api",
                "get-object-tagging",
                "--bucket",
                bucket,
                "--key",
                "notes/note.txt",
            )
        )
    )
    assert sorted((t["Key"], t["Value"]) for t in tags["TagSet"]) == [
        ("env", "ci"),
        ("project", "andromède"),
    ]

    url = ok(
        run_aws(
            aws, server, "s3", "presign", f"s3://{bucket}/notes/note.txt", "--expires-in", "300"
        )
    ).strip()
    assert url.startswith(f"{server.endpoint}/{bucket}/notes/note.txt?")
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.read() == src.read_bytes()

    ok(run_aws(aws, server, "s3", "rb", f"s3://{bucket}", "--force"))


def test_aws_stream_server_side_copy_and_pages(aws: Tool, server: Server, tmp_path: Path) -> None:
    ok(run_aws(aws, server, "s3", "mb", "s3://aws-stream"))
    ok(run_aws(aws, server, "s3", "mb", "s3://aws-copy"))

    # From stdin, of unknown length until the end: the CLI always uses multipart for that.
    data = os.urandom(12 * MiB)
    up = subprocess.run(
        [AWS, "--endpoint-url", server.endpoint, "s3", "cp", "-", "s3://aws-stream/piped.bin"],
        input=data,
        capture_output=True,
        env=aws.env,
        timeout=120,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    down = subprocess.run(
        [AWS, "--endpoint-url", server.endpoint, "s3", "cp", "s3://aws-stream/piped.bin", "-"],
        capture_output=True,
        env=aws.env,
        timeout=120,
        check=False,
    )
    assert down.returncode == 0, down.stderr
    assert hashlib.sha256(down.stdout).digest() == hashlib.sha256(data).digest()

    # Bucket to bucket, then a rename: server-side copies (12 MiB: UploadPartCopy in parts).
    out = ok(
        run_aws(
            aws,
            server,
            "s3",
            "cp",
            "s3://aws-stream/piped.bin",
            "s3://aws-copy/copied.bin",
            "--no-progress",
        )
    )
    assert out == "copy: s3://aws-stream/piped.bin to s3://aws-copy/copied.bin\n"
    out = ok(
        run_aws(
            aws,
            server,
            "s3",
            "mv",
            "s3://aws-copy/copied.bin",
            "s3://aws-copy/moved.bin",
            "--no-progress",
        )
    )
    assert out == "move: s3://aws-copy/copied.bin to s3://aws-copy/moved.bin\n"
    head = json.loads(
        ok(
            run_aws(
                aws, server, "s3api", "head-object", "--bucket", "aws-copy", "--key", "moved.bin"
            )
        )
    )
    assert head["ContentLength"] == len(data)
    ok(
        run_aws(
            aws,
            server,
            "s3",
            "cp",
            "s3://aws-copy/moved.bin",
            "moved.bin",
            "--no-progress",
            cwd=tmp_path,
        )
    )
    assert (tmp_path / "moved.bin").read_bytes() == data

    # Listing in pages of two walks continuation tokens.
    for i in range(5):
        ok(
            run_aws(
                aws,
                server,
                "s3api",
                "put-object",
                "--bucket",
                "aws-copy",
                "--key",
                f"pages/{i}.txt",
            )
        )
    listing = ok(
        run_aws(aws, server, "s3", "ls", "--recursive", "--page-size", "2", "s3://aws-copy/")
    )
    assert [line.split()[-1] for line in listing.splitlines()] == [
        "moved.bin",
        *(f"pages/{i}.txt" for i in range(5)),
    ]

    out = ok(run_aws(aws, server, "s3", "rb", "s3://aws-copy", "--force"))
    assert out.count("delete: ") == 6
    assert out.endswith("remove_bucket: aws-copy\n")
    ok(run_aws(aws, server, "s3", "rb", "s3://aws-stream", "--force"))
    missing = run_aws(aws, server, "s3", "ls", "s3://aws-copy")
    assert missing.returncode == 254
    assert "NoSuchBucket" in missing.stderr
