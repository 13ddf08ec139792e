"""Which process of a data dir runs the background jobs.

Every worker process of ``serve`` starts the same app; the one that takes this lock runs the
jobs, the others only serve requests. The kernel drops a ``flock`` when its process dies,
however it dies, so a restarted server never waits for a stale holder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

# The name predates the other jobs; kept so that an older server on the same data dir still
# excludes a newer one.
LOCK_FILE = "sweeper.lock"


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
