"""Running the real command-line clients (aws CLI v2, rclone, s3cmd) in clean environments.

Each tool runs with a clean environment of its own (HOME and config files in a temporary
directory, no proxies, no ``AWS_*`` variables: rclone refuses ``AWS_CA_BUNDLE`` on a plain-HTTP
endpoint) and a tenant key of its own, so a tool's quirks never leak into another's test.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.server import Server

AWS = "/usr/bin/aws"  # Debian's v2; a pip-installed v1 may shadow `aws` on PATH.
MiB = 1024 * 1024


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


def make_aws_tool(server: Server, home: Path) -> Tool:
    """A tool set up for the aws CLI v2: its config and credentials files in ``home``."""
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


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout
