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
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql

from andromede.core.keys import (
    BucketEncryption,
    EncryptionMode,
    KeyState,
    KeyVersion,
    KmsKey,
    ObjectEncryption,
    Sealing,
)
from andromede.core.models import (
    BlobRef,
    Bucket,
    Manifest,
    MultipartUpload,
    Part,
    Segment,
    Tenant,
)
from andromede.core.placement import Layout
from andromede.metadata import schema
from andromede.metadata.migrate import (
    MIGRATIONS_DIR,
    SchemaTooNew,
    current_revision,
    head_revision,
    packaged_head,
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
    "object_versions",
    "object_blobs",
    "uploads",
    "parts",
    "garbage",
    "kms_keys",
}
PLACEMENT_TABLES = {"sites", "regions", "repairs", "job_state"}
LEASE_TABLES = {"job_leases", "schema_compat"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    server: str = request.getfixturevalue("postgres_url")
    return create_database(server, f"m_{uuid.uuid4().hex}")


T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
# Columns revision 0002 adds to tables of 0001.
ENCRYPTION_COLUMNS = {("buckets", "encryption"), ("uploads", "encryption"), ("parts", "sealing")}


def table_names(database_url: str) -> set[str]:
    engine = sync_engine(sync_url(database_url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def column_names(database_url: str, table: str) -> set[str]:
    engine = sync_engine(sync_url(database_url))
    try:
        return {column["name"] for column in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def migrate(database_url: str, revision: str, *, down: bool = False) -> None:
    """Move the database to ``revision``: ``upgrade()`` only ever goes to the newest."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = sync_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def write_rows_of_0001(database_url: str) -> None:
    """One row in each table of 0001 (a format-1, plaintext manifest), as 0001 had them."""
    manifest = '{"format":1,"segments":[{"s":"site-a","b":"b1","n":10}]}'
    meta = {"system_meta": "{}", "user_meta": "{}", "tags": "{}", "storage_class": "STANDARD"}
    rows: list[tuple[sa.Table, dict[str, object]]] = [
        (schema.tenants, {"name": "acme", "created": T0}),
        (schema.buckets, {"name": "photos", "tenant": "acme", "created": T0, "location": "x"}),
        (
            schema.objects,
            {
                "bucket": "photos",
                "key": "k",
                "version_id": "v1",
                "size": 10,
                "etag": "e",
                "last_modified": T0,
                "content_type": "text/plain",
                "owner": "acme",
                "manifest": manifest,
                **meta,
            },
        ),
        (schema.object_blobs, {"site": "site-a", "blob_id": "b1", "bucket": "photos", "key": "k"}),
        (
            schema.uploads,
            {
                "upload_id": "u1",
                "bucket": "photos",
                "key": "big",
                "initiated": T0,
                "owner": "acme",
                "content_type": "",
                **meta,
            },
        ),
        (
            schema.parts,
            {
                "upload_id": "u1",
                "part_number": 1,
                "size": 5,
                "etag": "p",
                "last_modified": T0,
                "site": "site-a",
                "blob_id": "p1",
            },
        ),
    ]
    engine = sync_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            for table, values in rows:
                # Only the columns named here: those 0002 adds do not exist yet.
                conn.execute(table.insert().values(values))
    finally:
        engine.dispose()


def test_upgrade_builds_the_schema(database_url: str) -> None:
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()
    assert table_names(database_url) == TABLES | PLACEMENT_TABLES | LEASE_TABLES | {
        "alembic_version"
    }


def schema_differences(database_url: str) -> list[object]:
    """How the database differs from ``schema.py``."""
    engine = sync_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            differences: list[object] = compare_metadata(context, schema.metadata)
            return differences
    finally:
        engine.dispose()


def test_schema_module_matches_the_migrations(database_url: str) -> None:
    upgrade(database_url)
    assert schema_differences(database_url) == []


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
    assert table_names(database_url) == TABLES | PLACEMENT_TABLES | LEASE_TABLES | {
        "alembic_version"
    }


def test_the_head_read_from_the_scripts_is_alembics() -> None:
    assert packaged_head() == head_revision()


async def test_a_database_at_head_is_upgraded_without_loading_alembic(database_url: str) -> None:
    """Every gateway start calls upgrade(): at head it must not pay for importing Alembic."""
    upgrade(database_url)
    code = (
        "import sys; from andromede.metadata.migrate import upgrade; upgrade(sys.argv[1]); "
        "sys.exit('alembic' in sys.modules)"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, database_url, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    assert current_revision(database_url) == head_revision()


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


async def test_upgrade_from_0001_keeps_the_rows(database_url: str) -> None:
    migrate(database_url, "0001")
    for table, column in ENCRYPTION_COLUMNS:
        assert column not in column_names(database_url, table)
    write_rows_of_0001(database_url)
    store = await open_store(database_url)  # upgrades to the newest
    try:
        assert current_revision(database_url) == head_revision()
        assert await store.get_bucket("photos") == Bucket("photos", "acme", T0, "x")
        found = await store.get_object("photos", "k")
        assert found is not None
        assert found.manifest == Manifest(
            (Segment(BlobRef(Layout.single("site-a"), "b1"), 10),), format=1
        )
        assert found.encryption is None
        upload = await store.get_upload("photos", "big", "u1")
        assert upload is not None
        assert upload.encryption is None
        part = Part("u1", 1, 5, "p", T0, BlobRef(Layout.single("site-a"), "p1"))
        assert await store.list_parts("u1") == [part]
        assert await store.list_kms_keys() == []
        site_a = {Layout.single("site-a")}
        assert await store.blob_layouts(["b1", "p1"]) == {"b1": site_a, "p1": site_a}
        # The old rows take the new fields.
        await store.set_bucket_encryption("photos", BucketEncryption(EncryptionMode.SSE_S3))
        assert await store.replace_part_sealing("u1", 1, "p1", Sealing(1, 64, "u1/1", b"w"))
    finally:
        await store.close()


async def test_downgrade_to_0001_keeps_the_older_rows(database_url: str) -> None:
    store = await open_store(database_url)
    try:
        await store.create_tenant(Tenant("acme", T0))
        await store.create_kms_key(
            KmsKey("k1", "acme", "keystore", KeyState.ENABLED, T0, (KeyVersion(1, "h", T0),))
        )
        sse = BucketEncryption(EncryptionMode.SSE_KMS, "k1")
        await store.create_bucket(Bucket("photos", "acme", T0, encryption=sse))
        encryption = ObjectEncryption(EncryptionMode.SSE_KMS, "k1")
        await store.create_upload(
            MultipartUpload("u1", "photos", "big", T0, "acme", encryption=encryption)
        )
        sealing = Sealing(1, 64, "u1/1", b"w")
        await store.put_part(
            Part("u1", 1, 5, "p", T0, BlobRef(Layout.single("site-a"), "p1"), sealing=sealing)
        )
    finally:
        await store.close()

    migrate(database_url, "0001", down=True)
    assert current_revision(database_url) == "0001"
    assert table_names(database_url) == (TABLES - {"kms_keys", "object_versions"}) | {
        "alembic_version"
    }
    assert not PLACEMENT_TABLES & table_names(database_url)
    for table, column in ENCRYPTION_COLUMNS:
        assert column not in column_names(database_url, table)

    store = await open_store(database_url)  # and up again
    # SQLite rebuilt the tables to drop columns: their keys and indexes must be back as well.
    assert schema_differences(database_url) == []
    try:
        assert await store.get_bucket("photos") == Bucket("photos", "acme", T0)
        upload = await store.get_upload("photos", "big", "u1")
        assert upload is not None
        assert upload.encryption is None
        assert [p.sealing for p in await store.list_parts("u1")] == [None]
        assert await store.list_kms_keys() == []
    finally:
        await store.close()


async def test_bucket_tags_arrive_with_0004_and_leave_with_it(database_url: str) -> None:
    migrate(database_url, "0003")
    assert "tags" not in column_names(database_url, "buckets")
    write_rows_of_0001(database_url)
    store = await open_store(database_url)  # upgrades to the newest
    try:
        assert "tags" in column_names(database_url, "buckets")
        assert await store.get_bucket("photos") == Bucket("photos", "acme", T0, "x")
        await store.set_bucket_tags("photos", {"team": "data"})
    finally:
        await store.close()

    migrate(database_url, "0003", down=True)
    assert "tags" not in column_names(database_url, "buckets")
    store = await open_store(database_url)  # and up again: the bucket stays, without tags
    assert schema_differences(database_url) == []
    try:
        assert await store.get_bucket("photos") == Bucket("photos", "acme", T0, "x")
    finally:
        await store.close()


async def test_job_leases_arrive_with_0005_and_leave_with_it(database_url: str) -> None:
    migrate(database_url, "0004")
    assert not LEASE_TABLES & table_names(database_url)
    store = await open_store(database_url)  # upgrades to the newest
    try:
        lease = await store.take_lease("sweep", "gw-a", T0, dt.timedelta(seconds=30))
        assert lease is not None
        assert lease.epoch == 1
    finally:
        await store.close()

    migrate(database_url, "0004", down=True)
    assert not LEASE_TABLES & table_names(database_url)
    store = await open_store(database_url)  # and up again: a fresh table
    assert schema_differences(database_url) == []
    try:
        assert await store.list_leases() == []
    finally:
        await store.close()


def _set(database_url: str, statement: str) -> None:
    engine = sync_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


async def test_a_gateway_runs_on_a_newer_schema_only_when_it_is_declared_compatible(
    database_url: str,
) -> None:
    """Gateways are upgraded one at a time: this release must start on a schema a newer
    release migrated when that schema says this code still runs on it, and refuse clearly
    when it says otherwise."""
    upgrade(database_url)
    # A newer release's migration "0099", which declares code down to 0007 compatible.
    _set(database_url, "UPDATE alembic_version SET version_num = '0099'")
    upgrade(database_url)
    store = await open_store(database_url)
    try:
        await store.create_tenant(Tenant("acme", T0))
        assert [t.name for t in await store.list_tenants()] == ["acme"]
    finally:
        await store.close()
    assert current_revision(database_url) == "0099"  # left as the newer release made it
    # A later one that no longer runs with this code.
    _set(database_url, "UPDATE schema_compat SET oldest_code_revision = '0099'")
    with pytest.raises(SchemaTooNew, match=r"revision 0099.*Upgrade this gateway"):
        upgrade(database_url)
    with pytest.raises(SchemaTooNew):
        await open_store(database_url)
