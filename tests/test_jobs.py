"""Background jobs: a periodic job outlives a store outage and says so once, and the
shutdown's phases each close even when one before them fails."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from structlog.testing import capture_logs

from responder.daemon import _close_in_order
from responder.errors import StoreUnavailable
from responder.jobs.periodic import every


async def test_periodic_job_outlives_an_outage_and_logs_it_once() -> None:
    """Store errors (ours and the driver's raw socket errors) only delay the next run;
    the outage is logged when it starts and when it ends."""
    runs: list[int] = []
    done = asyncio.Event()

    async def step() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise StoreUnavailable("down")
        if len(runs) == 3:
            raise ConnectionRefusedError("refused")  # mapped at the store boundary
        if len(runs) == 5:
            done.set()

    with capture_logs() as logs:
        task = asyncio.create_task(every(0.001, step, "test-job"))
        await asyncio.wait_for(done.wait(), timeout=10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    events = [(e["event"], e.get("job")) for e in logs]
    assert events == [("job not done; tried again every period", "test-job"),
                      ("job done again", "test-job")]


async def test_each_phase_closes_even_after_one_fails() -> None:
    """The phases close in the order given, and a failing one does not keep the rest open."""
    closed: list[str] = []
    stacks = [contextlib.AsyncExitStack() for _ in range(3)]

    async def close(name: str) -> None:
        closed.append(name)
        if name == "jobs":
            raise RuntimeError("a job would not stop")

    for stack, name in zip(stacks, ("jobs", "http", "core"), strict=True):
        stack.push_async_callback(close, name)
    with pytest.raises(RuntimeError, match="would not stop"):
        await _close_in_order(*stacks)
    assert closed == ["jobs", "http", "core"]
