"""Step claims: which replica may call a step's target now, and until when.

A claim is a lease on a pending step row. Only one replica holds a live lease on a step,
and on any pending step of the same control key, so calls on one key never overlap across
replicas (within a replica the executor's key lock does that). A lease that runs out
(its replica died or lost the store) can be taken over; the new holder calls again with
the same Idempotency-Key, which the target answers without applying twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from responder.store import locks
from responder.store.db import store_errors
from responder.store.levels import StepHeld, step_held
from responder.store.types import Conn, Pool

# One statement, no lock held between round trips. It row-locks every pending step of the
# step's control key, in id order (so two claimers cannot deadlock). Under READ COMMITTED a
# row locked by a concurrent claim is waited for and then read as that claim committed it,
# so of two replicas claiming steps on one key, the second sees the first's live lease.
# A person's change to a key holds the key's lock (store/locks.py; session level, on its
# own connection) while it calls the target; an automatic claim on the key is refused while
# it is held. Two replicas therefore never change one key at once, whoever acts.

CLAIM_SQL = """
WITH free AS (
    -- Taken and released within this statement: only asks whether a person holds the key.
    SELECT {key_free} AS ok
    FROM steps WHERE id = $1
), key_rows AS (
    SELECT o.id, o.claimed_by, o.lease_until
    FROM steps o, (SELECT control, key FROM steps WHERE id = $1) k
    WHERE o.control = k.control AND o.key = k.key AND o.status = 'pending'
    ORDER BY o.id
    FOR UPDATE OF o
), target AS (
    SELECT * FROM key_rows WHERE id = $1
), claimed AS (
    UPDATE steps s SET claimed_by = $2, lease_until = now() + make_interval(secs => $3),
                       claims = s.claims + 1
    FROM target t
    WHERE s.id = t.id
      AND (t.claimed_by IS NULL OR t.claimed_by = $2 OR t.lease_until < now())
      AND NOT EXISTS (SELECT 1 FROM key_rows b WHERE b.id <> $1 AND b.claimed_by <> $2
                      AND b.lease_until >= now())
      AND (SELECT ok FROM free)
    RETURNING s.claims
)
SELECT (SELECT count(*) FROM target) AS is_pending, (SELECT claims FROM claimed) AS claims,
       (SELECT ok FROM free) AS key_free,
       (SELECT claimed_by FROM target) AS previous,
       (SELECT lease_until FROM target) AS previous_until
