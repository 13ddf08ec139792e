"""The real server driven by the real command-line clients: aws CLI v2, rclone, s3cmd.

Each tool runs with a clean environment of its own (HOME and config files in a temporary
directory, no proxies, no ``AWS_*`` variables: rclone refuses ``AWS_CA_BUNDLE`` on a plain-HTTP
endpoint) and a tenant key of its own, so a tool's quirks never leak into another's test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.server import Server, running_server

AWS = "/usr/bin/aws"  # Debian's v2; a pip-installed v1 may shadow `aws` on PATH.
MiB = 1024 * 1024

pytestmark = [
    pytest.mark.skipif(not Path(AWS).exists(), reason="aws CLI v2 not installed at /usr/bin/aws"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("cli-tools") / "data", workers=2) as srv:
        yield srv


@dataclass
class Tool:
    """How to run one command-line client: its environment and credentials."""

    home: Path
    env: dict[str, str]
    access_key: str
    secret_key: str

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=cwd or self.home,
            check=False,
        )


def make_tool(server: Server, home: Path) -> Tool:
    """A fresh HOME and a fresh tenant key; an environment without AWS or proxy settings."""
    home.mkdir(parents=True, exist_ok=True)
    _, access, secret = server.new_tenant()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "ANDROMEDE_", "RCLONE_", "S3CMD"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), LC_ALL="C.UTF-8")
    return Tool(home, env, access, secret)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def make_tree(root: Path) -> dict[str, str]:
    """A small tree with nested directories, spaces and non-ASCII names: {relpath: sha256}."""
    files = {
        "top.txt": b"top level\n",
        "empty.bin": b"",
        "a/b/c/deep.txt": b"deep\n" * 100,
        "a/sibling.json": b'{"k": 1}\n',
        "with space/file name.txt": b"spaces\n",
        "unicodé/Ωmega ☃.txt": "snowman ☃\n".encode(),
        "données/été 2024/rapport final.csv": b"a,b\n1,2\n",
        "bin/random.dat": os.urandom(300_000),
    }
    # A minute old: S3's LastModified has whole seconds (as AWS's has), and `aws s3 sync`
    # uploads again a file whose mtime is later than that, as one written in the same second is.
    past = time.time() - 60
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        os.utime(root / rel, (past, past))
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


# --- aws CLI v2 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Tool:
    home = tmp_path_factory.mktemp("aws-home")
    tool = make_tool(server, home)
    (home / "config").write_text("[default]\nregion = us-east-1\noutput = json\n")
    (home / "credentials").write_text(
        f"[default]\naws_access_key_id = {tool.access_key}\n"
        f"aws_secret_access_key = {tool.secret_key}\n"
    )
    tool.env.update(
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )
    return tool


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
