"""Bring a metadata database to the newest schema with the packaged Alembic migrations.

Safe to call from several processes at once: PostgreSQL serialises them with an advisory lock
(``migrations/env.py``), SQLite with an ``flock`` on ``<db>.migrate.lock`` held here.

Every process of ``serve`` calls :func:`upgrade` as it starts, and nearly always the schema is
already at head. Alembic (with Mako and Pygments behind it) costs ~250 ms of CPU to import, a
fifth of a worker's start, so a database whose stored revision is the head of the packaged
scripts (read from the scripts' ``revision`` lines) is left alone without loading it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, pool, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("andromede.metadata")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
HEAD = "head"
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg2"}
VERSION_TABLE = "alembic_version"
COMPAT_TABLE = "schema_compat"
# A script's own revision and the one it follows, as Alembic's generated scripts spell them.
_REVISION = re.compile(r"^revision(?:\s*:[^=]*)?\s*=\s*[\"']([^\"']+)[\"']\s*$", re.MULTILINE)
_DOWN = re.compile(
    r"^down_revision(?:\s*:[^=]*)?\s*=\s*(?:None|[\"']([^\"']+)[\"'])\s*$", re.MULTILINE
)


def upgrade(database_url: str) -> None:
    """Apply every pending migration to ``database_url`` (an async or sync SQLAlchemy URL)."""
    url = sync_url(database_url)
    with _migration_file_lock(url):
        engine = sync_engine(url)
        try:
            with engine.connect() as conn:
                head = packaged_head()
                stored = stored_revisions(conn)
                if head is not None and stored == [head]:
                    return
                if stored and not set(stored) <= packaged_revisions():
                    # A newer release migrated it (gateways upgraded one at a time).
                    _check_newer(conn, stored)
                    return
            with engine.connect() as conn:
                from alembic import command  # noqa: PLC0415 - only when a migration is due

                config = _config()
                config.attributes["connection"] = conn
                command.upgrade(config, HEAD)
        finally:
            engine.dispose()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415 - see upgrade

    engine = sync_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def stored_revisions(conn: Connection) -> list[str]:
    """The revisions Alembic recorded in the database (none before the first migration),
    read without Alembic. Ends the transaction it began."""
    try:
        if not inspect(conn).has_table(VERSION_TABLE):
            return []
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        return sorted(str(r) for r in rows)
    finally:
        conn.rollback()


def packaged_head() -> str | None:
    """The head revision of the packaged scripts, read from their text without Alembic; None
    when it cannot be told that way (no scripts, several heads, a merge, an unusual spelling),
    and then :func:`upgrade` asks Alembic."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = script.read_text(encoding="utf-8")
        own, down = _REVISION.findall(source), _DOWN.search(source)
        if len(own) != 1 or down is None:
            return None
        revisions.add(own[0])
        if down[1]:
            followed.add(down[1])
    heads = revisions - followed
    return heads.pop() if len(heads) == 1 else None


def packaged_revisions() -> set[str]:
    """Every revision the packaged scripts define, read from their text."""
    found: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found.update(_REVISION.findall(script.read_text(encoding="utf-8")))
    return found


class SchemaTooNew(RuntimeError):
    """A newer release migrated the database past what this release's code runs on."""


def _check_newer(conn: Connection, stored: list[str]) -> None:
    """Return when a newer release's schema says this release's code still runs on it
    (``schema_compat``, migration 0006); SchemaTooNew otherwise."""
    oldest = None
    try:
        if inspect(conn).has_table(COMPAT_TABLE):
            oldest = conn.execute(
                text("SELECT oldest_code_revision FROM schema_compat WHERE id = 1")
            ).scalar_one_or_none()
    finally:
        conn.rollback()
    known = packaged_revisions()
    if oldest is None or str(oldest) not in known:
        raise SchemaTooNew(
            f"The metadata database is at revision {', '.join(stored)}, from a newer release, "
            f"which needs code of revision {oldest or 'unknown'} or later; this release's code "
            f"is at {packaged_head() or max(known)}. Upgrade this gateway."
        )
    log.warning(
        "the metadata database is at revision %s, from a newer release that declares code "
        "down to revision %s compatible: running on it (upgrade this gateway soon)",
        ", ".join(stored),
        oldest,
    )


def head_revision() -> str:
    """The newest revision the packaged migrations define."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - see upgrade

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
    from alembic.config import Config  # noqa: PLC0415 - see upgrade

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
