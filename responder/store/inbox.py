"""Reads of the inbox and the action log for replaying past alerts: the log in order from
a point in time, the alerts it names, and the incidents open at that point."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from responder.store.db import store_errors
from responder.store.types import Conn, Row

SEQ_BEFORE_SQL = "SELECT coalesce(max(seq), 0) FROM action_log WHERE at < $1"

LOG_SQL = """
SELECT seq, kind, incident_id, rule_id, control, key, step_id, body FROM action_log
WHERE seq > $1 ORDER BY seq
"""

OPEN_AT_SQL = """
SELECT i.id, i.rule_id, i.scope, l.control, l.key, l.body FROM incidents i
JOIN action_log l ON l.incident_id = i.id AND l.seq <= $2 AND l.kind = ANY($3::text[])
WHERE i.opened_at < $1 AND (i.resolved_at IS NULL OR i.resolved_at >= $1)
"""

ALERTS_SQL = "SELECT id, alert, received_at FROM inbox WHERE id = ANY($1)"

INCIDENTS_SQL = "SELECT id, rule_id, scope FROM incidents WHERE id = ANY($1)"


async def seq_before(conn: Conn, at: datetime) -> int:
    """The last record written before ``at`` (0: none)."""
    async with store_errors():
        seq: int = await conn.fetchval(SEQ_BEFORE_SQL, at)
    return seq


async def log_after(conn: Conn, seq: int) -> list[Row]:
    """Every record after ``seq``, in order: seq, kind, incident_id, rule_id, control, key,
    step_id and body."""
    async with store_errors():
        rows: list[Row] = await conn.fetch(LOG_SQL, seq)
    return rows


async def open_at(conn: Conn, at: datetime, seq: int, kinds: Sequence[str]) -> list[Row]:
    """Incidents open at ``at``, once per record of ``kinds`` each had by record ``seq``:
    id, rule_id, scope, and the record's control, key and body."""
    async with store_errors():
        rows: list[Row] = await conn.fetch(OPEN_AT_SQL, at, seq, list(kinds))
    return rows


async def alerts(conn: Conn, inbox_ids: Sequence[int]) -> list[Row]:
    """Inbox rows: id, alert (JSON text) and received_at."""
    async with store_errors():
        rows: list[Row] = await conn.fetch(ALERTS_SQL, list(inbox_ids))
    return rows


async def incident_keys(conn: Conn, incident_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """Each incident's (rule_id, scope)."""
    async with store_errors():
        rows = await conn.fetch(INCIDENTS_SQL, list(incident_ids))
    return {r["id"]: (r["rule_id"], r["scope"]) for r in rows}
