"""Step rows: containment work written with its intent and closed with its outcome."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from responder.store.actionlog import ChainAppender, Entry
from responder.store.db import store_errors
from responder.store.kinds import Kind
from responder.store.releases import ended_entry
from responder.store.types import Conn, Pool


@dataclass(frozen=True)
class StepRow:
    """A step as stored: what to apply, where, and the Idempotency-Key every call carries."""

    id: int
    incident_id: int
    rule_id: str
    kind: str
    control: str
    key: str
    level: str
    rank: int
    escalate_control: str | None
    escalate_key: str | None
    escalate_level: str | None
    idempotency_key: str
    correlation_id: str | None = None
    preclaimed: bool = False
    """Claimed for this replica in the transaction that recorded it (store/intake_sql.py)."""
    held_before: str | None = None
    """The key's held level when it was recorded; only meaningful when preclaimed."""


@dataclass(frozen=True)
class NewStep:
    """A step the engine wants; it becomes a StepRow unless held or already asked for."""

    incident_id: int
    rule_id: str
    kind: str
    position: int
    control: str
    key: str
    level: str
    rank: int
    escalate_control: str | None = None
    escalate_key: str | None = None
    escalate_level: str | None = None
    correlation_id: str | None = None

    @property
    def natural_key(self) -> tuple[int, str, str, str, str]:
        return (self.incident_id, self.kind, self.control, self.key, self.level)


@dataclass(frozen=True)
class Inserted:
    """What became of a NewStep: a row to execute, or the level already held."""

    step: NewStep
    row: StepRow | None
    held_level: str | None


INSERT_SQL = """
WITH wanted AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[],
                         $6::text[], $7::int[], $8::text[], $9::text[], $10::text[],
                         $11::text[], $12::text[])
        WITH ORDINALITY AS w(incident_id, kind, position, control, key, level, rank,
                             escalate_control, escalate_key, escalate_level, correlation_id,
                             idempotency_key, ord)
), held AS (
    SELECT w.ord, c.level, c.rank FROM wanted w
    JOIN control_levels c ON c.control = w.control AND c.key = w.key
), inserted AS (
    INSERT INTO steps (incident_id, kind, position, control, key, level, rank,
                       escalate_control, escalate_key, escalate_level, correlation_id,
                       idempotency_key)
    SELECT w.incident_id, w.kind, w.position, w.control, w.key, w.level, w.rank,
           w.escalate_control, w.escalate_key, w.escalate_level, w.correlation_id,
           w.idempotency_key
    FROM wanted w LEFT JOIN held h ON h.ord = w.ord
    WHERE h.rank IS NULL OR h.rank < w.rank
    ON CONFLICT (incident_id, kind, control, key, level) DO NOTHING
    RETURNING id, idempotency_key
)
SELECT w.ord, h.level AS held_level, h.rank AS held_rank, i.id
FROM wanted w LEFT JOIN held h ON h.ord = w.ord
LEFT JOIN inserted i ON i.idempotency_key = w.idempotency_key
ORDER BY w.ord
"""


async def insert_steps(conn: Conn, wanted: Sequence[NewStep]) -> list[Inserted]:
    """Insert steps above the held level in one statement; duplicates are dropped first."""
    unique: dict[tuple[int, str, str, str, str], NewStep] = {}
    for step in wanted:
        unique.setdefault(step.natural_key, step)
    steps = list(unique.values())
    if not steps:
        return []
    keys = [f"responder-{uuid.uuid4()}" for _ in steps]
    columns = [[getattr(s, f) for s in steps] for f in (
        "incident_id", "kind", "position", "control", "key", "level", "rank",
        "escalate_control", "escalate_key", "escalate_level", "correlation_id")]
    rows = await conn.fetch(INSERT_SQL, *columns, keys)
    out = []
    for step, key, row in zip(steps, keys, rows, strict=True):
        held = row["held_level"] if row["held_rank"] is not None and row["held_rank"] >= step.rank \
            else None
        step_row = None
        if row["id"] is not None:
            step_row = StepRow(row["id"], step.incident_id, step.rule_id, step.kind, step.control,
                               step.key, step.level, step.rank, step.escalate_control,
                               step.escalate_key, step.escalate_level, key,
                               step.correlation_id)
        out.append(Inserted(step, step_row, held))
    return out


def intent_entry(row: StepRow, method: str, target: str, path: str,
                 body: Any = None) -> Entry:
    return Entry(Kind.INTENT, incident_id=row.incident_id, rule_id=row.rule_id,
                 control=row.control, key=row.key, step_id=row.id,
                 correlation_id=row.correlation_id,
                 detail={"kind": row.kind, "level": row.level,
                         "idempotency_key": row.idempotency_key,
                         "request": {"method": method, "target": target, "path": path,
                                     "body": body}})


def held_entry(step: NewStep, held_level: str) -> Entry:
    return Entry(Kind.ALREADY_CONTAINED, incident_id=step.incident_id, rule_id=step.rule_id,
                 control=step.control, key=step.key, correlation_id=step.correlation_id,
                 detail={"requested": step.level, "held": held_level})


