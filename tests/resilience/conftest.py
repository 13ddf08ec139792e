"""Fixtures for the resilience suites: servers that tests kill and restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.resilience import new_server
from support.server import Server


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory of unstarted servers in the test's tmp dir; every one is killed at teardown."""
    made: list[Server] = []

    def make(workers: int = 1, **env: str) -> Server:
        server = new_server(tmp_path / f"data{len(made)}", workers, **env)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop(kill=True)
