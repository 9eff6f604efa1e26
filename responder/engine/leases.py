"""A step's lease while it runs: renewed while the call and read-back go on, given back
when no call was made, ended for every step at a graceful stop.

The lease itself lives in the store (store/claims.py); this module keeps it alive. A
lease that cannot be renewed is lost: from then on another replica, or a person holding
the key, may act, and this replica no longer writes the step's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from responder.engine.levels import KeyLock
from responder.errors import StoreError
from responder.store.claims import give_back_claim, let_go_all, renew
from responder.store.steps import StepRow
from responder.store.types import Pool

log = structlog.get_logger("responder.engine")


@dataclass(frozen=True)
class Early:
    """A step claimed while recorded: the key lock's count then, and when."""

    lock: KeyLock
    taken: int
    at: float

    def holds(self, lock: KeyLock, lease_s: float) -> bool:
        """The early claim holds if only this task took the key's lock since it was
        recorded and its lease (from the recording transaction) has most of its time left."""
        return (self.lock is lock and lock.taken == self.taken + 1
                and time.monotonic() - self.at < lease_s / 2)


@dataclass
class Lease:
    """Set by the renewer when the step's claim could not be kept."""

    lost: bool = False
    held_back: bool = False
    """The mode changed after the claim: no call was made, the claim was given back."""


class Leases:
    """One replica's step leases."""

    def __init__(self, pool: Pool, replica: str, lease_s: float) -> None:
        self._pool = pool
        self.replica = replica
        self.lease_s = lease_s

    @contextlib.asynccontextmanager
    async def kept(self, step: StepRow, first_s: float) -> AsyncIterator[Lease]:
        """Renew the step's lease while the call and read-back run."""
        lease = Lease()
        renewer = asyncio.create_task(self._renew(step, lease, first_s),
                                      name=f"lease-{step.id}")
        try:
            yield lease
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew(self, step: StepRow, lease: Lease, first_s: float) -> None:
        wait_s = first_s
        while True:
            await asyncio.sleep(wait_s)
            wait_s = self.lease_s / 3
            try:
                is_held = await renew(self._pool, step.id, self.replica, self.lease_s)
            except StoreError as e:
                log.warning("lease not renewed: store unavailable", step=step.id, error=str(e))
                continue
            if not is_held:
                # Once the lease has run out another replica, or a person holding the key,
                # may act on it: this replica no longer writes the step's outcome. The new
                # holder calls again with the same Idempotency-Key and records it.
                lease.lost = True
                log.warning("lease lost while calling; the outcome is left to the next"
                            " holder", step=step.id)
                return

    async def give_back(self, step: StepRow) -> None:
        """Return a live claim that made no call, so a person holding the controls
        (break-glass) need not wait it out."""
        await give_back_claim(self._pool, step.id, self.replica)

    async def let_go(self) -> int:
        """End this replica's live leases so another replica can take over without waiting."""
        return await let_go_all(self._pool, self.replica)
