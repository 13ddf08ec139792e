"""Engines and transactions for the SQL metadata store.

SQLite gets two engines on the same file. Writes go through one connection per process that
opens every transaction with ``BEGIN IMMEDIATE``: it takes the database's single write lock up
front, so writers of several gateway processes queue on ``busy_timeout`` instead of failing
with ``SQLITE_BUSY`` when a read transaction tries to upgrade; and writers of one process queue
in the pool (cheap) rather than in SQLite's busy handler (sleeps of up to 100 ms). Reads use a
few connections with plain deferred transactions, which never block in WAL mode.
PostgreSQL uses one asyncpg pool for both.

SQLite reads run inline on the event loop through one synchronous connection per process. A
point read from the page cache takes tens of microseconds, while a trip through aiosqlite's
thread costs about half a millisecond (four hops: BEGIN, execute, fetch, COMMIT), which made
the metadata lookups most of a small GET. WAL readers never wait for writers, so the loop is
not held by a lock. Writes wait for fsync, so they run on one writer thread per process, a
whole transaction per hop (an overwrite is about ten statements; one hop each through
aiosqlite cost several milliseconds), and write transactions that queue up meanwhile share
one COMMIT, each inside its own SAVEPOINT: one fsync of the WAL acknowledges them all (group
commit), and one that fails rolls back alone.
"""

from __future__ import annotations

import asyncio
import collections
import random
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from andromede.core import errors
from andromede.core.ids import successor_prefix

T = TypeVar("T")
# A result row of whatever columns a query selects. Its columns are read by name
# (``row.name``), which SQLAlchemy leaves untyped whatever the row's parameters say.
Row = sa.Row[*tuple[object, ...]]
# Statement parameters by bind name.
Params = Mapping[str, object]

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SQLITE_PRAGMAS = (
    "busy_timeout = 10000",
    "journal_mode = WAL",
    # FULL syncs the WAL at every commit: an acknowledged write survives power loss.
    "synchronous = FULL",
    "foreign_keys = ON",
    # 16 MiB of page cache per connection (the default is 2 MiB): index pages of a large
    # catalogue stay in memory; filled only as pages are used.
    "cache_size = -16384",
)
# PostgreSQL SQLSTATEs after which the transaction was certainly rolled back and may be rerun:
# serialization_failure, deadlock_detected.
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})
MAX_ATTEMPTS = 5
CONNECT_TIMEOUT_S = 5.0
POOL_TIMEOUT_S = 10.0


