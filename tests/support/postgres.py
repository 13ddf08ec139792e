"""A throwaway PostgreSQL server for tests.

``start_postgres()`` runs ``initdb`` and ``pg_ctl`` from the PostgreSQL binaries on this
machine: a fresh cluster in a temporary directory, trust authentication, listening on
127.0.0.1 on a free port and on a socket in that directory. PostgreSQL refuses to run as root,
so when the tests do, the cluster belongs to the ``postgres`` user (or ``nobody``).

The cluster's default collation is ICU ``en-US`` when available, on purpose: it orders ``A``,
``a`` and ``a-b`` unlike byte order, so a column missing ``COLLATE "C"`` shows up in tests.
Durability settings are off (unless ``durable``): this cluster exists for speed, never for
data.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

_SEARCH_DIRS = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
_SUPERUSER = "postgres"
_PORT_ATTEMPTS = 3


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed here."""


def find_binaries() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    found = shutil.which("initdb")
    # Resolve symlinks: /usr/local/bin often links only a few tools of the real directory.
    candidates = [str(Path(found).resolve().parent)] if found else []
    candidates += list(_SEARCH_DIRS)
    for directory in candidates:
        path = Path(directory)
        if all((path / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    raise PostgresUnavailable("initdb, pg_ctl and postgres not found")


@dataclass
class PostgresCluster:
    """A throwaway cluster that a test may stop and start again on the same port (a database
    restart under load); :meth:`remove` stops it for good and deletes it."""

    bindir: Path
    run_as: pwd.struct_passwd | None
    root: Path
    port: int
    durable: bool = False

    @property
    def url(self) -> str:
        """The ``postgres`` database as superuser, ``postgresql+asyncpg``."""
        return f"postgresql+asyncpg://{_SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Stop at once, as a crash would (``-m immediate``); the data stays."""
        _as_user(self.run_as, [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"),
                               "-m", "immediate", "-w", "stop"])  # fmt: skip

    def start(self) -> None:
        """Start again on the same port."""
        _pg_ctl_start(self.bindir, self.run_as, self.root, self.port, self.durable)

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(base_dir: Path | None = None, *, durable: bool = False) -> PostgresCluster:
    """A fresh cluster, started (see the module docstring). ``durable``: with ``fsync`` and
    synchronous commits, as production runs, for tests that crash it and count what survives."""
    bindir = find_binaries()
    run_as = _unprivileged_user()
    root = Path(tempfile.mkdtemp(prefix="andromede-pg-", dir=base_dir))
    data = root / "data"
    if run_as is not None:
        root.chmod(0o700)
        os.chown(root, run_as.pw_uid, run_as.pw_gid)
    try:
        _as_user(run_as, [str(bindir / "initdb"), *_initdb_args(bindir, data)])
        port = _start_on_a_free_port(bindir, run_as, root, durable)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return PostgresCluster(bindir, run_as, root, port, durable)


def start_postgres(base_dir: Path | None = None) -> tuple[str, Callable[[], None]]:
    """Start a server; return its ``postgresql+asyncpg`` URL and a function that stops it.

    The URL names the ``postgres`` database as superuser ``postgres``; use
    :func:`create_database` to give each test its own database.
    """
    cluster = start_cluster(base_dir)
    return cluster.url, cluster.remove


@contextlib.contextmanager
def postgres_server(base_dir: Path | None = None) -> Iterator[str]:
    """:func:`start_postgres` as a context manager yielding the URL."""
    url, stop = start_postgres(base_dir)
    try:
        yield url
    finally:
        stop()


def _start_on_a_free_port(
    bindir: Path, run_as: pwd.struct_passwd | None, root: Path, durable: bool = False
) -> int:
    """Start the cluster in ``root/data``; return its port.

    The port is probed free, then let go: a parallel test worker can take it before the
    server binds, so a start that finds it taken tries another.
    """
    log = root / "server.log"
    for attempt in range(_PORT_ATTEMPTS):
        port = _free_port()
        logged_before = log.stat().st_size if log.exists() else 0
        try:
            _pg_ctl_start(bindir, run_as, root, port, durable)
        except RuntimeError:
            taken = b"address already in use" in log.read_bytes()[logged_before:].lower()
            if not taken or attempt == _PORT_ATTEMPTS - 1:
                raise
        else:
            return port
    raise AssertionError("unreachable")


def _pg_ctl_start(
    bindir: Path, run_as: pwd.struct_passwd | None, root: Path, port: int, durable: bool = False
) -> None:
    log = root / "server.log"
    fast = ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-c port={port}",
            f"-c unix_socket_directories={root}",
            *([] if durable else fast),
            "-c max_connections=200",
            # Statement counts for bench/cluster.py, where the module is installed.
            *(
                ["-c shared_preload_libraries=pg_stat_statements"]
                if (bindir.parent / "lib" / "pg_stat_statements.so").exists()
                else []
            ),
        ]
    )
    start = [str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(log), "-o", options]
    _as_user(run_as, [*start, "-w", "-t", "60", "start"])


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url``; return its URL (same driver)."""
    url = make_url(server_url)
    admin = create_engine(
        url.set(drivername="postgresql+psycopg2"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _initdb_args(bindir: Path, data: Path) -> list[str]:
    args = ["-D", str(data), "-U", _SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-sync"]
    if _has_icu(bindir):
        return [*args, "--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-US"]
    return [*args, "--locale=C.UTF-8"]


def _has_icu(bindir: Path) -> bool:
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return False
    configure = subprocess.run(
        [str(pg_config), "--configure"], capture_output=True, text=True, check=False
    )
    return "--with-icu" in configure.stdout


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable("running as root and no 'postgres' or 'nobody' user to run as")


def _as_user(user: pwd.struct_passwd | None, argv: list[str]) -> None:
    if user is not None:
        argv = ["runuser", "-u", user.pw_name, "--", *argv]
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"}
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
