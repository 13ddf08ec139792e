"""``andromede admin`` against a real server, the admin API's HTTP surface, and first start."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from support.server import Server, free_port, running_server
from support.waiting import wait_until

ADMIN = "/_andromede/admin"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("admin-cli") / "data") as srv:
        yield srv


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any Andromède or AWS settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANDROMEDE_", "AWS_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(extra)
    return env


def andromede(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI without raising on failure."""
    return subprocess.run(
        [sys.executable, "-m", "andromede", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env if env is not None else clean_env(),
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def local(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on the server's machine: credentials and endpoint from the data dir."""
    return andromede(*args, "--data-dir", str(server.data_dir))


def test_tenant_create_and_list(server: Server) -> None:
    created = as_json(local(server, "admin", "tenant", "create", "acme-corp", "--json"))
    assert created["name"] == "acme-corp"
    assert created["created"]

    names = [t["name"] for t in as_json(local(server, "admin", "tenant", "list", "--json"))]
    assert "acme-corp" in names

    table = local(server, "admin", "tenant", "list")
    assert table.returncode == 0
    assert "acme-corp" in table.stdout


def test_duplicate_tenant_is_refused_clearly(server: Server) -> None:
    as_json(local(server, "admin", "tenant", "create", "dup-tenant", "--json"))
    again = local(server, "admin", "tenant", "create", "dup-tenant", "--json")
    assert again.returncode != 0
    assert again.stdout == ""
    assert "TenantAlreadyExists" in again.stderr
    assert "already exists" in again.stderr


@pytest.mark.parametrize("name", ["Bad_Name!", "UPPER", "x" * 64, ""])
def test_invalid_tenant_name(server: Server, name: str) -> None:
    result = local(server, "admin", "tenant", "create", name, "--json")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "InvalidArgument" in result.stderr
    assert "Tenant names" in result.stderr


def test_key_create_list_delete(server: Server) -> None:
    as_json(local(server, "admin", "tenant", "create", "keys-tenant", "--json"))
    key = as_json(
        local(
            server,
            "admin",
            "key",
            "create",
            "--tenant",
            "keys-tenant",
            "--description",
            "ci",
            "--json",
        )
    )
    assert key["tenant"] == "keys-tenant"
    assert key["description"] == "ci"
    assert key["is_operator"] is False
    assert key["access_key_id"]
    assert key["secret_key"]

    listed = as_json(local(server, "admin", "key", "list", "--tenant", "keys-tenant", "--json"))
    assert [k["access_key_id"] for k in listed] == [key["access_key_id"]]
    assert all("secret_key" not in k for k in listed)
    everything = as_json(local(server, "admin", "key", "list", "--json"))
    assert any(k["is_operator"] and k["access_key_id"] == server.access_key for k in everything)

    deleted = as_json(local(server, "admin", "key", "delete", key["access_key_id"], "--json"))
    assert deleted == {"deleted": key["access_key_id"]}
    assert as_json(local(server, "admin", "key", "list", "--tenant", "keys-tenant", "--json")) == []


def test_key_for_unknown_tenant(server: Server) -> None:
    result = local(server, "admin", "key", "create", "--tenant", "no-such-tenant", "--json")
    assert result.returncode != 0
    assert "NoSuchTenant" in result.stderr


def test_delete_unknown_key(server: Server) -> None:
    result = local(server, "admin", "key", "delete", "AKNOSUCHKEY000000000", "--json")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "NoSuchAccessKey" in result.stderr


def test_whoami_operator(server: Server) -> None:
    me = as_json(local(server, "admin", "whoami", "--json"))
    assert me == {"access_key_id": server.access_key, "tenant": "default", "is_operator": True}


def test_env_credentials_and_tenant_key_limits(server: Server) -> None:
    tenant, access, secret = server.new_tenant()
    env = clean_env(ANDROMEDE_ACCESS_KEY=access, ANDROMEDE_SECRET_KEY=secret)
    remote = ("--endpoint", server.endpoint)

    me = as_json(andromede("admin", "whoami", *remote, "--json", env=env))
    assert me == {"access_key_id": access, "tenant": tenant, "is_operator": False}

    # The endpoint can come from the environment too.
    env_with_endpoint = {**env, "ANDROMEDE_ENDPOINT": server.endpoint}
    assert as_json(andromede("admin", "whoami", "--json", env=env_with_endpoint)) == me

    refused = andromede("admin", "tenant", "create", "t-evil", *remote, "--json", env=env)
    assert refused.returncode != 0
    assert "AccessDenied" in refused.stderr
    tenants = as_json(local(server, "admin", "tenant", "list", "--json"))
    assert "t-evil" not in [t["name"] for t in tenants]

    # A tenant's key manages its own tenant's keys, and sees no one else's.
    own = as_json(andromede("admin", "key", "list", *remote, "--json", env=env))
    assert {k["tenant"] for k in own} == {tenant}
    other = andromede("admin", "key", "create", "--tenant", "default", *remote, "--json", env=env)
    assert other.returncode != 0
    assert "AccessDenied" in other.stderr


def test_wrong_or_missing_credentials(server: Server) -> None:
    bad = clean_env(ANDROMEDE_ACCESS_KEY=server.access_key, ANDROMEDE_SECRET_KEY="wrong")
    result = andromede("admin", "whoami", "--endpoint", server.endpoint, "--json", env=bad)
    assert result.returncode != 0
    assert "SignatureDoesNotMatch" in result.stderr

    result = andromede("admin", "whoami", "--endpoint", server.endpoint, "--json")
    assert result.returncode != 0
    assert "ANDROMEDE_ACCESS_KEY" in result.stderr


def test_openapi_document_and_docs(server: Server) -> None:
    with urllib.request.urlopen(server.endpoint + ADMIN + "/openapi.json", timeout=10) as resp:
        assert resp.status == 200
        spec = json.loads(resp.read())
    assert spec["info"]["title"] == "Andromède admin API"
    assert set(spec["paths"]) >= {
        "/v1/whoami",
        "/v1/tenants",
        "/v1/keys",
        "/v1/keys/{access_key_id}",
    }
    assert set(spec["paths"]["/v1/tenants"]) == {"get", "post"}
    # The caller is a dependency, never a parameter a client would have to send.
    for operations in spec["paths"].values():
        for operation in operations.values():
            assert "caller" not in {p["name"] for p in operation.get("parameters", [])}
    assert spec["servers"] == [{"url": ADMIN}]

    with urllib.request.urlopen(server.endpoint + ADMIN + "/docs", timeout=10) as resp:
        assert resp.status == 200
        assert f"{ADMIN}/openapi.json" in resp.read().decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/tenants"),
        ("GET", "/v1/whoami"),
        ("POST", "/v1/tenants"),
        ("DELETE", "/v1/keys/AKX"),
    ],
)
def test_unsigned_request_is_refused(server: Server, method: str, path: str) -> None:
    request = urllib.request.Request(
        server.endpoint + ADMIN + path,
        method=method,
        data=b'{"name": "anon"}' if method == "POST" else None,
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 403
    assert json.loads(info.value.read())["code"] == "AccessDenied"


# --- first start -------------------------------------------------------------------------


@contextlib.contextmanager
def serve(data_dir: Path, port: int, stdout: Path) -> Iterator[None]:
    """``andromede serve`` with no root credentials in the environment."""
    with open(stdout, "wb") as out, open(stdout.with_suffix(".err"), "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "andromede",
                "serve",
                "--data-dir",
                str(data_dir),
                "--address",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
            ],
            stdout=out,
            stderr=err,
            env=clean_env(),
            start_new_session=True,
        )

    def healthy() -> bool:
        assert proc.poll() is None, stdout.with_suffix(".err").read_text()
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/_andromede/health", timeout=1
            ) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    try:
        wait_until(healthy, 30, 0.1, "the server answering its health check")
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_first_start_prints_credentials_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"

    with serve(data_dir, port, tmp_path / "first.out"):
        printed = (tmp_path / "first.out").read_text()
        access = re.search(r"access key: (\S+)", printed)
        secret = re.search(r"secret key: (\S+)", printed)
        assert access, printed
        assert secret, printed
        access_key, secret_key = access.group(1), secret.group(1)
        assert f"aws configure set aws_access_key_id {access_key}" in printed
        assert f"aws configure set aws_secret_access_key {secret_key}" in printed
        assert f"--endpoint-url {endpoint}" in printed

        creds_file = data_dir / "root-credentials.json"
        assert creds_file.stat().st_mode & 0o777 == 0o600
        # The metadata holds key secrets: nothing in the data dir is readable by others.
        assert (data_dir / "metadata.db").stat().st_mode & 0o077 == 0
        assert (data_dir / "sites").stat().st_mode & 0o077 == 0
        stored = json.loads(creds_file.read_text())
        assert (stored["access_key_id"], stored["secret_key"]) == (access_key, secret_key)

        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="first-bucket")
        s3.put_object(Bucket="first-bucket", Key="hello.txt", Body=b"hello")
        assert s3.get_object(Bucket="first-bucket", Key="hello.txt")["Body"].read() == b"hello"

    with serve(data_dir, port, tmp_path / "second.out"):
        again = (tmp_path / "second.out").read_text()
        assert secret_key not in again
        assert secret_key not in (tmp_path / "second.err").read_text()
        assert s3.get_object(Bucket="first-bucket", Key="hello.txt")["Body"].read() == b"hello"
