"""Every service test gets the real services over SQLite in its temp dir and memory sites
(``support.services``): no process, no socket."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from support.placement import REGIONS, SITES
from support.services import ALICE, ServiceStack, build_services


@pytest.fixture(autouse=True)
def no_process_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes these unit tests: nothing here may start a process or reach a socket."""

    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError("service tests start no process and open no connection")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[ServiceStack]:
    built = await build_services(tmp_path)
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def bucket(stack: ServiceStack) -> str:
    """A bucket of tenant ``acme`` in the default region (one copy on the ``local`` site)."""
    await stack.buckets.create(ALICE, "photos", None)
    return "photos"


@pytest.fixture
async def cluster(stack: ServiceStack) -> ServiceStack:
    """Six sites (four FR in four failure domains, one BE, one US), the regions fr-only
    (replicas:3 over 3 domains), fr-ec (ec:2+2 over 4) and fr-be (ec:3+2 over 4), and the
    buckets ``fr-data`` and ``fr-ec-data`` of tenant ``acme`` in the first two."""
    for name, code, domain in SITES:
        await stack.add_site(name, code, domain)
    for name, jurisdictions, redundancy, domains in REGIONS:
        await stack.add_region(name, jurisdictions, redundancy, domains)
    await stack.buckets.create(ALICE, "fr-data", "fr-only")
    await stack.buckets.create(ALICE, "fr-ec-data", "fr-ec")
    return stack
