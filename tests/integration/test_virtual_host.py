"""Virtual-host style addressing (``<bucket>.<domain>``) with a configured domain."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from support.server import Server, running_server

DOMAIN = "s3.andromede.test"


@pytest.fixture
def resolve_test_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve *.s3.andromede.test to loopback in this process (no DNS needed)."""
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and (host == DOMAIN or host.endswith("." + DOMAIN)):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.fixture(scope="module")
def vhost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data: Path = tmp_path_factory.mktemp("vhost") / "data"
    with running_server(data, ANDROMEDE_DOMAIN=DOMAIN) as server:
        yield server


@pytest.mark.usefixtures("resolve_test_domain")
def test_virtual_host_and_path_style_see_the_same_objects(vhost_server: Server) -> None:
    virtual = boto3.client(
        "s3",
        endpoint_url=f"http://{DOMAIN}:{vhost_server.port}",
        aws_access_key_id=vhost_server.access_key,
        aws_secret_access_key=vhost_server.secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
    )
    virtual.create_bucket(Bucket="vhost-bucket")
    virtual.put_object(Bucket="vhost-bucket", Key="dir/file.txt", Body=b"virtual")
    path_style = vhost_server.client()
    body = path_style.get_object(Bucket="vhost-bucket", Key="dir/file.txt")["Body"]
    try:
        assert body.read() == b"virtual"
    finally:
        body.close()
    listed = virtual.list_objects_v2(Bucket="vhost-bucket")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/file.txt"]
    url = virtual.generate_presigned_url(
        "get_object", Params={"Bucket": "vhost-bucket", "Key": "dir/file.txt"}, ExpiresIn=60
    )
    assert url.startswith(f"http://vhost-bucket.{DOMAIN}:")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"virtual"
    except urllib.error.HTTPError as exc:
        raise AssertionError(exc.read()) from exc
