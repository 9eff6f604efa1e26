"""Read-side queries over the action log and incidents, shared by the API and the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from responder.store.db import Conn


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
    args.append(f.limit)
    sql = (f"SELECT body, hash, prev_hash FROM action_log WHERE {' AND '.join(clauses)}"  # noqa: S608 - clauses are fixed column names; values are bound
           f" ORDER BY seq LIMIT ${len(args)}")
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
