"""Background jobs: the loops a daemon runs beside intake, each named, started from the one
list in the daemon's start phase and stopped in reverse order at shutdown.

    reload        rules again on SIGHUP (the API reloads through the same reloader)
    expiries      break-glass pauses and release requests that ran out, written down
    modes         the automation mode another replica may have switched, and the storm
                  guard's view of what every replica contained
    housekeeping  forgetting old event ids and revoked web sessions
    flush         how the writer and the evidence sealer stop without losing queued work
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from responder.jobs.periodic import every

Stop = Callable[[asyncio.Task[None]], Awaitable[None]]


@dataclass(frozen=True)
class Job:
    """A named background loop; ``stop`` ends it at shutdown (default: cancel it)."""

    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    stop: Stop | None = None


def periodic(name: str, period_s: float, step: Callable[[], Awaitable[object]]) -> Job:
    """A job that runs ``step`` every ``period_s``; a store outage only delays it."""
    return Job(name, functools.partial(every, period_s, step, name))


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel a job's task and wait for it to end."""
    if task.done():
        return  # ended by itself; an error was logged when it died
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