PENDING_SQL = """
SELECT s.id, s.incident_id, i.rule_id, s.kind, s.control, s.key, s.level, s.rank,
       s.escalate_control, s.escalate_key, s.escalate_level, s.idempotency_key,
       s.correlation_id
FROM steps s JOIN incidents i ON i.id = s.incident_id
WHERE s.status = 'pending'
  AND NOT EXISTS (
      SELECT 1 FROM steps o
      WHERE o.incident_id = s.incident_id AND o.status = 'pending'
        AND o.claimed_by <> $1 AND o.lease_until >= now())
-- An incident's steps in the rule's order, escalations after them. Never by id: a batch
-- inserts an incident's steps sorted by control, not by position.
ORDER BY s.incident_id, s.kind = 'escalation', s.position, s.id
"""


async def pending_steps(conn: Conn, replica: str) -> list[StepRow]:
    """Pending steps of incidents no other replica is working on (no live lease there), so
    an incident's steps still run in order after a takeover."""
    return [StepRow(**dict(r)) for r in await conn.fetch(PENDING_SQL, replica)]


async def pending_for(pool: Pool, replica: str) -> list[StepRow]:
    """pending_steps on a connection of the pool, driver errors in the store's terms."""
    async with store_errors(), pool.acquire() as conn:
        return await pending_steps(conn, replica)


CLOSE_SQL = """
WITH c AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::int[], $7::bigint[], $8::bool[], $9::text[], $10::bool[],
                         $11::text[])
        AS c(id, status, control, key, level, rank, incident_id, raises, rule_id, verified,
             replica)
), closed AS (
    UPDATE steps s SET status = c.status, updated_at = now() FROM c
    WHERE s.id = c.id AND s.status = 'pending'
      -- The fence: a replica's late outcome is refused once another claim took the step.
      AND (c.replica IS NULL OR s.claimed_by IS NULL OR s.claimed_by = c.replica)
    RETURNING s.id
), raised AS (
    INSERT INTO control_levels (control, key, level, rank, incident_id, set_by, set_kind,
                                verified)
    SELECT DISTINCT ON (c.control, c.key) c.control, c.key, c.level, c.rank, c.incident_id,
           c.rule_id, 'rule', c.verified
    FROM c JOIN closed ON closed.id = c.id WHERE c.raises
    ORDER BY c.control, c.key, c.rank DESC
    ON CONFLICT (control, key) DO UPDATE SET level = EXCLUDED.level, rank = EXCLUDED.rank,
        incident_id = EXCLUDED.incident_id, set_by = EXCLUDED.set_by, set_kind = 'rule',
        reason = NULL, ticket = NULL, verified = EXCLUDED.verified, updated_at = now()
    WHERE control_levels.rank < EXCLUDED.rank
    RETURNING control, key
), ended AS (
    -- Contained again: a release requested before names a containment that is gone.
    UPDATE release_requests r SET status = 'superseded', decided_at = now()
    FROM raised WHERE r.control = raised.control AND r.key = raised.key
      AND r.status = 'pending'
    RETURNING r.id, r.control, r.key, r.requested_by, r.containment
)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM closed) AS closed,
       (SELECT coalesce(json_agg(json_build_array(id, control, key, requested_by,
                                                  containment)), '[]') FROM ended) AS ended
"""


@dataclass(frozen=True)
class CloseStep:
    """A writer unit: mark a step done or failed, raise the held level if it was applied,
    and append its outcome. Concurrent closes merge into one statement."""

    step: StepRow
    outcome: str
    detail: Mapping[str, object]
    verified: bool | None = None
    replica: str | None = None

    linger_s: ClassVar[float] = 0.002
    """How long a close may wait for other work to share its commit (Writer): the step is
    claimed meanwhile, so nothing else runs it, and on one replica the next alert's
    recording usually arrives within that time (one commit for both instead of two)."""

    async def __call__(self, conn: Conn, chain: ChainAppender) -> bool:
        return (await self.run_many(conn, chain, [self]))[0]

    @staticmethod
    async def run_many(conn: Conn, chain: ChainAppender,
                       closes: Sequence[CloseStep]) -> list[bool]:
        """True for each step closed now; False if an earlier attempt had closed it, or
        another replica's claim took it over from ``replica`` (docs/takeover.md)."""
        steps = [c.step for c in closes]
        row = await conn.fetchrow(
            CLOSE_SQL, [s.id for s in steps],
            ["failed" if c.outcome == "failed" else "done" for c in closes],
            [s.control for s in steps], [s.key for s in steps], [s.level for s in steps],
            [s.rank for s in steps], [s.incident_id for s in steps],
            [c.outcome == "applied" for c in closes], [s.rule_id for s in steps],
            [c.verified for c in closes], [c.replica for c in closes])
        assert row is not None
        closed = set(row["closed"])
        for c in closes:
            if c.step.id in closed:
                s = c.step
                chain.add(Entry(Kind.OUTCOME, incident_id=s.incident_id, rule_id=s.rule_id,
                                control=s.control, key=s.key, step_id=s.id,
                                correlation_id=s.correlation_id,
                                detail={"status": c.outcome, "kind": s.kind, "level": s.level,
                                        "idempotency_key": s.idempotency_key,
                                        "verified": c.verified,
                                        **({"replica": c.replica} if c.replica else {}),
                                        **c.detail}))
        incidents = {(c.step.control, c.step.key): c.step.incident_id for c in closes
                     if c.step.id in closed and c.outcome == "applied"}
        for request_id, control, key, by, containment in json.loads(row["ended"]):
            chain.add(ended_entry(request_id, control, key, by, containment, "contained again",
                                  incidents.get((control, key))))
        return [c.step.id in closed for c in closes]

