"""Fixtures for the ``MetadataStore`` contract tests: each store on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from andromede.core.models import Bucket, Tenant
from andromede.metadata.sql import SqlMetadataStore, open_store
from support.metadata import GRACE, T0, FakeClock
from support.postgres import create_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    server: str = request.getfixturevalue("postgres_url")
    return create_database(server, f"t_{uuid.uuid4().hex}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def store(database_url: str, clock: FakeClock) -> AsyncIterator[SqlMetadataStore]:
    opened = await open_store(database_url, garbage_grace=GRACE, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def bucket(store: SqlMetadataStore) -> str:
    await store.create_tenant(Tenant("acme", T0))
    await store.create_bucket(Bucket("photos", "acme", T0, "fr-par"))
    return "photos"
