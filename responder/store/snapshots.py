"""What the evidence snapshotter asks before it takes an incident's snapshots."""

from __future__ import annotations

from dataclasses import dataclass

from responder.store.types import Conn

STATE_SQL = """
SELECT (SELECT rule_id FROM incidents WHERE id = $1) AS rule_id,
       (SELECT count(*) FROM evidence_snapshots WHERE incident_id = $1) AS taken
"""


@dataclass(frozen=True)
class SnapshotState:
    rule_id: str | None
    """The rule that opened the incident (None: no such incident)."""
    taken: int
    """Snapshots already stored for it: they are taken once."""


async def snapshot_state(conn: Conn, incident_id: int) -> SnapshotState:
    row = await conn.fetchrow(STATE_SQL, incident_id)  # one round trip per incident
    assert row is not None  # the statement always yields one row
    return SnapshotState(row["rule_id"], row["taken"])
