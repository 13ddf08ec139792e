"""Engines and transactions for the SQL metadata store.

SQLite gets two engines on the same file. Writes go through one connection per process that
opens every transaction with ``BEGIN IMMEDIATE``: it takes the database's single write lock up
front, so writers of several gateway processes queue on ``busy_timeout`` instead of failing
with ``SQLITE_BUSY`` when a read transaction tries to upgrade; and writers of one process queue
in the pool (cheap) rather than in SQLite's busy handler (sleeps of up to 100 ms). Reads use a
few connections with plain deferred transactions, which never block in WAL mode.
PostgreSQL uses one asyncpg pool for both.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from andromede.core import errors

T = TypeVar("T")

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SQLITE_PRAGMAS = (
    "busy_timeout = 10000",
    "journal_mode = WAL",
    # FULL syncs the WAL at every commit: an acknowledged write survives power loss.
    "synchronous = FULL",
    "foreign_keys = ON",
)
# PostgreSQL SQLSTATEs after which the transaction was certainly rolled back and may be rerun:
# serialization_failure, deadlock_detected.
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})
MAX_ATTEMPTS = 5


def async_url(database_url: str) -> URL:
    """``database_url`` with the async driver of its backend (aiosqlite or asyncpg)."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(f"unsupported metadata database {backend!r}")
    return url.set(drivername=_ASYNC_DRIVERS[backend])


class Transactions:
    """Runs functions of a connection in read or write transactions; maps driver failures."""

    def __init__(self, writer: AsyncEngine, reader: AsyncEngine) -> None:
        self._writer = writer
        self._reader = reader

    @classmethod
    def open(cls, url: URL) -> Transactions:
        """Engines for ``url`` (an async URL), configured as the module docstring says."""
        if url.get_backend_name() == "sqlite":
            return cls(
                _sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=1),
                _sqlite_engine(url, begin="BEGIN", pool_size=4),
            )
        # pre_ping: a connection left from before a server restart is replaced, not used.
        engine = create_async_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)
        return cls(engine, engine)

    async def dispose(self) -> None:
        """Close every connection."""
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    async def write(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``op`` in a write transaction."""
        return await _run(self._writer, op)

    async def read(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``op`` in a read-only transaction."""
        return await _run(self._reader, op)


async def _run(engine: AsyncEngine, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    attempt = 0
    while True:
        attempt += 1
        try:
            async with engine.begin() as conn:
                return await op(conn)
        except sa.exc.DBAPIError as exc:
            # Not retried: a lost connection, since its COMMIT may have got through.
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if attempt < MAX_ATTEMPTS and sqlstate in _RETRY_SQLSTATES:
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
                continue
            if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
                raise errors.ServiceUnavailable("The metadata database is unavailable.") from exc
            raise
        except sa.exc.TimeoutError as exc:
            raise errors.ServiceUnavailable("The metadata database is overloaded.") from exc


def _sqlite_engine(url: URL, *, begin: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=60)

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Stop the driver from issuing its own deferred BEGIN; ``_begin`` below does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


# --- statement helpers ----------------------------------------------------------------------
async def first(conn: AsyncConnection, stmt: sa.Executable) -> sa.Row[Any] | None:
    """The first row, or None."""
    return (await conn.execute(stmt)).first()


async def all_rows(conn: AsyncConnection, stmt: sa.Executable) -> Sequence[sa.Row[Any]]:
    """Every row."""
    return (await conn.execute(stmt)).all()


def insert_ignoring(conn: AsyncConnection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT on ``conn``'s dialect that accepts ``ON CONFLICT DO NOTHING``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def insert_if_absent(
    conn: AsyncConnection, table: sa.Table, values: dict[str, Any], key: list[sa.Column[Any]]
) -> bool:
    """Insert unless a row with this primary key exists: False then, with no error raised (a
    failed INSERT would abort a PostgreSQL transaction)."""
    stmt = insert_ignoring(conn, table).values(values).on_conflict_do_nothing(index_elements=key)
    return await first(conn, stmt.returning(key[0])) is not None
