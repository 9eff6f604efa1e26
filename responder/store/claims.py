"""Step claims: which replica may call a step's target now, and until when.

A claim is a lease on a pending step row. Only one replica holds a live lease on a step,
and on any pending step of the same control key, so calls on one key never overlap across
replicas (within a replica the executor's key lock does that). A lease that runs out
(its replica died or lost the store) can be taken over; the new holder calls again with
the same Idempotency-Key, which the target answers without applying twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from responder.store.db import Conn

# Serialise claims on one control key across replicas for this transaction. The lock is
# taken in its own statement so that the UPDATE after it reads a snapshot that includes
# every claim committed before the lock was granted (READ COMMITTED: one per statement).
LOCK_SQL = """
SELECT pg_advisory_xact_lock(hashtextextended(control || chr(31) || key, 0)) AS locked,
       claimed_by, lease_until, status
FROM steps WHERE id = $1
"""

CLAIM_SQL = """
UPDATE steps s SET claimed_by = $2, lease_until = now() + make_interval(secs => $3),
                   claims = s.claims + 1
WHERE s.id = $1 AND s.status = 'pending'
  AND (s.claimed_by IS NULL OR s.claimed_by = $2 OR s.lease_until < now())
  AND NOT EXISTS (
      SELECT 1 FROM steps o
      WHERE o.control = s.control AND o.key = s.key AND o.status = 'pending'
        AND o.id <> s.id AND o.claimed_by <> $2 AND o.lease_until >= now())
RETURNING s.claims
"""

RENEW_SQL = """
UPDATE steps SET lease_until = now() + make_interval(secs => $3)
WHERE id = $1 AND claimed_by = $2 AND status = 'pending'
RETURNING id
"""

LET_GO_SQL = """
UPDATE steps SET lease_until = now()
WHERE claimed_by = $1 AND status = 'pending' AND lease_until > now()
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


Refusal = Literal["closed", "busy"]


async def claim_step(conn: Conn, step_id: int, replica: str,
                     lease_s: float) -> Claim | Refusal:
    """Claim a pending step for ``replica``. "closed": nothing left to do; "busy": another
    replica holds a live lease on it or on another pending step of the same control key."""
    async with conn.transaction():
        before = await conn.fetchrow(LOCK_SQL, step_id)
        if before is None or before["status"] != "pending":
            return "closed"
        claims = await conn.fetchval(CLAIM_SQL, step_id, replica, lease_s)
    if claims is None:
        return "busy"
    previous = before["claimed_by"] if before["claimed_by"] != replica else None
    return Claim(step_id, previous, before["lease_until"] if previous else None, claims)


async def renew_claim(conn: Conn, step_id: int, replica: str, lease_s: float) -> bool:
    """Extend our lease; False if the step closed or another replica took it over."""
    return await conn.fetchval(RENEW_SQL, step_id, replica, lease_s) is not None


async def let_go(conn: Conn, replica: str) -> int:
    """End our live leases now (graceful shutdown) so another replica need not wait."""
    return len(await conn.fetch(LET_GO_SQL, replica))
