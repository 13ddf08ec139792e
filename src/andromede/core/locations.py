"""Where a site's bytes live, as the registry writes it down (``Site.path``).

Two kinds:

* a local directory: an absolute path (``/srv/andromede/site-a``);
* a Ceph pool through librados: ``rados:POOL?conf=/etc/ceph/ceph.conf&user=andromede``
  (the cluster's configuration file on every gateway's host, the pool, and the cephx user
  whose key ring that file names; the key itself never enters the registry), and optionally
  ``&namespace=NS``: a RADOS namespace of the pool, so that several sites can share a pool.

No I/O here: the data plane opens a location, the placement service checks it first.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from dataclasses import dataclass

from andromede.core import errors

RADOS_SCHEME = "rados:"
# Ceph accepts more in a pool name; this is what we let into a registry entry and a log line.
POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,126}$")
CEPH_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_PATH = 4096


def check_path(path: str, what: str) -> str:
    """An absolute, normalised path without control characters (InvalidArgument)."""
    if (
        not path
        or len(path) > MAX_PATH
        or not posixpath.isabs(path)
        or any(ord(c) < 0x20 or c == "\x7f" for c in path)
    ):
        raise errors.InvalidArgument(f"{what} must be an absolute path.")
    return posixpath.normpath(path)


@dataclass(frozen=True)
class RadosLocation:
    """A Ceph pool, reached with ``conf`` as cephx user ``user``."""

    pool: str
    conf: str
    user: str = "admin"
    namespace: str = ""

    def __post_init__(self) -> None:
        if not POOL.match(self.pool):
            raise errors.InvalidArgument(
                "A pool name is 1 to 127 letters, digits, '.', '_' or '-'."
            )
        if not CEPH_USER.match(self.user):
            raise errors.InvalidArgument(
                "A Ceph user is 1 to 64 letters, digits, '.', '_' or '-' (without 'client.')."
            )
        if self.namespace and not POOL.match(self.namespace):
            raise errors.InvalidArgument(
                "A namespace is 1 to 127 letters, digits, '.', '_' or '-'."
            )
        object.__setattr__(self, "conf", check_path(self.conf, "The Ceph configuration file"))

    def __str__(self) -> str:
        fields = {"conf": self.conf, "user": self.user}
        if self.namespace:
            fields["namespace"] = self.namespace
        query = urllib.parse.urlencode(fields)
        return f"{RADOS_SCHEME}{self.pool}?{query}"

    @classmethod
    def parse(cls, location: str) -> RadosLocation | None:
        """The pool a location names; None for a local directory. InvalidArgument for a
        ``rados:`` location that is malformed."""
        if not location.startswith(RADOS_SCHEME):
            return None
        pool, _, query = location[len(RADOS_SCHEME) :].partition("?")
        try:
            fields = urllib.parse.parse_qs(query, strict_parsing=True, max_num_fields=4)
        except ValueError as exc:
            raise errors.InvalidArgument(f"Malformed RADOS location: {exc}.") from None
        conf, user = fields.get("conf", []), fields.get("user", ["admin"])
        namespace = fields.get("namespace", [""])
        if (
            len(conf) != 1
            or len(user) != 1
            or len(namespace) != 1
            or set(fields) - {"conf", "user", "namespace"}
        ):
            raise errors.InvalidArgument(
                "A RADOS location names one conf, one user and at most one namespace."
            )
        return cls(pool, conf[0], user[0], namespace[0])


def describe(location: str) -> str:
    """How ``site list`` shows a location (the key ring's place stays in the conf file)."""
    rados = RadosLocation.parse(location)
    if rados is None:
        return location
    where = f"{rados.pool}/{rados.namespace}" if rados.namespace else rados.pool
    return f"rados:{where} ({rados.conf}, client.{rados.user})"