"""

CLAIM_SQL = CLAIM_SQL.replace("{key_free}", locks.KEY_FREE_IN_XACT_SQL)

RECHECK_SQL = """
WITH undone AS (
    UPDATE steps s SET claims = s.claims - 1, lease_until = now()
    WHERE s.id = $1 AND s.claimed_by = $2 AND s.status = 'pending' AND EXISTS (
        SELECT 1 FROM steps o
        WHERE o.control = s.control AND o.key = s.key AND o.status = 'pending'
          AND o.id <> s.id AND o.claimed_by <> $2 AND o.lease_until >= now())
    RETURNING 1
)
SELECT count(*) FROM undone
"""
"""Run after a granted claim, in a statement of its own so it sees every commit before it.
CLAIM_SQL reads the key's steps as its statement began; a step another replica claimed in
the transaction that recorded it (RECORD_SQL) and committed while this claim waited on a
row lock is not among them. If there is one, the claim is given back."""

LIVE_CLAIM_SQL = """
SELECT claimed_by FROM steps
WHERE control = $1 AND key = $2 AND status = 'pending' AND lease_until >= now()
LIMIT 1
"""

RENEW_SQL = """
UPDATE steps SET lease_until = now() + make_interval(secs => $3)
WHERE id = $1 AND claimed_by = $2 AND status = 'pending' AND lease_until >= now()
RETURNING id
"""

LET_GO_SQL = """
UPDATE steps SET lease_until = now()
WHERE claimed_by = $1 AND status = 'pending' AND lease_until > now()
RETURNING id
"""

GIVE_BACK_SQL = """
UPDATE steps SET claims = claims - 1, lease_until = now()
WHERE id = $1 AND claimed_by = $2 AND status = 'pending' AND lease_until >= now()
RETURNING id
"""


@dataclass(frozen=True)
class Claim:
    """A claim taken; ``previous`` names the replica whose lease it replaced, if another."""

    step_id: int
    previous: str | None
    previous_until: datetime | None
    claims: int

    @property
    def is_takeover(self) -> bool:
        return self.previous is not None


Refusal = Literal["closed", "busy", "locked"]


async def claim_step(conn: Conn, step_id: int, replica: str,
                     lease_s: float) -> Claim | Refusal:
    """Claim a pending step for ``replica``. "closed": nothing left to do; "busy": another
    replica holds a live lease on it or on another pending step of the same control key;
    "locked": no lease stands in the way, but someone holds the key's lock now (a person's
    change, or a batch recording a step on the key, which holds it for milliseconds)."""
    row = await conn.fetchrow(CLAIM_SQL, step_id, replica, lease_s)
    assert row is not None  # the statement always returns one row
    if not row["is_pending"]:
        return "closed"
    claims = row["claims"]
    if claims is None:
        return "busy" if row["key_free"] else "locked"
    if await conn.fetchval(RECHECK_SQL, step_id, replica):
        return "busy"
    previous = row["previous"] if row["previous"] != replica else None
    return Claim(step_id, previous, row["previous_until"] if previous else None, claims)


async def renew_claim(conn: Conn, step_id: int, replica: str, lease_s: float) -> bool:
    """Extend our lease; False if the step closed or another replica took it over."""
    return await conn.fetchval(RENEW_SQL, step_id, replica, lease_s) is not None


async def let_go(conn: Conn, replica: str) -> int:
    """End ``replica``'s live leases now (ours at a graceful stop, or a predecessor's found
    gone at start) so another claim need not wait them out."""
    return len(await conn.fetch(LET_GO_SQL, replica))


async def give_back(conn: Conn, step_id: int, replica: str) -> bool:
    """Return a live claim that made no call (so it does not count as one that may have
    reached the target); False if it was not ours or not live."""
    return await conn.fetchval(GIVE_BACK_SQL, step_id, replica) is not None


async def claim(pool: Pool, step_id: int, replica: str,
                lease_s: float) -> tuple[Claim | Refusal, StepHeld | None]:
    """Claim a step (claim_step) and, if granted, read what the store holds for its key."""
    async with store_errors(), pool.acquire() as conn:
        claimed = await claim_step(conn, step_id, replica, lease_s)
        # Read after the claim, in a statement of its own: it must see every outcome
        # committed before the claim was granted.
        held = await step_held(conn, step_id) if isinstance(claimed, Claim) else None
    return claimed, held


async def renew(pool: Pool, step_id: int, replica: str, lease_s: float) -> bool:
    async with store_errors(), pool.acquire() as conn:
        return await renew_claim(conn, step_id, replica, lease_s)


async def let_go_all(pool: Pool, replica: str) -> int:
    async with store_errors(), pool.acquire() as conn:
        return await let_go(conn, replica)


async def give_back_claim(pool: Pool, step_id: int, replica: str) -> bool:
    async with store_errors(), pool.acquire() as conn:
        return await give_back(conn, step_id, replica)


class KeyBusy(Exception):
    """Someone else is changing the key: automation on a replica, or another person."""


@contextlib.asynccontextmanager
async def hold_key(pool: Pool, control: str, key: str, wait_s: float) -> AsyncIterator[None]:
    """Hold a control key for a person's change, across replicas: wait up to ``wait_s`` for
    automatic steps in flight on it (live claims) and for other people's changes to end."""
    async with contextlib.AsyncExitStack() as stack:
        async with store_errors():
            conn = await stack.enter_async_context(pool.acquire())
            deadline = time.monotonic() + wait_s
            while True:
                if await locks.hold_key(conn, control, key):
                    holder = await conn.fetchval(LIVE_CLAIM_SQL, control, key)
                    if holder is None:
                        break
                    await locks.free_key(conn, control, key)
                    why = f"automation ({holder}) is changing {control}[{key}] now"
                else:
                    why = f"another person's change to {control}[{key}] is in progress"
                if time.monotonic() >= deadline:
                    raise KeyBusy(why)
                await asyncio.sleep(0.2)
        try:
            yield
        finally:
            async with store_errors():
                try:
                    await locks.free_key(conn, control, key)
                except Exception:
                    # A session that cannot unlock must not go back to the pool holding
                    # the key.
                    conn.terminate()
                    raise
