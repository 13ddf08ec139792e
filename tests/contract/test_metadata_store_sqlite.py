"""``MetadataStore`` on SQLite: several engines and processes sharing one database file, and
the refusal of naive datetimes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite

from andromede.core.models import (
    Bucket,
    Tenant,
)
from andromede.metadata.schema import UtcDateTime
from andromede.metadata.sql import SqlMetadataStore, open_store
from support.metadata import (
    T0,
    version,
)


# --- SQLite: several processes on one file ------------------------------------------------------
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"


async def _seed(url: str) -> None:
    first = await open_store(url)
    try:
        await first.create_tenant(Tenant("acme", T0))
        await first.create_bucket(Bucket("photos", "acme", T0))
    finally:
        await first.close()


async def test_two_engines_on_one_sqlite_file(sqlite_url: str) -> None:
    await _seed(sqlite_url)
    stores = [await open_store(sqlite_url) for _ in range(2)]
    try:

        async def worker(s: SqlMetadataStore, n: int) -> None:
            for i in range(30):
                await s.put_object(version(f"w{n}/{i}", etag=str(i)))
                await s.put_object(version(f"shared/{i % 5}"))
                await s.list_objects("photos", f"w{n}/", "", False, 100)
                if i % 3 == 0:
                    await s.delete_object("photos", f"w{n}/{i}")

        await asyncio.gather(*(worker(stores[n % 2], n) for n in range(4)))
        keys = [o.key for o in await stores[0].list_objects("photos", "", "", False, 1000)]
        assert len([k for k in keys if k.startswith("w")]) == 4 * 20
        assert len([k for k in keys if k.startswith("shared/")]) == 5
    finally:
        for s in stores:
            await s.close()


_WORKER = textwrap.dedent(
    """
    import asyncio, sys, uuid, datetime as dt
    from andromede.core.models import BlobRef, Manifest, ObjectVersion, Segment, WriteCondition
    from andromede.core.placement import Layout
    from andromede.core import errors
    from andromede.metadata.sql import open_store

    async def main(url, name):
        store = await open_store(url)
        now = dt.datetime.now(dt.UTC)
        won = 0
        try:
            for i in range(40):
                m = Manifest((Segment(BlobRef(Layout.single("s"), uuid.uuid4().hex), 1),))
                await store.put_object(ObjectVersion("photos", f"{name}/{i}", "v", 1, "e", now, m))
                try:
                    await store.put_object(
                        ObjectVersion("photos", f"race/{i}", name, 1, "e", now, m),
                        WriteCondition(if_none_match="*"),
                    )
                    won += 1
                except errors.PreconditionFailed:
                    pass
        finally:
            await store.close()
        print(won)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_worker_processes_share_one_sqlite_file(sqlite_url: str) -> None:
    await _seed(sqlite_url)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            sqlite_url,
            f"p{n}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(3)
    ]
    wins = 0
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()
        wins += int(out)
    assert wins == 40  # each race key was created by exactly one process
    store = await open_store(sqlite_url)
    try:
        assert len(await store.list_objects("photos", "", "", False, 1000)) == 3 * 40 + 40
    finally:
        await store.close()


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().process_bind_param(dt.datetime(2024, 1, 1), sqlite.dialect())
