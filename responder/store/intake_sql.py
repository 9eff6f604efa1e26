"""The one statement that records a batch of alerts and the engine's plan for them.

Inbox upsert, incident open and resolve, and step insert (with the held-level check) run
as data-modifying CTEs, so the whole plan costs one round trip. Only alerts that are new
(first delivery) open incidents or add steps. Results come back as three JSON arrays.

A step may be claimed here for the recording replica (see ``pre``), which saves its claim
and held-level reads before the call: the step runner still takes the normal path when
anything on the key moved in between (engine/runner.py).

The statement's arguments are named by ``Recording`` (its rows name their columns);
``Recording.arguments`` is the one place that lines them up with ``$1..$33``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from responder.store import locks
from responder.store.types import Conn

RECORD_SQL = """
WITH inb AS (
    INSERT INTO inbox (dedup_key, source, fingerprint, status, starts_at, alert, group_key,
                       truncated_alerts, correlation_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::jsonb[], $7::text[], $8::int[], $28::text[])
    ON CONFLICT (dedup_key) DO UPDATE SET deliveries = inbox.deliveries + 1,
                                          last_delivery_at = now()
    RETURNING dedup_key, id, deliveries
), fresh AS (
    SELECT dedup_key FROM inb WHERE deliveries = 1
), dec AS (
    SELECT d.* FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                           $29::text[]) WITH ORDINALITY
        AS d(dedup_key, rule_id, scope, severity, action, correlation_id, ord)
    WHERE d.dedup_key IN (SELECT dedup_key FROM fresh)
), want AS (
    -- The first alert asking for an incident lends it its correlation id.
    SELECT DISTINCT ON (rule_id, scope) rule_id, scope, severity, correlation_id FROM dec
    WHERE action <> 'resolve' ORDER BY rule_id, scope, ord
), opened AS (
    INSERT INTO incidents (rule_id, scope, severity, status, rules_hash, correlation_id)
    SELECT rule_id, scope, severity, 'open', $27, correlation_id FROM want
    ON CONFLICT (rule_id, scope) WHERE status = 'open' DO NOTHING
    RETURNING id, rule_id, scope
), inc AS (
    SELECT id, rule_id, scope, true AS is_new FROM opened
    UNION ALL
    SELECT i.id, i.rule_id, i.scope, false FROM incidents i
    JOIN want w ON w.rule_id = i.rule_id AND w.scope = i.scope WHERE i.status = 'open'
), firing AS (
    -- Which alerts of each open incident fire, so it resolves with its last one. A batch
    -- with resolved alerts then runs ALERTS_SQL too, which sees these rows.
    INSERT INTO incident_alerts (incident_id, fingerprint, firing)
    SELECT DISTINCT inc.id, af.fingerprint, true
    FROM dec JOIN inc ON inc.rule_id = dec.rule_id AND inc.scope = dec.scope
    JOIN unnest($1::text[], $3::text[]) AS af(dedup_key, fingerprint)
      ON af.dedup_key = dec.dedup_key
    WHERE dec.action <> 'resolve'
    ON CONFLICT (incident_id, fingerprint) DO UPDATE SET firing = true
), st AS (
    -- Several new alerts of one batch may ask for the same step: the first one asks.
    SELECT DISTINCT ON (inc.id, s.kind, s.control, s.key, s.level) s.*, inc.id AS incident_id
    FROM unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::int[], $19::text[],
                $20::text[], $21::text[], $22::int[], $23::text[], $24::text[], $25::text[],
                $26::text[], $30::text[])
        WITH ORDINALITY AS s(dedup_key, rule_id, scope, kind, position, control, key, level,
                             rank, escalate_control, escalate_key, escalate_level,
                             idempotency_key, correlation_id, ord)
    JOIN fresh f ON f.dedup_key = s.dedup_key
    JOIN inc ON inc.rule_id = s.rule_id AND inc.scope = s.scope
    ORDER BY inc.id, s.kind, s.control, s.key, s.level, s.ord
), held AS (
    SELECT st.ord, c.level, c.rank FROM st
    JOIN control_levels c ON c.control = st.control AND c.key = st.key
), go AS (
    SELECT st.* FROM st LEFT JOIN held h ON h.ord = st.ord
    WHERE h.rank IS NULL OR h.rank < st.rank
), pre AS (
    -- Claimed for this replica in this transaction, so its call can follow the commit at
    -- once: only the first new step of a new incident, alone on its key here and in the
    -- store, on a key the batch may claim early ($31) whose lock no one holds (a person, a
    -- claim). The lock is taken here, last (CASE keeps that order), and held to commit.
    -- This snapshot may predate the lock, and misses nothing by it: every transaction that
    -- adds steps or moves a level appends to the action log, and so waits for the append
    -- lock this transaction took in its first statement.
    SELECT g.ord FROM go g
    WHERE CASE WHEN $32::text IS NOT NULL
                    AND {key_name} = ANY($31::text[])
                    AND g.ord = (SELECT min(o.ord) FROM go o WHERE o.incident_id = g.incident_id)
                    AND NOT EXISTS (SELECT 1 FROM go o WHERE o.control = g.control
                                    AND o.key = g.key AND o.ord <> g.ord)
                    AND NOT EXISTS (SELECT 1 FROM steps p WHERE p.status = 'pending'
                                    AND (p.incident_id = g.incident_id
                                         OR (p.control = g.control AND p.key = g.key)))
               THEN {try_key}
               ELSE false END
), ins AS (
    INSERT INTO steps (incident_id, kind, position, control, key, level, rank,
                       escalate_control, escalate_key, escalate_level, idempotency_key,
                       correlation_id, claimed_by, lease_until, claims)
    SELECT go.incident_id, go.kind, go.position, go.control, go.key, go.level, go.rank,
           go.escalate_control, go.escalate_key, go.escalate_level, go.idempotency_key,
           go.correlation_id,
           CASE WHEN pre.ord IS NOT NULL THEN $32::text END,
           -- The clock, not the transaction's start: the executor times the lease from
           -- before the recording began, so it must not have begun earlier.
           CASE WHEN pre.ord IS NOT NULL THEN clock_timestamp() + make_interval(secs => $33)
           END,
           CASE WHEN pre.ord IS NOT NULL THEN 1 ELSE 0 END
    FROM go LEFT JOIN pre ON pre.ord = go.ord
    ON CONFLICT (incident_id, kind, control, key, level) DO NOTHING
    RETURNING id, idempotency_key, claimed_by IS NOT NULL AS preclaimed
)
SELECT
    (SELECT coalesce(jsonb_agg(jsonb_build_array(dedup_key, id, deliveries)), '[]')
     FROM inb) AS inbox,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(rule_id, scope, id, is_new)), '[]')
     FROM inc) AS incidents,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(st.ord, st.incident_id, h.level, h.rank,
                                                 ins.id, ins.preclaimed)), '[]')
     FROM st LEFT JOIN held h ON h.ord = st.ord
     LEFT JOIN ins ON ins.idempotency_key = st.idempotency_key) AS steps
