"""Fixtures for the integration suites: one real server per session, a bucket per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from support.server import Server, running_server
from support.sigv4 import Signer
from support.sse import admin, default_key_arn, foreign_key, kms_key, tenant

# The SSE suites' module-scoped fixtures (a module's own ``tenant`` fixture takes precedence).
__all__ = ["admin", "default_key_arn", "foreign_key", "kms_key", "tenant"]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real ``andromede serve`` process with two workers, shared by the session."""
    with running_server(tmp_path_factory.mktemp("integration") / "data", workers=2) as srv:
        yield srv


@pytest.fixture(scope="session")
def s3(server: Server) -> Any:
    """A boto3 client holding the root credentials."""
    return server.client()


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh, empty bucket with a unique name."""
    name = "it-" + secrets.token_hex(8)
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def signer(server: Server) -> Signer:
    """The root key's signer."""
    return Signer(server, server.access_key, server.secret_key)


@pytest.fixture(scope="session")
def cli_tools_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of their own for the command-line tool tests, started once for their modules."""
    with running_server(tmp_path_factory.mktemp("cli-tools") / "data", workers=2) as srv:
        yield srv
