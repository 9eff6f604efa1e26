"""The outbox table: deliveries written with the change they announce, claimed and sent by
any replica's worker, retried with backoff, dead after retrying, and sent again by hand.

enqueue() runs in the caller's transaction (usually the writer's, whose errors the writer
maps); the worker's calls take a connection of their own and raise our errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from responder.store.db import acquire, store_errors
from responder.store.types import Conn, Pool, Row

OutboxRow = tuple[int | None, str, str, str, str]
"""incident_id (None: no incident), sink, kind, idempotency_key, payload."""

ENQUEUE_SQL = """
INSERT INTO outbox (incident_id, sink, kind, idempotency_key, payload)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
ON CONFLICT (idempotency_key) DO NOTHING
"""

CLAIM_SQL = """
UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2),
                  attempts = attempts + 1, claimed_by = $3
WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= now()
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, incident_id, sink, kind, idempotency_key, payload, attempts,
          extract(epoch FROM now() - coalesce(retry_since, created_at)) AS trying_s
"""

DELIVERED_SQL = ("UPDATE outbox SET status = 'delivered', delivered_at = now(),"
                 " last_error = NULL WHERE id = $1")
RETRY_AT_SQL = "UPDATE outbox SET next_attempt_at = now() + $2, last_error = $3 WHERE id = $1"
DEAD_SQL = "UPDATE outbox SET status = 'dead', last_error = $2 WHERE id = $1"
BACKLOG_SQL = ("SELECT sink, status, count(*) AS n FROM outbox"
               " WHERE status IN ('pending', 'dead') GROUP BY sink, status")

REDRIVE_SQL = """
UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),
                  retry_since = now()
WHERE status = 'dead'
  AND ($1::text IS NULL OR sink = $1)
  AND ($2::bigint IS NULL OR incident_id = $2)
  AND (cardinality($3::bigint[]) = 0 OR id = ANY($3::bigint[]))
RETURNING id, sink, kind, idempotency_key, last_error
"""


@dataclass(frozen=True)
class Claimed:
    """A row claimed for one attempt (its lease: ``next_attempt_at`` pushed out)."""

    id: int
    incident_id: int | None
    sink: str
    kind: str
    idempotency_key: str
    payload: str
    attempts: int
    trying_s: float
    """Seconds since the row was written, or last sent again by hand."""


async def enqueue(conn: Conn, rows: Sequence[OutboxRow]) -> None:
    """Write outbox rows, however many, in one statement; a key already there is kept."""
    if rows:
        await conn.execute(ENQUEUE_SQL, *[list(c) for c in zip(*rows, strict=True)])


async def claim_due(pool: Pool, batch: int, lease_s: float,
                    replica: str | None = None) -> list[Claimed]:
    """Up to ``batch`` due rows, oldest first, none that another worker holds; claimed in
    ``replica``'s name, so that they are handed on when its session ends."""
    async with acquire(pool) as conn:
        rows = await conn.fetch(CLAIM_SQL, batch, lease_s, replica)
    return [Claimed(r["id"], r["incident_id"], r["sink"], r["kind"], r["idempotency_key"],
                    r["payload"], r["attempts"], float(r["trying_s"])) for r in rows]


async def delivered(pool: Pool, row_id: int) -> None:
    async with acquire(pool) as conn:
        await conn.execute(DELIVERED_SQL, row_id)


async def retry_later(pool: Pool, row_id: int, backoff: timedelta, error: str) -> None:
    async with acquire(pool) as conn:
        await conn.execute(RETRY_AT_SQL, row_id, backoff, error)


async def dead(pool: Pool, row_id: int, error: str, pages: Sequence[OutboxRow]) -> None:
    """Mark a row dead and, in the same transaction, queue the pages that say so."""
    async with acquire(pool) as conn, conn.transaction():
        await conn.execute(DEAD_SQL, row_id, error)
        await enqueue(conn, pages)


async def backlog(pool: Pool) -> dict[tuple[str, str], int]:
    """Rows pending and dead, by (sink, status)."""
    async with acquire(pool) as conn:
        rows = await conn.fetch(BACKLOG_SQL)
    return {(r["sink"], r["status"]): r["n"] for r in rows}


async def redrive(conn: Conn, sink: str | None, incident_id: int | None,
                  ids: Sequence[int]) -> list[Row]:
    """Send dead rows again (those the filters select): id, sink, kind, idempotency_key and
    last_error of each."""
    async with store_errors():
        rows: list[Row] = await conn.fetch(REDRIVE_SQL, sink, incident_id, list(ids))
    return rows
