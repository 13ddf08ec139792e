"""Which process of a data dir runs the background jobs, and when the others may serve.

Every worker process of ``serve`` starts the same app; the one that takes the lease runs the
jobs, the others only serve requests. The kernel drops a ``flock`` when its process dies,
however it dies, so a restarted server never waits for a stale holder.

On a single host the lease holder also sweeps what a crash left behind (temporary files,
orphan blobs) before anyone serves: with no request in flight every leftover is dead,
whatever its age. The :class:`StartGate` tells the other workers it is done.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

# The name predates the other jobs; kept so that an older server on the same data dir still
# excludes a newer one.
LOCK_FILE = "sweeper.lock"
GATE_FILE = "started"


class JobLease:
    """An exclusive, non-blocking ``flock`` on a file in the data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def try_take(self) -> bool:
        """Take the lease if no other process holds it; True when this process now does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Let another process take it (a no-op when not held)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StartGate:
    """Open once the data dir's ``started`` file holds this ``serve`` run's token.

    A fixed name with a new token per run: what an earlier run left there (it was killed,
    say) keeps this run's workers waiting, as it must.
    """

    def __init__(self, data_dir: Path, token: str) -> None:
        self.path = data_dir / GATE_FILE
        self._token = token

    def is_open(self) -> bool:
        """True once :meth:`open` ran in this ``serve`` run."""
        try:
            return self.path.read_text(encoding="ascii") == self._token
        except (OSError, ValueError):
            return False

    def open(self) -> None:
        """Let every worker serve (written whole: a reader never sees half a token)."""
        tmp = self.path.with_name(GATE_FILE + ".tmp")
        tmp.write_text(self._token, encoding="ascii")
        os.replace(tmp, self.path)