"""
TRY_KEY = f"pg_try_advisory_xact_lock({locks.key_lock_sql('g.control', 'g.key')})"
"""An early claim's key lock, over a step's ``g.control`` and ``g.key``: the lock a person
holds (locks.hold_key), taken until commit."""
RECORD_SQL = (RECORD_SQL.replace("{key_name}", locks.key_name_sql("g.control", "g.key"))
              .replace("{try_key}", TRY_KEY))


ALERTS_SQL = """
WITH d AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) WITH ORDINALITY
        AS d(rule_id, scope, fingerprint, firing, ord)
), last AS (
    -- The batch's last word on each alert of each incident.
    SELECT DISTINCT ON (rule_id, scope, fingerprint) * FROM d
    ORDER BY rule_id, scope, fingerprint, ord DESC
), inc AS (
    SELECT i.id, i.rule_id, i.scope FROM incidents i
    JOIN (SELECT DISTINCT rule_id, scope FROM last) k
      ON k.rule_id = i.rule_id AND k.scope = i.scope
    WHERE i.status = 'open'
), marked AS (
    INSERT INTO incident_alerts (incident_id, fingerprint, firing)
    SELECT inc.id, l.fingerprint, l.firing FROM last l
    JOIN inc ON inc.rule_id = l.rule_id AND inc.scope = l.scope
    ON CONFLICT (incident_id, fingerprint) DO UPDATE SET firing = EXCLUDED.firing
    RETURNING incident_id
), resolved AS (
    -- Resolved by this batch when an alert of it resolved and none of its alerts fires
    -- any more, counting both what the batch says and what was stored before it.
    UPDATE incidents i SET status = 'resolved', resolved_at = now()
    FROM inc
    WHERE i.id = inc.id
      AND EXISTS (SELECT 1 FROM last l WHERE l.rule_id = inc.rule_id AND l.scope = inc.scope
                  AND NOT l.firing)
      AND NOT EXISTS (SELECT 1 FROM last l WHERE l.rule_id = inc.rule_id
                      AND l.scope = inc.scope AND l.firing)
      AND NOT EXISTS (SELECT 1 FROM incident_alerts a WHERE a.incident_id = inc.id
                      AND a.firing AND a.fingerprint NOT IN (
                          SELECT l.fingerprint FROM last l
                          WHERE l.rule_id = inc.rule_id AND l.scope = inc.scope))
    RETURNING i.id
)
SELECT coalesce(jsonb_agg(jsonb_build_array(inc.rule_id, inc.scope, inc.id,
                                            inc.id IN (SELECT id FROM resolved))), '[]')
       AS incidents
