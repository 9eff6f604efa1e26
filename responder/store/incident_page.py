"""Reads for the incident pages: the levels the incident's keys hold now, its alerts as
they arrived, the evidence snapshots its charts are drawn from, and the newest incident
(the list's live stream)."""

from __future__ import annotations

import json
from typing import Any

from responder.store.db import acquire, store_errors
from responder.store.types import Conn, Pool

NEWEST_SQL = "SELECT coalesce(max(id), 0) FROM incidents"

HELD_SQL = """
SELECT DISTINCT ON (c.control, c.key) c.control, c.key, c.level, c.rank, c.updated_at,
       c.set_by, c.set_kind, c.incident_id, c.verified
FROM control_levels c JOIN steps s ON s.control = c.control AND s.key = c.key
WHERE s.incident_id = $1
ORDER BY c.control, c.key
"""

ALERTS_SQL = """
SELECT id, status, alert::text AS alert, truncated_alerts, received_at FROM inbox
WHERE id = ANY($1::bigint[]) ORDER BY id
"""

SNAPSHOTS_SQL = """
SELECT name, kind, ok, result, taken_at FROM evidence_snapshots WHERE incident_id = $1
ORDER BY name
"""


async def held_levels(conn: Conn, incident_id: int) -> list[dict[str, Any]]:
    """The level each key the incident's steps touched holds now, and who set it."""
    async with store_errors():
        return [dict(r) for r in await conn.fetch(HELD_SQL, incident_id)]


async def alerts(conn: Conn, inbox_ids: list[int]) -> list[dict[str, Any]]:
    """The incident's alerts as received (unredacted: the caller redacts before showing)."""
    if not inbox_ids:
        return []
    async with store_errors():
        rows = await conn.fetch(ALERTS_SQL, inbox_ids)
    return [{**dict(r), "alert": json.loads(r["alert"])} for r in rows]


async def snapshots(conn: Conn, incident_id: int) -> list[dict[str, Any]]:
    async with store_errors():
        return [dict(r) for r in await conn.fetch(SNAPSHOTS_SQL, incident_id)]


async def newest_incident(pool: Pool) -> int:
    """The highest incident id (0 before the first): one indexed max()."""
    async with acquire(pool) as conn:
        return int(await conn.fetchval(NEWEST_SQL))
