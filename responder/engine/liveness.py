"""Take over a dead replica's steps as soon as its database session ends.

A replica that dies mid-call leaves its step claimed under a lease. Waiting the lease out
costs seconds; the replica's name lock (store/identity.py) ends with its session at once.
The watcher looks every ``poll_s`` for owners of live leases whose name nobody holds, hands
their steps over (store/liveness.py: fenced by taking the name lock first) and wakes the
executor, which claims them, records the takeover and calls with the same
Idempotency-Key, each incident's steps in position order. docs/takeover.md says why a
replica whose session merely blipped is not called over.

This replica's own side of the fence: the moment its name session ends it cancels the
steps it is running, and it starts no call until it holds its name again (the executor's
``may_act`` asks ``Identity.holds``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import asyncpg
import structlog

from responder.store.db import UNAVAILABLE
from responder.store.identity import Identity
from responder.store.liveness import hand_over, owners_without_name

log = structlog.get_logger("responder.liveness")

POLL_S = 0.25
"""One indexed query per poll on each replica; a takeover starts within about this long."""


class Steps(Protocol):
    """The two executor hooks this module uses."""

    async def recover(self) -> int: ...

    def stand_down(self) -> None: ...


async def watch(identity: Identity, executor: Steps, dsn: str, *,
                poll_s: float = POLL_S) -> None:
    """Stand down when our name is lost; take over replicas whose name is gone."""
    identity.on_lost = executor.stand_down
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn, timeout=max(poll_s * 8, 2.0), server_settings={
                "application_name": "responder-liveness"})
            held = identity.holds
            while True:
                was_held, held = held, identity.holds
                if held and (not was_held or await _take_over_gone(conn, identity.name)):
                    # Steps to take over, or ours again: the ones cancelled when our name
                    # was lost resume now rather than at the next sweep.
                    await executor.recover()
                await asyncio.sleep(poll_s)
        except (*UNAVAILABLE, asyncpg.PostgresError) as e:
            log.warning("liveness watch: store unavailable; dead replicas' steps wait for"
                        " their leases meanwhile", error=str(e))
        finally:
            if conn is not None:
                conn.terminate()
        await asyncio.sleep(max(poll_s, 1.0))


async def _take_over_gone(conn: asyncpg.Connection, me: str) -> int:
    """Hand over the steps of every replica whose name session has ended; how many."""
    total = 0
    for owner in await owners_without_name(conn, me):
        total += await hand_over(conn, owner) or 0
    return total
