"""What a test does when a real part it needs (PostgreSQL, Ceph) is not installed here."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from support.ceph import CephCluster, CephUnavailable, start_ceph


def unavailable(what: str, why: object) -> NoReturn:
    """Skip, except under CI (``CI=true``), where every real part must be there: fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required under CI: {why}")
    pytest.skip(f"{what} not available: {why}")


@contextlib.contextmanager
def ceph_cluster(root: Path, **options: Any) -> Iterator[CephCluster]:
    """A Ceph cluster started in ``root`` (``start_ceph``'s options), removed after; where
    Ceph is missing, :func:`unavailable`."""
    try:
        cluster = start_ceph(root, **options)
    except CephUnavailable as exc:
        unavailable("Ceph", exc)
    try:
        yield cluster
    finally:
        cluster.remove()
