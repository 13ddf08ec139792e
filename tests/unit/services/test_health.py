"""The readiness rule: ready when the database answers in time and the trail takes records;
a site down is not a reason (the real database going away: test_postgres_restart.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from andromede.core import errors
from andromede.services import health
from andromede.services.health import Readiness


class Store:
    def __init__(self) -> None:
        self.fault: BaseException | None = None
        self.delay = 0.0
        self.calls = 0

    async def list_regions(self) -> list[Any]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fault is not None:
            raise self.fault
        return []


class Audit:
    ok = True

    def healthy(self) -> bool:
        return self.ok


@pytest.fixture(autouse=True)
def no_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "REUSE_S", 0.0)
    monkeypatch.setattr(health, "DATABASE_WAIT_S", 0.2)


async def test_ready_then_each_reason() -> None:
    store, audit = Store(), Audit()
    ready = Readiness(store, audit)  # type: ignore[arg-type]
    assert await ready.problems() == []
    store.fault = errors.MetadataUnavailable()
    assert [p.split(":")[0] for p in await ready.problems()] == [
        "the metadata database cannot be reached"
    ]
    store.fault, store.delay = None, 1.0
    assert await ready.problems() == ["the metadata database did not answer within 0.2 s"]
    store.delay, audit.ok = 0.0, False
    assert await ready.problems() == ["the audit trail refuses records"]


async def test_a_result_is_reused_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "REUSE_S", 60.0)
    store = Store()
    ready = Readiness(store, Audit())  # type: ignore[arg-type]
    for _ in range(5):
        assert await ready.problems() == []
    assert store.calls == 1