def async_url(database_url: str) -> URL:
    """``database_url`` with the async driver of its backend (aiosqlite or asyncpg)."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(f"unsupported metadata database {backend!r}")
    return url.set(drivername=_ASYNC_DRIVERS[backend])


class Transactions:
    """Runs functions of a connection in read or write transactions; maps driver failures."""

    def __init__(
        self,
        writer: AsyncEngine,
        reader: AsyncEngine,
        inline_reader: sa.Engine | None = None,
        thread_writer: sa.Engine | None = None,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._inline = _InlineReader(inline_reader) if inline_reader is not None else None
        self._group = _GroupWriter(thread_writer) if thread_writer is not None else None

    @classmethod
    def open(cls, url: URL) -> Transactions:
        """Engines for ``url`` (an async URL), configured as the module docstring says."""
        if url.get_backend_name() == "sqlite":
            return cls(
                _sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=1),
                _sqlite_engine(url, begin="BEGIN", pool_size=4),
                _inline_sqlite_engine(url, begin=None),
                _inline_sqlite_engine(url, begin="BEGIN IMMEDIATE"),
            )
        # pre_ping: a connection left from before a server restart is replaced, not used.
        # A connection attempt gives up after CONNECT_TIMEOUT_S and a request waiting for a
        # pooled connection after POOL_TIMEOUT_S: a database away means 503s, not hung requests.
        engine = create_async_engine(
            url,
            pool_size=5,
            max_overflow=10,
            pool_pre_ping=True,
            pool_timeout=POOL_TIMEOUT_S,
            connect_args={"timeout": CONNECT_TIMEOUT_S},
        )
        return cls(engine, engine)

    async def dispose(self) -> None:
        """Close every connection."""
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()
        if self._inline is not None:
            self._inline.close()
        if self._group is not None:
            await asyncio.to_thread(self._group.close)

    async def write(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``op`` in a write transaction."""
        if self._group is not None:
            return await self._group.submit(op)
        return await _run(self._writer, op)

    async def read(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``op`` in a read-only transaction."""
        if self._inline is not None:
            return await self._inline.run(op)
        return await _run(self._reader, op)

    async def read_row(self, prepared: Prepared, params: Params) -> Row | None:
        """The first row of one prepared SELECT (its own read transaction), or None."""
        if self._inline is not None:
            return self._inline.first(prepared, params)
        return await _run(self._reader, lambda conn: first(conn, prepared.stmt, params))


class Prepared:
    """A statement of the hot paths (reading an object, a bucket, an access key by primary
    key; inserting a new object) prepared for SQLite's inline connections: compiled once to
    its SQL text, its parameters' order and conversions, and each returned column's
    conversion, then run straight on the driver. A point read so costs about 10 µs, against
    about 45 µs through SQLAlchemy's execution machinery (measured; most of a small GET's
    metadata time). A read on its own is its own read transaction: it needs no BEGIN or
    ROLLBACK. Other backends run ``stmt`` as any other query."""

    def __init__(self, stmt: sa.Select[Any] | sa.Insert) -> None:
        self.stmt = stmt
        self._for: str | None = None
        self._sql = ""
        self._binds: tuple[tuple[str, Callable[[Any], Any] | None], ...] = ()
        self._columns: tuple[Callable[[Any], Any] | None, ...] = ()
        self._row: Callable[..., Row] = cast(Callable[..., Row], tuple)

    def compiled(self, dialect: sa.Dialect) -> Prepared:
        """Compile for ``dialect`` (once: every engine of a process on one backend compiles
        these statements alike, whichever dialect object it holds)."""
        if self._for == dialect.name:
            return self
        compiled = self.stmt.compile(dialect=dialect)
        binds = []
        for name in compiled.positiontup or ():
            kind = compiled.binds[name].type.dialect_impl(dialect)
            binds.append((name, kind.bind_processor(dialect)))
        columns = list(self.stmt.exported_columns)  # a SELECT's, or what it RETURNs
        self._sql = str(compiled)
        self._binds = tuple(binds)
        self._columns = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        )
        # Rows read by column name (``row.name``), as SQLAlchemy's are.
        self._row = cast(
            Callable[..., Row],
            collections.namedtuple(
                "Row",
                [str(k) for k in self.stmt.exported_columns.keys()],  # noqa: SIM118 - iterating yields columns
            ),
        )
        self._for = dialect.name  # last: what it guards is in place
        return self

    def _values(self, params: Params) -> list[object]:
        return [params[n] if bind is None else bind(params[n]) for n, bind in self._binds]

    def run_many(self, raw: sqlite3.Connection, rows: Sequence[Params]) -> None:
        """Execute once per parameter set on ``raw`` (a statement returning nothing)."""
        raw.executemany(self._sql, (self._values(params) for params in rows))

    def run(self, raw: sqlite3.Connection, params: Params) -> Row | None:
        """Execute on the driver connection ``raw``; the first row, converted."""
        cursor = raw.execute(self._sql, self._values(params))
        try:
            found = cursor.fetchone() if self._columns else None
        finally:
            cursor.close()  # the statement is reset now, not when the cursor is collected
        if found is None:
            return None
        converted = zip(found, self._columns, strict=True)
        return self._row(*(v if convert is None else convert(v) for v, convert in converted))


class _InlineConnection:
    """The part of AsyncConnection that read operations use, over a synchronous connection.

    Its coroutines never suspend, so a read operation runs to completion without yielding.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(
        self, stmt: sa.Executable, params: Params | None = None
    ) -> sa.Result[*tuple[object, ...]]:
        return self._conn.execute(stmt, params)

    async def scalar(self, stmt: sa.Executable, params: Params | None = None) -> object:
        return self._conn.scalar(stmt, params)

    def _raw(self) -> sqlite3.Connection:
        raw = self._conn.connection.dbapi_connection
        assert raw is not None
        return cast(sqlite3.Connection, raw)

    def prepared(self, prepared: Prepared, params: Params) -> Row | None:
        return prepared.compiled(self.dialect).run(self._raw(), params)

    def prepared_many(self, prepared: Prepared, rows: Sequence[Params]) -> None:
        prepared.compiled(self.dialect).run_many(self._raw(), rows)


async def run_prepared(conn: AsyncConnection, prepared: Prepared, params: Params) -> Row | None:
    """One prepared statement in ``conn``'s transaction: its first row (what it returns), or
    None. On SQLite's inline connections (the writer thread's) it runs on the driver; a
    constraint it breaks raises ``sqlite3.IntegrityError`` there."""
    if isinstance(conn, _InlineConnection):
        return conn.prepared(prepared, params)
    return await first(conn, prepared.stmt, params)


async def run_prepared_many(
    conn: AsyncConnection, prepared: Prepared, rows: Sequence[Params]
) -> None:
    """One prepared statement that returns nothing, once per parameter set, in ``conn``'s
    transaction (one ``executemany`` on either kind of connection)."""
    if not rows:
        return
    if isinstance(conn, _InlineConnection):
        conn.prepared_many(prepared, rows)
    else:
        await conn.execute(prepared.stmt, list(rows))


