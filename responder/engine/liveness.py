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

import structlog

from responder.errors import StoreError
from responder.store.identity import Identity
from responder.store.liveness import Watch

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
    checks = Watch(dsn, timeout_s=max(poll_s * 8, 2.0))
    held = identity.holds
    try:
        while True:
            was_held, held = held, identity.holds
            try:
                if held and (not was_held or await checks.hand_over_gone(identity.name)):
                    # Steps to take over, or ours again: the ones cancelled when our name
                    # was lost resume now rather than at the next sweep.
                    await executor.recover()
            except StoreError as e:
                log.warning("liveness watch: store unavailable; dead replicas' steps wait"
                            " for their leases meanwhile", error=str(e))
                await asyncio.sleep(max(poll_s, 1.0))
            await asyncio.sleep(poll_s)
    finally:
        checks.close()
