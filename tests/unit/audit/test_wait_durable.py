"""Waiting for a record's acknowledgement: bounded, and the writer's later acknowledgement of a
record nobody waits for any more is harmless."""

from __future__ import annotations

import asyncio

import pytest

from andromede.audit.remote import wait_durable
from andromede.core import errors


async def test_an_acknowledged_record_returns() -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.01, done.set_result, None)
    await wait_durable(done, 5.0, lambda: pytest.fail("no timeout expected"))


async def test_no_acknowledgement_in_time_refuses_the_request() -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    timeouts: list[bool] = []
    with pytest.raises(errors.AuditUnavailable):
        await wait_durable(done, 0.05, lambda: timeouts.append(True))
    assert timeouts == [True]
    assert done.done()  # the writer's late acknowledgement sees it is done and skips it


async def test_a_writer_failure_reaches_the_request() -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.01, done.set_exception, errors.AuditUnavailable())
    with pytest.raises(errors.AuditUnavailable):
        await wait_durable(done, 5.0, lambda: pytest.fail("no timeout expected"))


async def test_a_cancelled_request_leaves_no_timer() -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    waiter = asyncio.ensure_future(wait_durable(done, 0.05, lambda: pytest.fail("cancelled")))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert done.cancelled()
    await asyncio.sleep(0.1)  # the timer would have fired by now
