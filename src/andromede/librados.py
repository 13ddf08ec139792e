"""librados plumbing for RADOS sites: one connection per cluster and user per process, errors
as OSError, and completions handed to the event loop.

librados is asynchronous: each operation completes on one of its threads, which hands the
result to the event loop (:class:`Bridge`). Only connecting, the monitor's statistics and the
listing of a pool block a thread of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from andromede.core import errors

# Set on every connection: an operation against a cluster that stopped answering fails after
# these many seconds instead of waiting for ever.
OSD_OP_TIMEOUT_S = 15
MON_OP_TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 5
RECONNECT_AFTER_S = 3.0
# librados.h's LIBRADOS_OPERATION_FULL_TRY (the binding does not export it): a write to a full
# pool or cluster is answered ENOSPC or EDQUOT at once instead of waiting for space until the
# operation times out, and a remove goes through, so that space can be freed (radosgw sets it
# on its deletes for the same reason).
OPERATION_FULL_TRY = 64


def load_rados() -> Any:
    try:
        import rados  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - install-deps makes it importable
        raise OSError(
            errno.ENOSYS,
            "python3-rados is not importable here: run scripts/install-deps",
        ) from exc
    return rados


def os_error(exc: BaseException, what: str) -> OSError:
    """A librados failure as an OSError naming what failed (placement takes an OSError for a
    site it cannot reach)."""
    if isinstance(exc, OSError) and not _is_rados_error(exc):
        return exc
    code = getattr(exc, "errno", None) or errno.EIO
    return OSError(abs(code), f"{what}: {exc}")


def _is_rados_error(exc: BaseException) -> bool:
    return type(exc).__module__ == "rados"


def raise_for(code: int, what: str) -> None:
    """Map a negative librados return value."""
    if code >= 0:
        return
    code = -code
    if code in (errno.ENOSPC, errno.EDQUOT):
        raise errors.StorageFull()
    raise OSError(code, f"{what}: {errno.errorcode.get(code, code)}")


class Bridge:
    """Turns librados completions into futures of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def future(self) -> tuple[asyncio.Future[tuple[int, Any]], Callable[..., None]]:
        fut: asyncio.Future[tuple[int, Any]] = self._loop.create_future()

        def done(completion: Any, *rest: Any) -> None:
            result = (completion.get_return_value(), rest[0] if rest else None)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(_settle, fut, result)

        return fut, done


def _settle(fut: asyncio.Future[tuple[int, Any]], result: tuple[int, Any]) -> None:
    if not fut.done():
        fut.set_result(result)


class Cluster:
    """One connection per (conf, user) per process, made on first use and made again after
    a failure (no more often than every ``RECONNECT_AFTER_S``)."""

    _all: ClassVar[dict[tuple[str, str], Cluster]] = {}
    _all_lock = threading.Lock()

    def __init__(self, conf: str, user: str) -> None:
        self.conf, self.user = conf, user
        self._handle: Any = None
        self._ioctxs: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._failed: tuple[float, OSError] | None = None

    @classmethod
    def of(cls, conf: str, user: str) -> Cluster:
        with cls._all_lock:
            found = cls._all.get((conf, user))
            if found is None:
                found = cls._all[(conf, user)] = cls(conf, user)
            return found

    def ioctx(self, pool: str, namespace: str = "") -> Any:
        """The I/O context of ``pool`` (in ``namespace``; blocking: called on a worker
        thread). OSError when the cluster cannot be reached, the key is refused or the pool
        does not exist."""
        with self._lock:
            found = self._ioctxs.get((pool, namespace))
            if found is not None:
                return found
            if self._handle is None:
                # A cluster that could not be reached is not tried again at once (each try
                # waits up to the connect timeout); a missing pool does not count here: it
                # says nothing of the other pools of the same cluster.
                failed = self._failed
                if failed is not None and time.monotonic() - failed[0] < RECONNECT_AFTER_S:
                    raise failed[1]
                try:
                    self._handle = self._connect()
                except OSError as exc:
                    self._failed = (time.monotonic(), exc)
                    raise
                self._failed = None
            try:
                found = self._handle.open_ioctx(pool)
                if namespace:
                    found.set_namespace(namespace)
            except load_rados().ObjectNotFound:
                raise OSError(
                    errno.ENOENT, f"pool {pool!r} does not exist in the cluster of {self.conf}"
                ) from None
            except Exception as exc:
                raise os_error(exc, f"cannot open pool {pool!r} of {self.conf}") from None
            self._ioctxs[(pool, namespace)] = found
            return found

    def _connect(self) -> Any:
        rados = load_rados()
        try:
            handle = rados.Rados(
                conffile=self.conf,
                rados_id=self.user,
                conf={
                    "rados_osd_op_timeout": str(OSD_OP_TIMEOUT_S),
                    "rados_mon_op_timeout": str(MON_OP_TIMEOUT_S),
                    "client_mount_timeout": str(CONNECT_TIMEOUT_S),
                },
            )
        except Exception as exc:
            raise os_error(exc, f"cannot read the Ceph configuration {self.conf}") from None
        try:
            handle.connect(timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:
            with contextlib.suppress(Exception):
                handle.shutdown()
            if isinstance(exc, rados.PermissionError | rados.PermissionDeniedError):
                raise OSError(
                    errno.EACCES,
                    f"Ceph refused client.{self.user}'s key (check the key ring {self.conf} names)",
                ) from None
            raise os_error(
                exc, f"cannot reach the Ceph cluster of {self.conf} as client.{self.user}"
            ) from None
        return handle

    def stats(self) -> tuple[int, int | None]:
        """(bytes stored in the cluster, bytes available), raw; available None when the
        cluster reports no statistics (no manager running)."""
        stats = self._handle.get_cluster_stats()
        if not stats.get("kb"):
            return 0, None
        return stats["kb_used"] * 1024, stats["kb_avail"] * 1024

    def pool_size(self, pool: str) -> int:
        """The pool's replica count (1 when the monitor does not say)."""
        ret, out, _ = self._handle.mon_command(
            json.dumps({"prefix": "osd pool get", "pool": pool, "var": "size", "format": "json"}),
            b"",
        )
        if ret != 0:
            return 1
        return max(1, int(json.loads(out).get("size", 1)))