FROM inc
"""


NONCE_SQL = """
INSERT INTO event_nonces (source, event_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING RETURNING source, event_id
"""


@dataclass(slots=True)
class InboxRow:
    """One alert for the inbox (``$1..$8``, ``$28``)."""

    dedup_key: str
    source: str
    fingerprint: str
    status: str
    starts_at: str
    alert: str
    """The alert as JSON text."""
    group_key: str
    truncated_alerts: int
    correlation_id: str | None


@dataclass(slots=True)
class DecisionRow:
    """One rule's decision on one alert (``$9..$13``, ``$29``)."""

    dedup_key: str
    rule_id: str
    scope: str
    severity: str
    action: str
    correlation_id: str | None


@dataclass(slots=True)
class PlannedStepRow:
    """One planned step (``$14..$26``, ``$30``); its incident comes from the statement."""

    dedup_key: str
    rule_id: str
    scope: str
    kind: str
    position: int
    control: str
    key: str
    level: str
    rank: int
    escalate_control: str | None
    escalate_key: str | None
    escalate_level: str | None
    idempotency_key: str
    correlation_id: str | None


@dataclass(slots=True)
class Recording:
    """Everything RECORD_SQL writes for one batch."""

    rules_hash: str
    inbox: list[InboxRow] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)
    steps: list[PlannedStepRow] = field(default_factory=list)
    early: list[str] = field(default_factory=list)
    """The keys (locks.key_name) whose first step may be claimed while recording, if their
    lock is free; each costs a lock held to commit."""
    replica: str | None = None
    """Who claims a step while recording it (None: nobody)."""
    lease_s: float = 10.0

    def arguments(self) -> list[object]:
        """The statement's positional arguments, ``$1`` first."""
        i, d, s = self.inbox, self.decisions, self.steps
        return [
            [r.dedup_key for r in i], [r.source for r in i], [r.fingerprint for r in i],
            [r.status for r in i], [r.starts_at for r in i], [r.alert for r in i],
            [r.group_key for r in i], [r.truncated_alerts for r in i],  # $1..$8
            [r.dedup_key for r in d], [r.rule_id for r in d], [r.scope for r in d],
            [r.severity for r in d], [r.action for r in d],  # $9..$13
            [r.dedup_key for r in s], [r.rule_id for r in s], [r.scope for r in s],
            [r.kind for r in s], [r.position for r in s], [r.control for r in s],
            [r.key for r in s], [r.level for r in s], [r.rank for r in s],
            [r.escalate_control for r in s], [r.escalate_key for r in s],
            [r.escalate_level for r in s], [r.idempotency_key for r in s],  # $14..$26
            self.rules_hash,  # $27
            [r.correlation_id for r in i],  # $28
            [r.correlation_id for r in d],  # $29
            [r.correlation_id for r in s],  # $30
            self.early, self.replica, self.lease_s,  # $31..$33
        ]


async def record(conn: Conn, recording: Recording) -> asyncpg.Record:
    row = await conn.fetchrow(RECORD_SQL, *recording.arguments())
    assert row is not None  # the statement's SELECT always yields one row
    return row


async def settle_alerts(conn: Conn, states: Sequence[Sequence[object]]) -> str:
    """ALERTS_SQL on (rule, scope, fingerprint, firing) columns; its JSON answer."""
    answer: str = await conn.fetchval(ALERTS_SQL, *states)
    return answer


async def claim_nonces(conn: Conn, nonces: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of the (source, event id) pairs, those seen for the first time now."""
    rows = await conn.fetch(NONCE_SQL, [n[0] for n in nonces], [n[1] for n in nonces])
    return {(r["source"], r["event_id"]) for r in rows}
