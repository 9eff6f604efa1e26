"""Held levels (``control_levels``): what responder holds for each control key, who set it
and why. Automatic outcomes raise it in store/steps.py (CloseStep); people's changes set it
here."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from responder.store.db import store_errors
from responder.store.types import Conn, Pool


@dataclass(frozen=True)
class HeldLevel:
    """One key's held level, and the containment (incident) it belongs to."""

    level: str
    rank: int
    incident_id: int | None
    containment: int | None


@dataclass(frozen=True)
class HeldKey:
    """A key held above its lowest level."""

    control: str
    key: str
    level: str
    rank: int
    incident_id: int | None


@dataclass(frozen=True)
class StepHeld:
    """What the store holds for a step's key, read right after its claim: the step's own
    status, the key's held level, and a claimed pending step of higher rank on the key."""

    status: str
    held_level: str | None = None
    held_rank: int | None = None
    higher_id: int | None = None
    higher_level: str | None = None


HELD_SQL = ("SELECT level, rank, incident_id, containment FROM control_levels"
            " WHERE control = $1 AND key = $2")

HELD_ALL_SQL = """
SELECT control, key, level, rank, updated_at, set_by, set_kind, reason, ticket, incident_id,
       verified
FROM control_levels WHERE rank > 0 ORDER BY control, key
"""

STEP_HELD_SQL = """
SELECT s.status, c.level AS held_level, c.rank AS held_rank, p.id AS higher_id,
       p.level AS higher_level
FROM steps s
LEFT JOIN control_levels c ON c.control = s.control AND c.key = s.key
LEFT JOIN LATERAL (
    SELECT id, level FROM steps h
    WHERE h.control = s.control AND h.key = s.key AND h.status = 'pending'
      AND h.rank > s.rank
      -- Only a step that was claimed can have reached the target. One never claimed must
      -- not stand in for the lower step: if it then failed, the key would stay uncontained.
      AND h.claims > 0
    ORDER BY h.rank DESC LIMIT 1
) p ON true
WHERE s.id = $1
"""

SET_SQL = """
INSERT INTO control_levels (control, key, level, rank, incident_id, set_by, set_kind, reason,
                            ticket, verified)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (control, key) DO UPDATE SET level = EXCLUDED.level, rank = EXCLUDED.rank,
    set_by = EXCLUDED.set_by, set_kind = EXCLUDED.set_kind, reason = EXCLUDED.reason,
    ticket = EXCLUDED.ticket, verified = EXCLUDED.verified, updated_at = now()
"""


async def held_level(pool: Pool, control: str, key: str) -> HeldLevel | None:
    """The key's held level; None if nothing was ever held for it."""
    async with store_errors(), pool.acquire() as conn:
        row = await conn.fetchrow(HELD_SQL, control, key)
    return HeldLevel(**dict(row)) if row is not None else None


async def held_controls(conn: Conn) -> list[asyncpg.Record]:
    """Every key held above its lowest level, with who set it and why."""
    return list(await conn.fetch(HELD_ALL_SQL))


async def held_keys(pool: Pool) -> list[HeldKey]:
    """Every key held above its lowest level, in (control, key) order."""
    async with store_errors(), pool.acquire() as conn:
        rows = await held_controls(conn)
    return [HeldKey(r["control"], r["key"], r["level"], r["rank"], r["incident_id"])
            for r in rows]


async def step_held(conn: Conn, step_id: int) -> StepHeld | None:
    """What the store holds for the step's key; None if there is no such step."""
    row = await conn.fetchrow(STEP_HELD_SQL, step_id)
    return StepHeld(**dict(row)) if row is not None else None


async def set_level(conn: Conn, control: str, key: str, level: str, rank: int,
                    incident_id: int | None, set_by: str, set_kind: str, reason: str,
                    ticket: str | None, verified: bool | None) -> None:
    """Set a key's held level by a person's change (a writer unit's part)."""
    await conn.execute(SET_SQL, control, key, level, rank, incident_id, set_by, set_kind,
                       reason, ticket, verified)
