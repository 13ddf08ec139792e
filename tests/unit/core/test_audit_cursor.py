"""The cursor of a query over several audit chains (a cluster's gateways)."""

from __future__ import annotations

import pytest

from andromede.core.audit import advance_after, format_after, parse_after

A, B = "a" * 32, "b" * 32


def test_a_cursor_round_trips_and_advances() -> None:
    cursor = parse_after(f"{B}:7,{A}:3")
    assert cursor == ((A, 3), (B, 7))
    assert format_after(cursor) == f"{A}:3,{B}:7"
    records = [{"chain": A, "seq": 4}, {"chain": B, "seq": 8}, {"chain": A, "seq": 9}]
    assert advance_after(cursor, records) == ((A, 9), (B, 8))
    assert advance_after((), [{"chain": B, "seq": 1}]) == ((B, 1),)
    assert parse_after("") == ()


@pytest.mark.parametrize(
    "bad",
    [f"{A}", f"{A}:", f"{A}:x", f"{A}:-1", "zz:1", f"{A}:1,{A}:2", f"{A}:{'9' * 20}", f"{A}:1,"],
)
def test_malformed_cursors_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        parse_after(bad)
