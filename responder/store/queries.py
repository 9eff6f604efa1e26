"""Read-side queries over the action log and incidents, shared by the API and the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from responder.store.types import Conn


@dataclass(frozen=True)
class ActionFilter:
    rule_id: str | None = None
    control: str | None = None
    incident_id: int | None = None
    kind: str | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: int = 0
    limit: int = 100
    outcome: str | None = None
    before: int | None = None
    newest_first: bool = False


def _record(row: asyncpg.Record) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(row["body"])
    body["hash"] = row["hash"]
    body["prev_hash"] = row["prev_hash"]
    return body


async def list_actions(conn: Conn, f: ActionFilter) -> list[dict[str, Any]]:
    """Records in sequence order, filtered, starting after a sequence number."""
    clauses: list[str] = ["seq > $1"]
    args: list[object] = [f.after]
    for column, value in (("rule_id", f.rule_id), ("control", f.control),
                          ("incident_id", f.incident_id), ("kind", f.kind),
                          ("correlation_id", f.correlation_id)):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if f.since is not None:
        args.append(f.since)
        clauses.append(f"at >= ${len(args)}")
    if f.until is not None:
        args.append(f.until)
        clauses.append(f"at < ${len(args)}")
    if f.outcome is not None:
        args.append(f.outcome)
        clauses.append(f"body::jsonb #>> '{{detail,status}}' = ${len(args)}")
    if f.before is not None:
        args.append(f.before)
        clauses.append(f"seq < ${len(args)}")
    args.append(f.limit)
    order = "seq DESC" if f.newest_first else "seq"
    sql = (f"SELECT body, hash, prev_hash FROM action_log WHERE {' AND '.join(clauses)}"  # noqa: S608 - clauses are fixed column names; values are bound
           f" ORDER BY {order} LIMIT ${len(args)}")
    return [_record(r) for r in await conn.fetch(sql, *args)]


async def incident_timeline(conn: Conn, incident_id: int) -> dict[str, Any] | None:
    """The incident, its steps and every action record that names it, in order."""
    incident = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
    if incident is None:
        return None
    steps = await conn.fetch(
        "SELECT id, kind, position, control, key, level, status, idempotency_key,"
        " correlation_id, created_at, updated_at FROM steps WHERE incident_id = $1"
        " ORDER BY id", incident_id)
    records = await conn.fetch(
        "SELECT body, hash, prev_hash FROM action_log WHERE incident_id = $1 ORDER BY seq",
        incident_id)
    deliveries = await conn.fetch(
        "SELECT sink, kind, status, attempts, last_error, created_at, delivered_at"
        " FROM outbox WHERE incident_id = $1 ORDER BY id", incident_id)
    return {
        "incident": dict(incident),
        "steps": [dict(s) for s in steps],
        "timeline": [_record(r) for r in records],
        "deliveries": [dict(d) for d in deliveries],
    }


INCIDENTS_SQL = """
SELECT i.*,
    (SELECT coalesce(json_agg(json_build_object('control', s.control, 'key', s.key,
                                                'level', s.level, 'status', s.status)
                              ORDER BY s.id), '[]')::text
     FROM steps s WHERE s.incident_id = i.id) AS controls,
    (SELECT json_build_object('applied', count(*) FILTER (WHERE st = 'applied'),
                              'verified', count(*) FILTER (WHERE st = 'applied' AND v = 'true'),
                              'failed', count(*) FILTER (WHERE st = 'failed'))::text
     FROM (SELECT body::jsonb #>> '{detail,status}' AS st,
                  body::jsonb #>> '{detail,verified}' AS v
           FROM action_log a WHERE a.incident_id = i.id AND a.kind = 'outcome') o) AS outcomes,
    (SELECT json_build_object('version', e.version, 'digest', e.digest)::text FROM evidence e
     WHERE e.incident_id = i.id ORDER BY e.version DESC LIMIT 1) AS evidence,
    (SELECT coalesce(json_object_agg(status, n), '{}')::text
     FROM (SELECT status, count(*) AS n FROM outbox o
           WHERE o.incident_id = i.id AND o.kind = 'bundle' GROUP BY status) d) AS deliveries,
    (SELECT count(*) FROM control_levels c
     WHERE c.rank > 0 AND EXISTS (SELECT 1 FROM steps s WHERE s.incident_id = i.id
                                  AND s.control = c.control AND s.key = c.key)) AS held_now
FROM incidents i WHERE ($1::bigint IS NULL OR i.id < $1) ORDER BY i.id DESC LIMIT $2
"""


async def list_incidents(conn: Conn, before: int | None, limit: int) -> list[dict[str, Any]]:
    """Incidents newest first, each with the controls it touched, how many of its steps were
    applied, confirmed by a read-back or failed, its latest sealed bundle and how the bundle
    deliveries stand."""
    rows = await conn.fetch(INCIDENTS_SQL, before, limit)
    return [{**dict(r), "controls": json.loads(r["controls"]),
             "outcomes": json.loads(r["outcomes"]),
             "evidence": json.loads(r["evidence"]) if r["evidence"] else None,
             "deliveries": json.loads(r["deliveries"])} for r in rows]


async def evidence_bundle(conn: Conn, incident_id: int,
                          version: int | None) -> asyncpg.Record | None:
    """An incident's sealed bundle: the given version, or the latest."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT version, digest, prev_digest, body FROM evidence WHERE incident_id = $1"
        " AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
        incident_id, version)
    return row


PENDING_SQL = """
SELECT id, control, key, from_level, to_level, reason, ticket, requested_by, requested_at,
       expires_at
FROM release_requests WHERE status = 'pending' AND expires_at > now() ORDER BY id
"""


async def pending_releases(conn: Conn) -> list[asyncpg.Record]:
    """Two-person releases waiting for a second operator, not yet expired."""
    return list(await conn.fetch(PENDING_SQL))


async def evidence_versions(conn: Conn, incident_id: int) -> list[asyncpg.Record]:
    """Every sealed version of an incident's bundle, newest first, without the bodies."""
    return list(await conn.fetch(
        "SELECT version, digest, prev_digest, created_at FROM evidence WHERE incident_id = $1"
        " ORDER BY version DESC", incident_id))


RECENT_CONTAINMENTS_SQL = """
SELECT i.rule_id, count(*) AS n FROM incidents i
WHERE i.opened_at > now() - make_interval(secs => $1) AND i.scope <> 'storm'
  AND EXISTS (SELECT 1 FROM steps s WHERE s.incident_id = i.id AND s.kind = 'step')
GROUP BY i.rule_id
"""


async def recent_containments(conn: Conn, window_s: float) -> dict[str, int]:
    """Incidents with containment steps opened in the last window, by any replica."""
    return {r["rule_id"]: r["n"] for r in await conn.fetch(RECENT_CONTAINMENTS_SQL, window_s)}


FIRING_SQL = """
SELECT i.id, i.rule_id, i.scope, i.correlation_id, a.fingerprint, x.alert
FROM incidents i
JOIN incident_alerts a ON a.incident_id = i.id AND a.firing
JOIN LATERAL (
    SELECT b.alert FROM inbox b
    WHERE b.fingerprint = a.fingerprint AND b.status = 'firing'
    ORDER BY b.id DESC LIMIT 1
) x ON true
WHERE i.status = 'open'
ORDER BY i.id, a.fingerprint
"""


async def firing_incidents(conn: Conn) -> list[asyncpg.Record]:
    """Open incidents with each alert that still fires and its latest firing delivery."""
    return list(await conn.fetch(FIRING_SQL))
