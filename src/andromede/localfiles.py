"""Files in the data dir that the server writes and the local CLI reads.

``root-credentials.json`` (0600): the operator's access key and secret.
``server.json``: where the server listens, so ``andromede admin --data-dir`` finds it.
``started``: the token of the ``serve`` run whose start-up sweep is done (see
``workers/lease.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from andromede.core.ids import new_access_key_id, new_secret_key

CREDENTIALS_FILE = "root-credentials.json"
SERVER_FILE = "server.json"
FORMAT = 1


@dataclass(frozen=True)
class RootCredentials:
    """The operator's key pair."""

    access_key_id: str
    secret_key: str


def fsync_dir(path: str | Path) -> None:
    """Make a create, rename or unlink in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_json(path: Path, data: dict[str, object]) -> None:
    """Write a JSON file atomically and durably with mode 0600 (temporary file, fsync,
    rename, fsync of the directory)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_credentials(data_dir: Path) -> RootCredentials | None:
    """The stored root credentials, if the server was started on this data dir."""
    path = data_dir / CREDENTIALS_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return RootCredentials(data["access_key_id"], data["secret_key"])


def write_credentials(data_dir: Path, creds: RootCredentials) -> None:
    """Store root credentials (0600)."""
    write_private_json(
        data_dir / CREDENTIALS_FILE,
        {"format": FORMAT, "access_key_id": creds.access_key_id, "secret_key": creds.secret_key},
    )


def write_server_info(data_dir: Path, endpoint: str) -> None:
    """Record where the server listens."""
    write_private_json(data_dir / SERVER_FILE, {"format": FORMAT, "endpoint": endpoint})


def read_server_endpoint(data_dir: Path) -> str | None:
    """The endpoint of the server running on this data dir, if recorded."""
    path = data_dir / SERVER_FILE
    if not path.exists():
        return None
    return str(json.loads(path.read_text(encoding="utf-8"))["endpoint"])


def prepare_data_dir(data_dir: Path) -> tuple[RootCredentials, bool]:
    """Create the data dir and, on first start, the root credentials (0600), from
    ``ANDROMEDE_ROOT_ACCESS_KEY`` / ``ANDROMEDE_ROOT_SECRET_KEY`` (or their ``_FILE``
    variants) when set, else new random ones.

    Returns the credentials and whether they were created by this call.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = read_credentials(data_dir)
    if existing is not None:
        return existing, False
    access = _env_secret("ANDROMEDE_ROOT_ACCESS_KEY") or new_access_key_id()
    secret = _env_secret("ANDROMEDE_ROOT_SECRET_KEY") or new_secret_key()
    creds = RootCredentials(access, secret)
    write_credentials(data_dir, creds)
    return creds, True


def _env_secret(name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(name + "_FILE")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return None
