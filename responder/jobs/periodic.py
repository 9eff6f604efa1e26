"""One loop shape for the jobs that run a step every few seconds on every replica."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from responder.errors import StoreError
from responder.store.db import store_errors

log = structlog.get_logger("responder.jobs")


async def every(period_s: float, step: Callable[[], Awaitable[object]], name: str) -> None:
    """Sleep, run the step, repeat. A step the store cannot serve now is tried again at the
    next period: each step is idempotent (its writes are conditional on the rows). An
    outage is logged once when it starts and once when it ends, not at every period."""
    failing = False
    while True:
        await asyncio.sleep(period_s)
        try:
            async with store_errors():  # a pool that cannot connect raises the driver's errors
                await step()
        except StoreError as e:
            if not failing:
                log.warning("job not done; tried again every period", job=name, error=str(e))
            failing = True
        else:
            if failing:
                log.info("job done again", job=name)
            failing = False