class _InlineReader:
    """One connection held for the process's life; each read is BEGIN … COMMIT on it.

    BEGIN and COMMIT go straight to the driver: through SQLAlchemy's connect/begin machinery
    they cost more than the query itself.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._conn = engine.connect()
        self._inline = _InlineConnection(self._conn)
        self._shim = cast(AsyncConnection, self._inline)

    async def run(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        raw = self._conn.connection.dbapi_connection
        assert raw is not None
        try:
            raw.execute("BEGIN")
            try:
                # Duck-typed: read operations only call execute() and scalar() (see above).
                result = await op(self._shim)
            finally:
                self._conn.rollback()  # ends the read transaction (nothing to keep)
        except sa.exc.OperationalError as exc:
            raise errors.ServiceUnavailable("The metadata database is unavailable.") from exc
        return result

    def first(self, prepared: Prepared, params: Params) -> Row | None:
        """One prepared statement, outside any transaction of ours (it is its own)."""
        try:
            return self._inline.prepared(prepared, params)
        except sqlite3.OperationalError as exc:
            raise errors.ServiceUnavailable("The metadata database is unavailable.") from exc

    def close(self) -> None:
        self._conn.close()
        self._engine.dispose()


def _drive(coro: Coroutine[object, None, T]) -> T:
    """Run a coroutine that never suspends (it only awaits _InlineConnection) to its end."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    raise RuntimeError("a metadata operation suspended on a synchronous connection")


_Op = Callable[[AsyncConnection], Awaitable[object]]
_MAX_GROUP = 64


@dataclass
class _Pending:
    op: _Op
    future: asyncio.Future[object]
    loop: asyncio.AbstractEventLoop
    value: object = None
    error: BaseException | None = None


class _GroupWriter:
    """The writer thread: runs queued write transactions, committing them in groups."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(
            target=self._serve, name="andromede-sqlite-writer", daemon=True
        )
        self._thread.start()

    async def submit(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        pending = _Pending(op, loop.create_future(), loop)
        with self._cond:
            if self._closed:
                raise errors.ServiceUnavailable("The metadata store is closed.")
            self._queue.append(pending)
            self._cond.notify()
        return cast(T, await pending.future)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self._engine.dispose()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue[:_MAX_GROUP], self._queue[_MAX_GROUP:]
            self._commit_group(batch)
            # One wake-up per event loop for the whole group, not one per request.
            by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
            for pending in batch:
                by_loop.setdefault(pending.loop, []).append(pending)
            for loop, group in by_loop.items():
                loop.call_soon_threadsafe(_settle_all, group)

    def _commit_group(self, batch: list[_Pending]) -> None:
        try:
            with self._engine.connect() as conn:
                if len(batch) == 1:
                    self._commit_one(conn, batch[0])
                    return
                self._commit_many(conn, batch)
        except sa.exc.OperationalError as exc:
            # The COMMIT (or BEGIN) failed: nothing in the group is durable.
            failure = errors.ServiceUnavailable("The metadata database is unavailable.")
            failure.__cause__ = exc
            for pending in batch:
                pending.error = failure
        except Exception as exc:  # every waiter must hear of it
            for pending in batch:
                pending.error = exc

    @staticmethod
    def _commit_one(conn: Connection, pending: _Pending) -> None:
        """Alone in its group: no savepoint; a failure rolls the transaction back."""
        try:
            with conn.begin():
                shim = cast(AsyncConnection, _InlineConnection(conn))
                pending.value = _drive(cast(Coroutine[object, None, object], pending.op(shim)))
        except sa.exc.OperationalError:
            raise
        except Exception as exc:
            pending.error = exc

    @staticmethod
    def _commit_many(conn: Connection, batch: list[_Pending]) -> None:
        with conn.begin():
            shim = cast(AsyncConnection, _InlineConnection(conn))
            # Savepoints straight on the driver: SQLAlchemy's nested transactions cost more
            # than the statements of a small write.
            raw = conn.connection.dbapi_connection
            assert raw is not None
            for pending in batch:
                raw.execute("SAVEPOINT grouped")
                try:
                    pending.value = _drive(cast(Coroutine[object, None, object], pending.op(shim)))
                except Exception as exc:
                    raw.execute("ROLLBACK TO grouped")
                    raw.execute("RELEASE grouped")
                    pending.error = exc
                else:
                    raw.execute("RELEASE grouped")


def _settle_all(group: list[_Pending]) -> None:
    for pending in group:
        _settle(pending)


def _settle(pending: _Pending) -> None:
    if pending.future.done():  # the request was cancelled meanwhile
        return
    if pending.error is not None:
        pending.future.set_exception(pending.error)
    else:
        pending.future.set_result(pending.value)


def _inline_sqlite_engine(url: URL, *, begin: str | None) -> sa.Engine:
    sync_url = url.set(drivername="sqlite")
    # One connection, used from one thread only (the event loop's, or the writer thread).
    engine = sa.create_engine(
        sync_url, poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    _configure_sqlite(engine, begin=begin)
    return engine


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
            if database_unreachable(exc, sqlstate):
                raise errors.MetadataUnavailable() from exc
            raise
        except (TimeoutError, OSError) as exc:
            # The server refused, reset or did not answer the connection (a restart, a network
            # cut): the driver's own error, not wrapped by SQLAlchemy. Not retried either.
            raise errors.MetadataUnavailable() from exc
        except sa.exc.TimeoutError as exc:
            raise errors.ServiceUnavailable("The metadata database is overloaded.") from exc


# The server going away or not there yet: connection exceptions (class 08), shutting down
# (57P01 admin, 57P02 crash), starting up (57P03), out of connection slots (53300).
_UNREACHABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def database_unreachable(exc: sa.exc.DBAPIError, sqlstate: object) -> bool:
    """Whether ``exc`` says the database cannot be reached now (a 503), not that the statement
    is wrong (a bug: a 500). A connection lost mid-statement arrives as a plain DBAPIError
    that SQLAlchemy has recognised as a disconnect (``connection_invalidated``)."""
    if exc.connection_invalidated or isinstance(
        exc, sa.exc.OperationalError | sa.exc.InterfaceError
    ):
        return True
    return isinstance(sqlstate, str) and (
        sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES
    )


class _SqliteDbapi(Protocol):
    """What the connect hook uses of a DBAPI connection to SQLite (sqlite3's, or the one
    SQLAlchemy's aiosqlite adapter wraps it in)."""

    isolation_level: str | None

    def cursor(self) -> sqlite3.Cursor: ...


def _sqlite_engine(url: URL, *, begin: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=60)
    _configure_sqlite(engine.sync_engine, begin=begin)
    return engine


def _configure_sqlite(engine: sa.Engine, *, begin: str | None) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: _SqliteDbapi, _record: ConnectionPoolEntry) -> None:
        # Stop the driver from issuing its own deferred BEGIN; ``_begin`` below does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    if begin is None:
        return

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if begin == "BEGIN IMMEDIATE":
            _begin_immediate(conn)
        else:
            conn.exec_driver_sql(begin)


