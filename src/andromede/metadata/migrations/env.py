"""Alembic environment of the metadata store.

``andromede.metadata.migrate.upgrade`` runs it with an open connection in
``config.attributes["connection"]``; without one it connects to ``sqlalchemy.url``.

Several gateway processes may start at once. On PostgreSQL a transaction-scoped advisory lock,
taken before Alembic reads the current revision, makes them migrate one after the other: the
later ones find the schema at head and do nothing. SQLite has no such lock; ``migrate.py``
holds a file lock around the whole run instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from andromede.metadata.migrate import sync_engine, sync_url

# An arbitrary constant naming the migration lock among the database's advisory locks.
MIGRATION_LOCK_ID = 0x616E64726F6D


def _run(connection: Connection) -> None:
    is_postgres = connection.dialect.name == "postgresql"
    context.configure(
        connection=connection,
        target_metadata=None,
        # SQLite can roll back DDL too; migrate.py makes its connection emit a real BEGIN.
        transactional_ddl=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url to migrate")
    engine = sync_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
_main()
