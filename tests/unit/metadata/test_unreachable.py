"""Which database errors mean "the database cannot be reached now" (503, the client retries)
rather than "this statement is wrong" (a bug, 500)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from andromede.metadata.engines import database_unreachable


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "unreachable"),
    [
        ("08006", True),  # connection failure
        ("08001", True),  # unable to connect
        ("57P01", True),  # terminating connection: administrator command
        ("57P02", True),  # crash shutdown
        ("57P03", True),  # the database system is starting up / shutting down
        ("53300", True),  # too many connections
        ("23505", False),  # unique violation: a bug if it escapes
        ("42P01", False),  # undefined table: a bug
        ("40001", False),  # serialization failure: retried before, never a 503 by itself
    ],
)
def test_sqlstates(sqlstate: str, unreachable: bool) -> None:
    exc = sa.exc.DBAPIError("SELECT 1", {}, _DriverError(sqlstate))
    assert database_unreachable(exc, sqlstate) is unreachable


def test_a_recognised_disconnect_is_unreachable_whatever_its_class() -> None:
    exc = sa.exc.DBAPIError("SELECT 1", {}, _DriverError("XX000"), connection_invalidated=True)
    assert database_unreachable(exc, "XX000")
    operational = sa.exc.OperationalError("SELECT 1", {}, _DriverError("XX000"))
    assert database_unreachable(operational, None)