def _begin_immediate(conn: Connection) -> None:
    """Take the write lock, polling every fraction of a millisecond while another process
    holds it. SQLite's own busy handler sleeps 1, 2, 5, 10… ms between tries, which idles a
    writer for far longer than a group commit holds the lock."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA busy_timeout = 0")
    deadline = time.monotonic() + _LOCK_WAIT_S
    delay = 0.0001
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 0.002)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(_LOCK_WAIT_S * 1000)}")


_LOCK_WAIT_S = 10.0


# --- statement helpers ----------------------------------------------------------------------
async def first(
    conn: AsyncConnection, stmt: sa.Executable, params: Params | None = None
) -> Row | None:
    """The first row, or None."""
    return (await conn.execute(stmt, params)).first()


async def all_rows(conn: AsyncConnection, stmt: sa.Executable) -> Sequence[Row]:
    """Every row."""
    return (await conn.execute(stmt)).all()


def insert_ignoring(conn: AsyncConnection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT on ``conn``'s dialect that accepts ``ON CONFLICT DO NOTHING``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def insert_if_absent(
    conn: AsyncConnection, table: sa.Table, values: Params, key: Sequence[sa.Column[object]]
) -> bool:
    """Insert unless a row with this primary key exists: False then, with no error raised (a
    failed INSERT would abort a PostgreSQL transaction)."""
    cache_key = (conn.dialect.name, table.name, tuple(c.name for c in key))
    stmt = _INSERT_IF_ABSENT.get(cache_key)
    if stmt is None:
        # Built once per table: the values travel as parameters.
        stmt = (
            insert_ignoring(conn, table)
            .on_conflict_do_nothing(index_elements=key)
            .returning(key[0])
        )
        _INSERT_IF_ABSENT[cache_key] = stmt
    return await first(conn, stmt, values) is not None


_INSERT_IF_ABSENT: dict[tuple[str, str, tuple[str, ...]], sa.Executable] = {}


def key_range(column: sa.Column[str], prefix: str) -> list[sa.ColumnElement[bool]]:
    """``column`` starts with ``prefix``, as a range an index can serve (no LIKE escaping)."""
    if not prefix:
        return []
    conditions = [column >= prefix]
    upper = successor_prefix(prefix)
    if upper is not None:
        conditions.append(column < upper)
    return conditions
