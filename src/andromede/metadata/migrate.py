"""Bring a metadata database to the newest schema with the packaged Alembic migrations.

Safe to call from several processes at once: PostgreSQL serialises them with an advisory lock
(``migrations/env.py``), SQLite with an ``flock`` on ``<db>.migrate.lock`` held here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, pool
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
HEAD = "head"
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg2"}


def upgrade(database_url: str) -> None:
    """Apply every pending migration to ``database_url`` (an async or sync SQLAlchemy URL)."""
    url = sync_url(database_url)
    with _migration_file_lock(url):
        engine = sync_engine(url)
        try:
            with engine.connect() as conn:
                config = _config()
                config.attributes["connection"] = conn
                command.upgrade(config, HEAD)
        finally:
            engine.dispose()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = sync_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision the packaged migrations define."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations packaged")
    return head


def sync_url(database_url: str) -> URL:
    """The blocking-driver twin of an async URL: Alembic runs synchronously."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in _SYNC_DRIVERS:
        raise ValueError(f"unsupported metadata database {backend!r}")
    return url.set(drivername=_SYNC_DRIVERS[backend])


def sync_engine(url: URL) -> Engine:
    """An engine for migrations; on SQLite it emits a real BEGIN so DDL is transactional."""
    engine = create_engine(url, poolclass=pool.NullPool)
    if url.get_backend_name() == "sqlite":
        _require_file(url)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout = 10000")
            # WAL is a property of the file: set once here, before any worker opens it.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _require_file(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        raise ValueError("the metadata store needs an SQLite file, not an in-memory database")


@contextlib.contextmanager
def _migration_file_lock(url: URL) -> Iterator[None]:
    if url.get_backend_name() != "sqlite":
        yield
        return
    _require_file(url)
    lock_path = Path(f"{url.database}.migrate.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
