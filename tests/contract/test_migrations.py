"""The packaged Alembic migrations: they build the schema ``schema.py`` describes, on both
backends, once, even when several processes start together."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql

from andromede.core.models import Tenant
from andromede.metadata import schema
from andromede.metadata.migrate import (
    current_revision,
    head_revision,
    sync_engine,
    sync_url,
    upgrade,
)
from andromede.metadata.sql import open_store
from support.postgres import create_database

TABLES = {
    "tenants",
    "access_keys",
    "buckets",
    "objects",
    "object_blobs",
    "uploads",
    "parts",
    "garbage",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    server: str = request.getfixturevalue("postgres_url")
    return create_database(server, f"m_{uuid.uuid4().hex}")


def table_names(database_url: str) -> set[str]:
    engine = sync_engine(sync_url(database_url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_builds_the_schema(database_url: str) -> None:
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()
    assert table_names(database_url) == TABLES | {"alembic_version"}


def test_schema_module_matches_the_migrations(database_url: str) -> None:
    upgrade(database_url)
    engine = sync_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, schema.metadata) == []
    finally:
        engine.dispose()


async def test_upgrade_again_is_a_no_op(database_url: str) -> None:
    upgrade(database_url)
    store = await open_store(database_url)  # upgrades a second time
    try:
        await store.create_tenant(Tenant("acme", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)))
    finally:
        await store.close()
    await asyncio.to_thread(upgrade, database_url)
    assert current_revision(database_url) == head_revision()
    store = await open_store(database_url)
    try:
        assert [t.name for t in await store.list_tenants()] == ["acme"]
    finally:
        await store.close()


async def test_concurrent_upgrades_from_several_processes(database_url: str) -> None:
    code = "import sys; from andromede.metadata.migrate import upgrade; upgrade(sys.argv[1])"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, database_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(4)
    ]
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()
    assert current_revision(database_url) == head_revision()
    assert table_names(database_url) == TABLES | {"alembic_version"}


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        upgrade("sqlite+aiosqlite:///:memory:")


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        upgrade("mysql://localhost/db")


@pytest.mark.postgres
def test_postgres_names_collate_in_byte_order(postgres_url: str) -> None:
    # compare_metadata does not compare collations: check them in the catalogue.
    database_url = create_database(postgres_url, f"m_{uuid.uuid4().hex}")
    upgrade(database_url)
    expected = {
        (table.name, column.name)
        for table in schema.metadata.tables.values()
        for column in table.columns
        if getattr(column.type.dialect_impl(postgresql.dialect()), "collation", None) == "C"
    }
    assert ("objects", "key") in expected
    engine = sync_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND collation_name = 'C'"
                )
            ).all()
    finally:
        engine.dispose()
    assert {(row.table_name, row.column_name) for row in found} == expected
