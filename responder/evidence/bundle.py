"""Build and seal an incident's forensic bundle.

The bundle holds what responder saw (the raw alerts), what it decided with (the rule and the
rule-bundle hash), what it did and what the target answered (every action record, already
redacted), and where each control stands now. It is canonical JSON with a SHA-256 digest.
A sealed version is never changed: a later change makes a new version that names the digest
of the one before.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from responder import __version__
from responder.config import SinkSpec
from responder.evidence.outbox import enqueue
from responder.rules.table import RuleTable
from responder.store.actionlog import ChainAppender, Entry, canonical
from responder.store.db import Conn

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


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _by_incident(rows: list[asyncpg.Record]) -> dict[int, list[asyncpg.Record]]:
    """Rows grouped by their incident_id column, keeping the query's order in each group."""
    groups: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        groups[row["incident_id"]].append(row)
    return groups


async def build(conn: Conn, incident_id: int, table: RuleTable) -> dict[str, Any] | None:
    """The bundle's content for one incident; see build_many."""
    return (await build_many(conn, [incident_id], table)).get(incident_id)


async def build_many(conn: Conn, incident_ids: Sequence[int],
                     table: RuleTable) -> dict[int, dict[str, Any]]:
    """Each incident's bundle content as the store holds it now, by incident id (an id with
    no incident is left out), read with one query per kind of row whatever the count.

    Content has no timestamps of its own, so an unchanged incident builds the same content.
    """
    ids = list(incident_ids)
    incidents = await conn.fetch(INCIDENTS_SQL, ids)
    if not incidents:
        return {}
    ids = [i["id"] for i in incidents]
    alerts = _by_incident(await conn.fetch(ALERTS_SQL, ids))
    records = _by_incident(await conn.fetch(RECORDS_SQL, ids))
    controls = _by_incident(await conn.fetch(CONTROLS_SQL, ids))
    snapshots = _by_incident(await conn.fetch(SNAPSHOTS_SQL, ids))
    return {i["id"]: _content(i, table, alerts[i["id"]], records[i["id"]], controls[i["id"]],
                              snapshots[i["id"]])
            for i in incidents}


def _content(incident: asyncpg.Record, table: RuleTable, alerts: list[asyncpg.Record],
             records: list[asyncpg.Record], controls: list[asyncpg.Record],
             snapshots: list[asyncpg.Record]) -> dict[str, Any]:
    rule = table.rule(incident["rule_id"])
    return {
        "incident": {"id": incident["id"], "rule_id": incident["rule_id"],
                     "scope": incident["scope"], "severity": incident["severity"],
                     "status": incident["status"],
                     "correlation_id": incident["correlation_id"],
                     "opened_at": incident["opened_at"].isoformat(),
                     "resolved_at": incident["resolved_at"].isoformat()
                     if incident["resolved_at"] else None},
        "rules_hash_at_open": incident["rules_hash"],
        "rules_hash_now": table.bundle_hash,
        "rule": None if rule is None else {
            "id": rule.id, "description": rule.description, "severity": rule.severity,
            "match": [str(m) for m in rule.matchers], "file": rule.file, "line": rule.line,
            "steps": [s.describe() for s in rule.steps],
            "on_failure": rule.on_failure.describe() if rule.on_failure else None,
            "page": rule.page,
        },
        "alerts": [{"inbox_id": a["id"], "received_at": a["received_at"].isoformat(),
                    "deliveries": a["deliveries"], "alert": json.loads(a["alert"])}
                   for a in alerts],
        "actions": [{**json.loads(r["body"]), "hash": r["hash"]} for r in records],
        "snapshots": [{"name": s["name"], "kind": s["kind"], "ok": s["ok"],
                       "taken_at": s["taken_at"].isoformat(), "result": json.loads(s["result"])}
                      for s in snapshots],
        "controls": [{"control": c["control"], "key": c["key"], "level": c["level"],
                      "set_by": c["set_by"], "set_kind": c["set_kind"],
                      "verified": c["verified"], "since": c["updated_at"].isoformat()}
                     for c in controls],
    }


SEAL_LOCK_SQL = ("SELECT pg_advisory_xact_lock(hashtextextended('responder-evidence-'"
                 " || $1::bigint, 0))")


async def seal(conn: Conn, chain: ChainAppender, incident_id: int, content: dict[str, Any],
               sinks: Sequence[SinkSpec] = (), link: str = "") -> dict[str, Any] | None:
    """Seal content (built by build()) as a new version if it changed since the last one.

    Building reads a lot and runs outside the writer; this part is cheap and runs inside it.
    """
    content_digest = digest_of(canonical(content))
    # Replicas seal the incidents they changed; one seal per incident at a time.
    await conn.execute(SEAL_LOCK_SQL, incident_id)
    last = await conn.fetchrow("SELECT version, digest, content_digest, actions_seq"
                               " FROM evidence WHERE incident_id = $1"
                               " ORDER BY version DESC LIMIT 1", incident_id)
    if last is not None and last["content_digest"] == content_digest:
        return None
    actions_seq = max((a["seq"] for a in content["actions"]), default=0)
    if last is not None and (last["actions_seq"] or 0) > actions_seq:
        return None  # built before another replica's newer seal: that one is current
    version = 1 if last is None else last["version"] + 1
    prev = None if last is None else last["digest"]
    bundle = {"version": version, "prev_digest": prev, "sealed_at": datetime.now(UTC).isoformat(),
              "responder": {"version": __version__, "host": socket.gethostname()},
              **content}
    body = canonical(bundle)
    digest = digest_of(body)
    await conn.execute("INSERT INTO evidence (incident_id, version, digest, content_digest,"
                       " prev_digest, body, actions_seq) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                       incident_id, version, digest, content_digest, prev, body, actions_seq)
    chain.add(Entry("evidence_sealed", incident_id=incident_id,
                    correlation_id=content["incident"]["correlation_id"],
                    detail={"version": version, "digest": digest, "prev_digest": prev}))
    # In the same transaction: a crash cannot seal a version and lose its deliveries.
    await enqueue(conn, incident_id, version, digest, bundle, sinks,
                  f"{link}/v1/incidents/{incident_id}" if link else "")
    return {"version": version, "digest": digest}
