"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.ceph import CephCluster
from support.kmip import kmip_server
from support.postgres import PostgresUnavailable, start_postgres
from support.required import ceph_cluster, unavailable
from support.scheduling import schedule
from support.softhsm import softhsm_token
from support.timing import register as register_timing

# Session fixtures defined once for every directory: SoftHSM2 reads its configuration once per
# process, so a second definition of the token fixture would make a token nobody can see.
__all__ = ["kmip_server", "softhsm_token"]


def pytest_configure(config: pytest.Config) -> None:
    """Print the time spent per folder at the end of the run (``support.timing``)."""
    register_timing(config)


# First, so that xdist, when it tags each test with its group, sees the groups set here.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist: long tests first, module-fixture users together (support.scheduling)."""
    schedule(config, items)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session: its ``postgresql+asyncpg`` URL (as superuser).

    Give each test its own database with ``support.postgres.create_database``. Where the
    binaries are missing this skips, except under CI (``CI=true``), where it fails.
    """
    try:
        url, stop = start_postgres()
    except PostgresUnavailable as exc:
        unavailable("PostgreSQL", exc)
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="session")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    """A Ceph cluster (RADOS only: one monitor, one memstore OSD, pool ``andromede``) for the
    whole session; give each test its own RADOS namespace. Where Ceph is missing this skips,
    except under CI, where it fails."""
    with ceph_cluster(tmp_path_factory.mktemp("ceph")) as cluster:
        yield cluster
