"""Waiting for something to happen, rather than for a fixed time.

A fixed sleep is either too short on a slow day (the test fails) or too long on every other
(the suite crawls): poll the condition instead, often, with a generous deadline that only a
broken build reaches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_SECONDS = 10.0
DEFAULT_INTERVAL = 0.02


def wait_until(
    condition: Callable[[], T],
    seconds: float = DEFAULT_SECONDS,
    interval: float = DEFAULT_INTERVAL,
    what: str = "the condition",
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; fail the test
    with ``what`` in the message when ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {seconds} s (last: {result!r})")
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], T | Awaitable[T]],
    seconds: float = DEFAULT_SECONDS,
    interval: float = DEFAULT_INTERVAL,
    what: str = "the condition",
) -> T:
    """:func:`wait_until` inside an event loop: ``condition`` may be a coroutine function, and
    the loop keeps running (the servers under test may live in it) between calls."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {seconds} s (last: {result!r})")
        await asyncio.sleep(interval)
