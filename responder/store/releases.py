"""Pending two-person release requests end when their key changes: once the key is
released, or contained again, a request made before names a containment that is gone.
Every ending is recorded. The requests themselves (two-person release) are stored here
too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from responder.store.actionlog import ChainAppender, Entry
from responder.store.db import store_errors
from responder.store.kinds import Kind
from responder.store.types import Conn, Pool

END_PENDING_SQL = """
UPDATE release_requests SET status = 'superseded', decided_at = now()
WHERE control = $1 AND key = $2 AND status = 'pending'
RETURNING id, requested_by, containment
"""


def ended_entry(request_id: int, control: str, key: str, requested_by: str,
                containment: int | None, why: str, incident_id: int | None) -> Entry:
    return Entry(Kind.RELEASE_REQUEST_ENDED, incident_id=incident_id, control=control, key=key,
                 detail={"request_id": request_id, "requested_by": requested_by,
                         "containment": containment, "why": why,
                         "note": "the key changed since it was requested; request it again"})


async def end_pending(conn: Conn, chain: ChainAppender, control: str, key: str, why: str,
                      incident_id: int | None) -> int:
    """End every pending request for the key (a writer unit's part); return how many."""
    rows = await conn.fetch(END_PENDING_SQL, control, key)
    for r in rows:
        chain.add(ended_entry(r["id"], control, key, r["requested_by"], r["containment"], why,
                              incident_id))
    return len(rows)


REQUEST_SQL = """
INSERT INTO release_requests (control, key, from_level, to_level, reason, ticket,
                              requested_by, expires_at, containment)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id
"""

STATUS_SQL = "SELECT status, requested_by, expires_at FROM release_requests WHERE id = $1"

APPROVE_SQL = """
UPDATE release_requests r SET status = 'approved', approved_by = $2, decided_at = now()
WHERE r.id = $1 AND r.status = 'pending' AND r.expires_at > now()
  -- Approve only what was asked: the containment it names, still at the level it was
  -- requested from (the key may have been released, or raised by a new incident, since).
  AND EXISTS (SELECT 1 FROM control_levels c
              WHERE c.control = r.control AND c.key = r.key AND c.level = r.from_level
                AND c.containment IS NOT DISTINCT FROM r.containment)
RETURNING control, key, from_level, to_level, reason, ticket, requested_by, containment
"""

EXPIRE_SQL = """
UPDATE release_requests SET status = 'expired', decided_at = now()
WHERE status = 'pending' AND expires_at <= now()
RETURNING id, control, key, requested_by
"""

CLOSE_INCIDENTS_SQL = """
UPDATE incidents SET status = 'resolved', resolved_at = now()
WHERE status = 'open' AND id IN (SELECT incident_id FROM steps WHERE control = $1 AND key = $2)
RETURNING id
"""


@dataclass(frozen=True)
class RequestStatus:
    status: str
    requested_by: str
    expires_at: datetime


@dataclass(frozen=True)
class Approved:
    """A request approved now: what it asked for."""

    control: str
    key: str
    from_level: str
    to_level: str
    reason: str
    ticket: str | None
    requested_by: str
    containment: int | None


@dataclass(frozen=True)
class Expired:
    id: int
    control: str
    key: str
    requested_by: str


async def request_release(conn: Conn, control: str, key: str, from_level: str, to_level: str,
                          reason: str, ticket: str, requested_by: str, expires_at: datetime,
                          containment: int | None) -> int:
    """Store a two-person release request (a writer unit's part); its id."""
    request_id: int = await conn.fetchval(REQUEST_SQL, control, key, from_level, to_level,
                                          reason, ticket, requested_by, expires_at,
                                          containment)
    return request_id


async def request_status(pool: Pool, request_id: int) -> RequestStatus | None:
    async with store_errors(), pool.acquire() as conn:
        row = await conn.fetchrow(STATUS_SQL, request_id)
    return RequestStatus(**dict(row)) if row is not None else None


async def approve(conn: Conn, request_id: int, approver: str) -> Approved | None:
    """Approve a pending, unexpired request whose containment still holds at the level it
    was requested from (a writer unit's part); None if it is not that."""
    row = await conn.fetchrow(APPROVE_SQL, request_id, approver)
    return Approved(**dict(row)) if row is not None else None


async def expire(conn: Conn) -> list[Expired]:
    """Expire pending requests past their TTL (a writer unit's part)."""
    return [Expired(**dict(r)) for r in await conn.fetch(EXPIRE_SQL)]


async def close_incidents(conn: Conn, control: str, key: str) -> list[int]:
    """Resolve the open incidents that contained the key (a writer unit's part)."""
    return [r["id"] for r in await conn.fetch(CLOSE_INCIDENTS_SQL, control, key)]
