"""What the resilience tests check from outside a server: payloads that name their
generation, ETags, and what lies on disk under a data dir (``metadata.db`` is only ever opened
read-only)."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import sqlite3
from pathlib import Path

from support.server import Server, free_port

SITE = Path("sites") / "local"


def new_server(data_dir: Path, workers: int = 1, **env: str) -> Server:
    """A server on a fresh port, not started; restarting it keeps the data dir and port."""
    return Server(
        data_dir,
        free_port(),
        "AKRES" + secrets.token_hex(7).upper(),
        secrets.token_urlsafe(30),
        workers=workers,
        env=dict(env),
    )


def payload(key: str, generation: int, size: int) -> bytes:
    """The bytes of ``key`` at ``generation``: a readable header naming both, then noise.

    The header lets a reader tell which generation it got; the noise makes a mix of two
    generations or a truncation show up as a mismatch.
    """
    head = f"{key}|{generation}|{size}|".encode()
    noise = random.Random(f"{key}/{generation}").randbytes(max(size - len(head), 0))
    return (head + noise)[:size]


def generation_of(data: bytes) -> int | None:
    """The generation a :func:`payload` names in its header, or None if unreadable."""
    fields = data[:200].split(b"|")
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def md5_etag(data: bytes) -> str:
    """A single-part ETag."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def multipart_etag(parts: list[bytes]) -> str:
    """The ETag S3 gives an object completed from ``parts``."""
    digests = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    return f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"'


def tmp_files(data_dir: Path) -> list[str]:
    """Names in the local site's ``tmp/``."""
    tmp = data_dir / SITE / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def blob_files(data_dir: Path) -> set[str]:
    """Ids of committed blob files in the local site."""
    blobs = data_dir / SITE / "blobs"
    found: set[str] = set()
    if blobs.exists():
        for sub in blobs.iterdir():
            found.update(p.name for p in sub.iterdir())
    return found


def blob_path(data_dir: Path, blob_id: str) -> Path:
    """Where a committed blob lives."""
    return data_dir / SITE / "blobs" / blob_id[:2] / blob_id


def _query(data_dir: Path, sql: str) -> set[str]:
    uri = f"file:{data_dir / 'metadata.db'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        return {row[0] for row in conn.execute(sql)}
    finally:
        conn.close()


def live_blobs(data_dir: Path) -> set[str]:
    """Blobs named by a current object version or an upload's part."""
    return _query(
        data_dir,
        "SELECT blob_id FROM object_blobs WHERE site = 'local' "
        "UNION SELECT blob_id FROM parts WHERE site = 'local'",
    )


def queued_blobs(data_dir: Path) -> set[str]:
    """Blobs waiting in the garbage queue."""
    return _query(data_dir, "SELECT blob_id FROM garbage WHERE site = 'local'")


def object_blob_ids(data_dir: Path, bucket: str, key: str) -> set[str]:
    """Blobs the current version of ``bucket``/``key`` names."""
    safe_bucket, safe_key = bucket.replace("'", "''"), key.replace("'", "''")
    return _query(
        data_dir,
        f"SELECT blob_id FROM object_blobs WHERE bucket = '{safe_bucket}' "  # noqa: S608 - quoted
        f"AND key = '{safe_key}'",
    )


def plant_blob(data_dir: Path, blob_id: str | None = None, size: int = 1024) -> str:
    """Write a blob file no metadata names (what a crash after the data commit leaves)."""
    blob_id = blob_id or secrets.token_hex(16)
    path = blob_path(data_dir, blob_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ANDRBLOB" + (1).to_bytes(4, "big") + bytes(4) + os.urandom(size))
    return blob_id


def plant_part_file(data_dir: Path, size: int = 1024) -> str:
    """Write a ``tmp/*.part`` file (what a crash in the middle of a write leaves)."""
    name = secrets.token_hex(16) + ".part"
    tmp = data_dir / SITE / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / name).write_bytes(os.urandom(size))
    return name


def upload_part_blob_ids(
    data_dir: Path, upload_id: str, numbers: tuple[int, ...] | None = None
) -> set[str]:
    """Blobs the parts of an upload name (only parts ``numbers`` if given)."""
    safe = upload_id.replace("'", "''")
    where = f"upload_id = '{safe}'"
    if numbers is not None:
        where += f" AND part_number IN ({', '.join(str(int(n)) for n in numbers)})"
    return _query(data_dir, f"SELECT blob_id FROM parts WHERE {where}")  # noqa: S608 - quoted
