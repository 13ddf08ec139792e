"""The trail beyond the gateway's host: every chain's bytes also in a Ceph pool.

In a cluster (``ANDROMEDE_AUDIT_RADOS`` set to a ``rados:`` location) each gateway's
:class:`~andromede.audit.chain.ChainWriter` writes every group to its local segment, syncs it,
then writes the same bytes at the same offset to a RADOS object, and publishes the group (lets
the requests answer) only once RADOS has acknowledged them, which it does once every replica
of the placement group holds them. Losing a gateway, its disk included, loses no acknowledged
record: the pool holds its chain.

Objects (in the location's pool and namespace):

    trail/<chain>/public-key.pem   the chain's Ed25519 public key
    trail/<chain>/<NNNNNNNNNN>.log a segment, byte for byte as on the gateway's disk

``<chain>`` is the id a trail directory is given at its first start (``chain-id`` in it).
:func:`export` copies every chain into a directory (one sub-directory each) that ``andromede
audit verify`` checks in one run. Calls block (the writer process and the inline appender are
synchronous writers); each is bounded by librados' operation time limit.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any, Final

from andromede.core.locations import RadosLocation
from andromede.librados import Cluster, os_error

PREFIX: Final = "trail/"
KEY_OBJECT: Final = "public-key.pem"
_SEGMENT = re.compile(r"^\d{10}\.log$")
_CHAIN = re.compile(r"^[0-9a-f]{32}$")
READ_PIECE: Final = 4 << 20


class RadosMirror:
    """Segments of one or more chains in a Ceph pool."""

    def __init__(self, location: RadosLocation) -> None:
        self.location = location
        self._cluster = Cluster.of(location.conf, location.user)

    def _io(self) -> Any:
        return self._cluster.ioctx(self.location.pool, self.location.namespace)

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)``; a librados failure as an OSError (errno kept) naming the pool."""
        try:
            return fn(*args)
        except OSError:
            raise
        except Exception as exc:
            if type(exc).__module__ == "rados":
                raise os_error(exc, f"audit mirror {self.location.pool}: {what}") from None
            raise

    # --- writing (a gateway's chain) -------------------------------------------------------------
    def write(self, chain: str, segment_name: str, offset: int, data: bytes) -> None:
        """``data`` at ``offset`` of the chain's segment, acknowledged by every replica."""
        io = self._io()
        self._call("write", io.write, _oid(chain, segment_name), data, offset)

    def size(self, chain: str, segment_name: str) -> int:
        """How many bytes the mirror holds of a segment (0: none)."""
        io = self._io()
        try:
            return int(self._call("stat", io.stat, _oid(chain, segment_name))[0])
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return 0
            raise

    def put_key(self, chain: str, pem: bytes) -> None:
        io = self._io()
        self._call("write", io.write_full, _oid(chain, KEY_OBJECT), pem)

    def remove(self, chain: str, segment_name: str) -> None:
        """Forget a segment (retention); missing is fine."""
        io = self._io()
        try:
            self._call("remove", io.remove_object, _oid(chain, segment_name))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    # --- reading (export) ---------------------------------------------------------------------
    def chains(self) -> dict[str, list[str]]:
        """Every chain in the pool and its segment names, in order."""
        io = self._io()
        found: dict[str, list[str]] = {}
        for obj in self._call("list", lambda: list(io.list_objects())):
            key: str = obj.key
            if not key.startswith(PREFIX):
                continue
            chain, _, name = key[len(PREFIX) :].partition("/")
            if not _CHAIN.match(chain):
                continue
            names = found.setdefault(chain, [])
            if _SEGMENT.match(name):
                names.append(name)
        return {chain: sorted(names) for chain, names in sorted(found.items())}

    def read(self, chain: str, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes of a segment or key object from ``offset`` (None: to its end;
        fewer at its end)."""
        io, oid = self._io(), _oid(chain, name)
        out = bytearray()
        while length is None or len(out) < length:
            want = READ_PIECE if length is None else min(READ_PIECE, length - len(out))
            piece = self._call("read", io.read, oid, want, offset + len(out))
            out += piece
            if len(piece) < want:
                break
        return bytes(out)


def _oid(chain: str, name: str) -> str:
    return f"{PREFIX}{chain}/{name}"


def export(mirror: RadosMirror, destination: Path) -> dict[str, int]:
    """Copy every chain into ``destination/<chain>/`` (its segments and ``public-key.pem``);
    returns each chain's segment count."""
    destination.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for chain, names in mirror.chains().items():
        target = destination / chain
        target.mkdir(exist_ok=True)
        for name in [*names, KEY_OBJECT]:
            (target / name).write_bytes(mirror.read(chain, name))
        counts[chain] = len(names)
    return counts
