"""Evidence: what an incident's bundle is built from, its sealed versions, and the
snapshots taken for it.

The reads (one query per kind of row, whatever the number of incidents) raise our errors.
Sealing runs inside the writer's transaction, and the writer maps the driver's errors
there, so last_versions(), insert_versions() and lock_for_seal() leave them to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from responder.store import locks
from responder.store.db import store_errors
from responder.store.types import Conn, Row

INCIDENTS_SQL = "SELECT * FROM incidents WHERE id = ANY($1::bigint[])"

ALERTS_SQL = """
SELECT m.incident_id, i.id, i.alert, i.received_at, i.deliveries
FROM (SELECT DISTINCT incident_id, (body::jsonb -> 'detail' ->> 'inbox_id')::bigint AS inbox_id
      FROM action_log WHERE incident_id = ANY($1::bigint[]) AND kind = 'alert_matched') m
JOIN inbox i ON i.id = m.inbox_id
ORDER BY m.incident_id, i.id
"""

RECORDS_SQL = """
SELECT incident_id, body, hash FROM action_log WHERE incident_id = ANY($1::bigint[])
ORDER BY incident_id, seq
"""

CONTROLS_SQL = """
SELECT s.incident_id, c.control, c.key, c.level, c.set_by, c.set_kind, c.verified,
       c.updated_at
FROM (SELECT DISTINCT incident_id, control, key FROM steps
      WHERE incident_id = ANY($1::bigint[])) s
JOIN control_levels c ON c.control = s.control AND c.key = s.key
ORDER BY s.incident_id, c.control, c.key
"""

SNAPSHOTS_SQL = """
SELECT incident_id, name, kind, ok, result, taken_at FROM evidence_snapshots
WHERE incident_id = ANY($1::bigint[])
ORDER BY incident_id, name
"""

ADD_SNAPSHOTS_SQL = """
INSERT INTO evidence_snapshots (incident_id, name, kind, ok, result)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bool[], $5::text[])
ON CONFLICT DO NOTHING
"""

LAST_SQL = """
SELECT DISTINCT ON (incident_id) incident_id, version, digest, content_digest, actions_seq,
       built_at, paged_seq
FROM evidence WHERE incident_id = ANY($1::bigint[])
ORDER BY incident_id, version DESC
"""

INSERT_SQL = """
INSERT INTO evidence (incident_id, version, digest, content_digest, prev_digest, body,
                      actions_seq, built_at, paged_seq)
SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::bigint[], $8::timestamptz[], $9::bigint[])
"""

CLOCK_SQL = "SELECT clock_timestamp()"

SnapshotRow = tuple[int, str, str, bool, str]
"""incident_id, name, kind, ok, result (JSON text)."""

VersionRow = tuple[int, int, str, str, str | None, str, int, datetime | None, int | None]
"""incident_id, version, digest, content_digest, prev_digest, body, actions_seq, built_at,
paged_seq: one sealed version."""


@dataclass(frozen=True)
class Sources:
    """What the store holds for a set of incidents, each kind of row grouped by incident
    (in id order, then each query's order)."""

    incidents: list[Row]
    alerts: dict[int, list[Row]]
    records: dict[int, list[Row]]
    controls: dict[int, list[Row]]
    snapshots: dict[int, list[Row]]


def _by_incident(rows: list[Row]) -> dict[int, list[Row]]:
    """Rows grouped by their incident_id column, keeping the query's order in each group."""
    groups: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row["incident_id"]].append(row)
    return groups


async def sources(conn: Conn, incident_ids: Sequence[int]) -> Sources:
    """The rows a bundle is built from; an id with no incident is left out."""
    async with store_errors():
        incidents = await conn.fetch(INCIDENTS_SQL, list(incident_ids))
        if not incidents:
            return Sources([], {}, {}, {}, {})
        ids = [i["id"] for i in incidents]
        return Sources(incidents, _by_incident(await conn.fetch(ALERTS_SQL, ids)),
                       _by_incident(await conn.fetch(RECORDS_SQL, ids)),
                       _by_incident(await conn.fetch(CONTROLS_SQL, ids)),
                       _by_incident(await conn.fetch(SNAPSHOTS_SQL, ids)))


async def clock(conn: Conn) -> datetime:
    """The store's clock now (not the transaction's start)."""
    async with store_errors():
        at: datetime = await conn.fetchval(CLOCK_SQL)
    return at


async def add_snapshots(conn: Conn, rows: Sequence[SnapshotRow]) -> None:
    """Keep snapshots; one already kept under that name is left as it was."""
    if rows:
        async with store_errors():
            await conn.execute(ADD_SNAPSHOTS_SQL, *[list(c) for c in zip(*rows, strict=True)])


async def lock_for_seal(conn: Conn, incident_ids: Sequence[int]) -> None:
    """One seal per incident at a time, until this transaction ends. Locks are taken in id
    order, so two replicas sealing overlapping batches queue up rather than deadlock."""
    await locks.seal_incidents(conn, sorted(set(incident_ids)))


async def last_versions(conn: Conn, incident_ids: Sequence[int]) -> dict[int, Row]:
    """The newest sealed version of each incident that has one."""
    rows = await conn.fetch(LAST_SQL, list(incident_ids))
    return {r["incident_id"]: r for r in rows}


async def insert_versions(conn: Conn, rows: Sequence[VersionRow]) -> None:
    if rows:
        await conn.execute(INSERT_SQL, *[list(c) for c in zip(*rows, strict=True)])
