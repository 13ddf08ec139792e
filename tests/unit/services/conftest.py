"""Every service test gets the real services over SQLite in its temp dir and memory sites
(``support.services``): no process, no socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.services import ALICE, ServiceStack, build_services


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
