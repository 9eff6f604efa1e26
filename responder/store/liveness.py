"""Which replicas holding step leases are gone, learnt from their sessions, not the clock.

Each replica holds its name with a session advisory lock (store/identity.py); the server
frees it the moment that session ends, a SIGKILL included. A replica whose live leases
outlast its name is gone, or has lost its name session and stopped calling: taking its
name lock here proves the server has ended that session, and while it is held the owner
cannot re-join under the name, so its leases are ended (claims.let_go) before anything
else can claim, and its outbox rows are made due. The claim that takes a step over then
re-owns the row, and an outcome written by the old owner after that is refused
(store/steps.py, CLOSE_SQL).
"""

from __future__ import annotations

import asyncpg
import structlog

from responder.errors import StoreError
from responder.store import locks
from responder.store.claims import let_go
from responder.store.db import store_errors
from responder.store.types import Conn

OWNERS_SQL = """
SELECT claimed_by FROM steps
WHERE status = 'pending' AND lease_until > now() AND claimed_by <> $1
UNION
SELECT claimed_by FROM outbox
WHERE status = 'pending' AND next_attempt_at > now() AND claimed_by <> $1
"""
"""Replicas holding step leases or outbox rows (both on partial indexes over pending rows).
An outbox row in backoff counts too: handing it on only sends it again sooner."""

OUTBOX_SQL = """
UPDATE outbox SET next_attempt_at = now()
WHERE claimed_by = $1 AND status = 'pending' AND next_attempt_at > now()
RETURNING id
"""

log = structlog.get_logger("responder.liveness")

HOLDERS_SQL = """
SELECT DISTINCT o.name FROM unnest($2::text[]) AS o(name)
JOIN pg_locks l ON l.locktype = 'advisory' AND l.classid = $1::oid
 AND l.objid = hashtext(o.name)::oid AND l.objsubid = 2 AND l.granted
 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
"""Owners whose name is held now: one look at the lock table instead of a try per name."""


async def owners_without_name(conn: Conn, me: str) -> list[str]:
    """Replicas other than ``me`` with live step leases whose name lock nobody holds."""
    owners = [r["claimed_by"] for r in await conn.fetch(OWNERS_SQL, me)]
    if not owners:
        return []
    held = {r["name"] for r in await conn.fetch(HOLDERS_SQL, locks.REPLICA_NS, owners)}
    return [o for o in owners if o not in held]


async def hand_over(conn: Conn, owner: str) -> int | None:
    """End the live leases of ``owner`` if its name session is gone, and make its outbox
    rows due now: the number of steps handed over, or None if the name is held (by the
    owner, or by a replica doing this). A sink deduplicates a row sent twice by its key."""
    if not await locks.try_replica_name(conn, owner):
        return None
    try:
        rows = len(await conn.fetch(OUTBOX_SQL, owner))
        steps = await let_go(conn, owner)
    finally:
        await locks.free_replica_name(conn, owner)
    if steps or rows:
        log.warning("replica gone (its name session ended): its step leases are ended and"
                    " its outbox rows due, to be taken over now with their keys",
                    replica=owner, steps=steps, outbox_rows=rows)
    return steps


class Watch:
    """The liveness checks on a connection of their own, so a busy pool never delays them;
    driver errors leave as the store's own (StoreUnavailable, StoreError)."""

    def __init__(self, dsn: str, *, timeout_s: float) -> None:
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._conn: asyncpg.Connection | None = None

    async def hand_over_gone(self, me: str) -> int:
        """Hand over every replica (other than ``me``) whose name session has ended; the
        number of steps handed over."""
        try:
            async with store_errors():
                if self._conn is None or self._conn.is_closed():
                    self.close()
                    self._conn = await asyncpg.connect(
                        self._dsn, timeout=self._timeout_s,
                        server_settings={"application_name": "responder-liveness"})
                total = 0
                for owner in await owners_without_name(self._conn, me):
                    total += await hand_over(self._conn, owner) or 0
                return total
        except StoreError:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
