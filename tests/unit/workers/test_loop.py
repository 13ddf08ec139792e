"""The background jobs' loop: a failing pass does not end the job."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from andromede.workers.loop import every


async def test_a_failing_pass_is_logged_and_the_next_runs(caplog: pytest.LogCaptureFixture) -> None:
    passes: list[int] = []
    done = asyncio.Event()

    async def job() -> None:
        passes.append(len(passes))
        if len(passes) == 1:
            raise RuntimeError("site away")
        if len(passes) == 3:
            done.set()

    task = asyncio.create_task(every(0.001, job, "test job"))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(passes) >= 3
    assert "test job failed" in caplog.text


async def test_wait_first_waits_an_interval_before_the_first_pass() -> None:
    passes: list[float] = []

    async def job() -> None:
        passes.append(asyncio.get_running_loop().time())

    task = asyncio.create_task(every(60, job, "slow job", wait_first=True))
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert passes == []
